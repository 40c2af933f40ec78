"""Console sessions and HTML escaping, without a server."""

from __future__ import annotations

import pytest

from borealis.console import Sessions
from borealis.console._html import esc, table


class _Keys:
    def __init__(self) -> None:
        self.secrets = {"AKIAEXAMPLE000000001": "s3cret/Key+40charsxxxxxxxxxxxxxxxxxxxxxx", "ASIATEMP000000000001": "t"}
        self.tokens = {"ASIATEMP000000000001": "session-token"}

    def secret_for(self, key_id: str) -> str | None:
        return self.secrets.get(key_id)

    def token_for(self, key_id: str) -> str | None:
        return self.tokens.get(key_id)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY, SECRET = "AKIAEXAMPLE000000001", "s3cret/Key+40charsxxxxxxxxxxxxxxxxxxxxxx"


def test_sign_in_needs_the_exact_secret() -> None:
    sessions = Sessions(_Keys())
    for key, secret in [(KEY, SECRET[:-1]), (KEY, SECRET + "x"), (KEY, SECRET.upper()), (KEY, ""), ("", ""),
                        ("AKIAUNKNOWN", SECRET), (KEY.lower(), SECRET)]:  # fmt: skip
        assert sessions.sign_in(key, secret) is None, (key, secret)
    assert len(sessions) == 0
    first, second = sessions.sign_in(KEY, SECRET), sessions.sign_in(KEY, SECRET)
    assert first and second and first != second and len(first) >= 40
    session = sessions.get(first)
    assert session is not None and session.key_id == KEY
    assert sessions.get(second) is not None and sessions.get(second) != session  # each has its own CSRF token


def test_temporary_keys_need_their_session_token() -> None:
    sessions = Sessions(_Keys())
    assert sessions.sign_in("ASIATEMP000000000001", "t") is None
    assert sessions.sign_in("ASIATEMP000000000001", "t", "wrong") is None
    assert sessions.sign_in("ASIATEMP000000000001", "t", "session-token") is not None


def test_sessions_expire_and_end_with_their_key() -> None:
    keys, clock = _Keys(), _Clock()
    sessions = Sessions(keys, ttl=60, clock=clock)
    sid = sessions.sign_in(KEY, SECRET)
    assert sessions.get(sid) is not None
    clock.now += 61
    assert sessions.get(sid) is None
    sid = sessions.sign_in(KEY, SECRET)
    del keys.secrets[KEY]  # the key was deleted (or a temporary key expired)
    assert sessions.get(sid) is None
    assert sessions.get(None) is None and sessions.get("") is None and sessions.get("unknown") is None


def test_sign_out_and_csrf() -> None:
    sessions = Sessions(_Keys())
    sid = sessions.sign_in(KEY, SECRET)
    session = sessions.get(sid)
    assert session is not None
    assert sessions.csrf_ok(session, session.csrf)
    for wrong in (None, "", session.csrf[:-1], session.csrf + "x", "\udcff"):
        assert not sessions.csrf_ok(session, wrong)
    sessions.sign_out(sid)
    assert sessions.get(sid) is None


@pytest.mark.parametrize("value", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "a & b", "'q'"])
def test_everything_shown_is_escaped(value: str) -> None:
    out = table("t", [value], [[value]])
    assert "<script>" not in out and "<img" not in out
    assert esc(value) in out and out.count(str(esc(value))) == 2
    assert "<" not in esc(value) and '"' not in esc(value) and "'" not in esc(value)
