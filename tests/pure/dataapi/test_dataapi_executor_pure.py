"""Pure parts of the executor: error positions mapped back to the client's SQL, and the limits settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borealis.dataapi import DataApiSettings, parse_sql
from borealis.dataapi._api import original_position


def test_positions_map_back_to_the_original_sql() -> None:
    sql = "SELECT :abc + 'x'::int, :abc, x:b"
    parsed = parse_sql(sql)
    assert parsed.sql == "SELECT $1 + 'x'::int, $1, x $2"
    rewritten_x = parsed.sql.index("'x'") + 1
    assert original_position(sql, parsed, rewritten_x) == sql.index("'x'") + 1
    assert original_position(sql, parsed, parsed.sql.index("$2") + 1) == sql.index(":b") + 1
    assert original_position(sql, parsed, 1) == 1


@given(st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=6), st.text("xyz+ ", max_size=5))
def test_positions_of_text_after_placeholders(names: list[str], tail: str) -> None:
    sql = "SELECT " + ", ".join(f":{n}" for n in names) + " ~" + tail
    parsed = parse_sql(sql)
    assert original_position(sql, parsed, parsed.sql.index("~") + 1) == sql.index("~") + 1


def test_settings_from_env() -> None:
    assert DataApiSettings.from_env({}) == DataApiSettings()
    s = DataApiSettings.from_env(
        {
            "BOREALIS_DATAAPI_CALL_TIMEOUT": "2.5",
            "BOREALIS_DATAAPI_MAX_RESPONSE": "10",
            "BOREALIS_DATAAPI_ALLOW_SCHEMA": "yes",
        }
    )
    assert (s.call_timeout, s.max_response, s.allow_schema) == (2.5, 10, True)
    with pytest.raises(ValueError, match="BOREALIS_DATAAPI_POOL_SIZE"):
        DataApiSettings.from_env({"BOREALIS_DATAAPI_POOL_SIZE": "many"})
