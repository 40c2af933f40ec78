"""Access keys: temporary credentials carry a session token, expire, and are seen by other processes."""

from __future__ import annotations

from pathlib import Path

from borealis.iam import AccessKeys
from borealis.store import Sealer, Store

ROLE = {"arn": "arn:aws:sts::000000000000:assumed-role/deploy/s1", "user_id": "AROADEPLOYXXXXXXXXXXX:s1"}


def _keys(tmp_path: Path) -> AccessKeys:
    return AccessKeys(Store(tmp_path / "b.db"), Sealer(tmp_path / "k"))


def test_long_term_key_has_no_token(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    key, secret = keys.admin()
    assert keys.secret_for(key) == secret and keys.token_for(key) is None
    assert keys.identity(key, "000000000000")["arn"] == "arn:aws:iam::000000000000:user/admin"


def test_temporary_key(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    made = keys.create_temporary(ROLE, 900)
    key = made["AccessKeyId"]
    assert key.startswith("ASIA") and keys.secret_for(key) == made["SecretAccessKey"]
    assert keys.token_for(key) == made["SessionToken"]
    assert keys.identity(key, "000000000000") == ROLE


def test_expired_key_is_unknown(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    key = keys.create_temporary(ROLE, -1)["AccessKeyId"]
    assert keys.secret_for(key) is None and keys.token_for(key) is None
    keys.create_temporary(ROLE, 900)  # forgets the expired one, in memory and in the store
    assert _keys(tmp_path).secret_for(key) is None


def test_another_process_sees_a_key_made_later(tmp_path: Path) -> None:
    reader = _keys(tmp_path)  # a worker, started before the key exists
    made = _keys(tmp_path).create_temporary(ROLE, 900)
    assert reader.secret_for(made["AccessKeyId"]) == made["SecretAccessKey"]
    assert reader.secret_for("ASIANOSUCHKEY0000000") is None
