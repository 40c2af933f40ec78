"""Session state does not leak between Data API calls on a pooled connection (issue 12 item 7), via boto3.

Each case changes something in one call, then asks from later calls on the same backend (the pool hands
out its warmest connection first, so the same process's next call gets it; the backend pid tells) whether
the change is still there.  A case that never gets the same backend back fails rather than passing blind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import BorealisProcess
from tests.integration.dataapi.conftest import Target

Execute = Callable[..., dict[str, Any]]


def _pid_and(execute: Execute, expr: str, **kwargs: Any) -> tuple[int, Any]:
    record = execute(f"select pg_backend_pid() as pid, ({expr}) as v", **kwargs)["records"][0]
    value = next(iter(record[1].values()))
    return int(record[0]["longValue"]), value


def _seen_later(execute: Execute, pid: int, expr: str) -> Any:
    """``expr`` evaluated by a later call on backend ``pid``."""
    for _ in range(60):
        other, value = _pid_and(execute, expr)
        if other == pid:
            return value
    raise AssertionError(f"no later call ran on backend {pid}")


def _pid(execute: Execute) -> int:
    return int(execute("select pg_backend_pid()")["records"][0][0]["longValue"])


def _changed_by(execute: Execute, sql: str) -> int:
    """Run ``sql`` (which changes session state) until it runs on a backend seen just before it."""
    for _ in range(60):
        before = _pid(execute)
        execute(sql)
        after = _pid(execute)
        if before == after:
            # Same backend before and after in this process: ``sql`` most likely ran there too; the caller
            # checks on that backend (a change that leaked would be seen).
            return before
    raise AssertionError("the pool never handed out the same connection twice in a row")


CASES = {
    "search_path": ("set search_path = pg_catalog", "current_setting('search_path')", "pg_catalog"),
    "application_name": (
        "select set_config('application_name', 'leaked', false)",
        "current_setting('application_name')",
        "leaked",
    ),
    "timezone": ("set time zone 'Asia/Tokyo'", "current_setting('TimeZone')", "Asia/Tokyo"),
    "temp_table": (
        "create temp table dapi_leak_tmp (x int)",
        "to_regclass('pg_temp.dapi_leak_tmp')::text",
        "dapi_leak_tmp",
    ),
    "prepared": (
        "prepare dapi_leak_stmt as select 1",
        "(select count(*) from pg_prepared_statements where name = 'dapi_leak_stmt')::text",
        "1",
    ),
    "advisory_lock": (
        "select pg_advisory_lock(424242)",
        "(select count(*) from pg_locks where locktype = 'advisory' and objid = 424242"
        " and pid = pg_backend_pid())::text",
        "1",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_change_is_gone_for_the_next_call(execute: Execute, case: str) -> None:
    sql, expr, leaked = CASES[case]
    pid = _changed_by(execute, sql)
    value = _seen_later(execute, pid, expr)
    assert value != leaked


def test_a_function_that_changes_a_reported_setting(execute: Execute) -> None:
    """No keyword in the SQL says it: the server's ParameterStatus message does."""
    execute(
        "create or replace function dapi_leak_fn() returns text language plpgsql as "
        "$$ begin perform set_config('application_name', 'from_fn', false); return 'ok'; end $$"
    )
    pid = _changed_by(execute, "select dapi_leak_fn()")
    assert _seen_later(execute, pid, "current_setting('application_name')") == "borealis-data-api"


def test_set_role_is_undone(borealis: BorealisProcess, execute: Execute) -> None:
    role = f"dapi_leak_role_{time.time_ns()}"
    execute(f"create role {role}")
    execute(f"grant {role} to current_user")
    try:
        pid = _changed_by(execute, f"set role {role}")
        assert _seen_later(execute, pid, "current_user::text") != role
    finally:
        execute("reset role")
        execute(f"drop role {role}")


def test_a_change_inside_a_transaction_is_gone_after_it(data: Any, target: Target, execute: Execute) -> None:
    arns = {"resourceArn": target.resource_arn, "secretArn": target.secret_arn}
    tid = data.begin_transaction(**arns)["transactionId"]
    out = data.execute_statement(sql="select pg_backend_pid()", transactionId=tid, **arns)
    pid = int(out["records"][0][0]["longValue"])
    data.execute_statement(sql="set search_path = pg_catalog", transactionId=tid, **arns)
    data.execute_statement(sql="create temp table dapi_leak_tx (x int)", transactionId=tid, **arns)
    data.commit_transaction(transactionId=tid, **arns)
    value = _seen_later(
        execute,
        pid,
        "current_setting('search_path') || ' ' || coalesce(to_regclass('pg_temp.dapi_leak_tx')::text, '-')",
    )
    assert value == '"$user", public -'


# A backslash escapes the quote only when standard_conforming_strings is off; ":x" is then inside the string.
_BACKSLASHED = r"select 'it\'s :x' as a, :y::text as b"


def test_standard_conforming_strings_off_in_a_transaction(data: Any, target: Target, execute: Execute) -> None:
    arns = {"resourceArn": target.resource_arn, "secretArn": target.secret_arn}
    tid = data.begin_transaction(**arns)["transactionId"]
    data.execute_statement(sql="set standard_conforming_strings = off", transactionId=tid, **arns)
    y = [{"name": "y", "value": {"stringValue": "why"}}]
    out = data.execute_statement(sql=_BACKSLASHED, parameters=y, transactionId=tid, **arns)
    assert out["records"] == [[{"stringValue": "it's :x"}, {"stringValue": "why"}]]
    batch = data.batch_execute_statement(sql=_BACKSLASHED, parameterSets=[y], transactionId=tid, **arns)
    assert len(batch["updateResults"]) == 1
    data.commit_transaction(transactionId=tid, **arns)
    # Back on: a backslash is a plain character again, and the quote after it ends the string.
    out = execute(r"select 'a\' as a, :y::text as b", y)
    assert out["records"] == [[{"stringValue": "a\\"}, {"stringValue": "why"}]]


def test_standard_conforming_strings_off_for_a_role(borealis: BorealisProcess, data: Any, target: Target) -> None:
    name = f"dapi_scs_{time.time_ns()}"
    with borealis.master_connect() as conn:
        conn.autocommit = True
        conn.execute(f"create role {name} login password 'scs-password'")
        conn.execute(f"alter role {name} set standard_conforming_strings = off")
        try:
            secret = borealis.client("secretsmanager").create_secret(
                Name=name, SecretString=json.dumps({"username": name, "password": "scs-password"})
            )["ARN"]
            for _ in range(2):  # the first call prepares the statement, the second runs it cached
                out = data.execute_statement(
                    resourceArn=target.resource_arn, secretArn=secret, sql=_BACKSLASHED,
                    parameters=[{"name": "y", "value": {"stringValue": "why"}}],
                )  # fmt: skip
                assert out["records"] == [[{"stringValue": "it's :x"}, {"stringValue": "why"}]]
        finally:
            conn.execute(f"drop role if exists {name}")
