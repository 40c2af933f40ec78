"""Pure tests: IAM auth tokens made by boto3, checked by the proxy's verifier; the proxy's CA on disk."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from cryptography import x509

from borealis.iam import TokenError, looks_like_token, verify_token
from borealis.proxy._tls import CertificateAuthority

KEY_ID = "AKIATESTTESTTESTTEST"
SECRET = "s3cr3t/abcdefghijklmnopqrstuvwxyz0123456"
HOST = "127.0.1.1"
PORT = 5432
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def _token(monkeypatch: pytest.MonkeyPatch, *, at: dt.datetime = T0, user: str = "app", **kw: Any) -> str:
    """A token as boto3 makes it, with botocore's clock pinned to ``at``."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at.replace(tzinfo=None))
    client = boto3.client(
        "rds",
        region_name=kw.pop("region", "us-east-1"),
        aws_access_key_id=kw.pop("key_id", KEY_ID),
        aws_secret_access_key=kw.pop("secret", SECRET),
    )
    token: str = client.generate_db_auth_token(
        DBHostname=kw.pop("host", HOST), Port=kw.pop("port", PORT), DBUsername=user
    )
    monkeypatch.undo()
    return token


def _verify(token: str, *, now: dt.datetime = T0, user: str = "app", port: int = PORT) -> None:
    verify_token(
        token,
        user=user,
        hosts=[HOST],
        port=port,
        region="us-east-1",
        secret_for={KEY_ID: SECRET}.get,
        now=now,
    )


def test_valid_token_verifies_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token(monkeypatch)
    assert looks_like_token(token)
    assert token.startswith(f"{HOST}:{PORT}/?")
    _verify(token)
    _verify(token, now=T0 + dt.timedelta(seconds=900))
    with pytest.raises(TokenError, match="expired"):
        _verify(token, now=T0 + dt.timedelta(seconds=901))
    with pytest.raises(TokenError, match="future"):
        _verify(token, now=T0 - dt.timedelta(minutes=10))


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("tampered-user", "signature"),
        ("tampered-signature", "signature"),
        ("wrong-user", "DBUser"),
        ("wrong-port", "endpoint"),
        ("wrong-host", "endpoint"),
        ("unknown-key", "unknown access key"),
        ("wrong-secret", "signature"),
        ("region", "region"),
        ("garbage", "not an IAM auth token"),
        ("long-expiry", "X-Amz-Expires"),
    ],
)
def test_bad_tokens_are_refused(monkeypatch: pytest.MonkeyPatch, case: str, match: str) -> None:
    user = "app"
    port = PORT
    if case == "tampered-user":
        token = _token(monkeypatch, user="other").replace("DBUser=other", "DBUser=app")
    elif case == "tampered-signature":
        token = _token(monkeypatch)
        token = token[:-1] + ("0" if token[-1] != "0" else "1")
    elif case == "wrong-user":
        token = _token(monkeypatch)
        user = "postgres"
    elif case == "wrong-port":
        token = _token(monkeypatch)
        port = 5433
    elif case == "wrong-host":
        token = _token(monkeypatch, host="127.0.1.2")
    elif case == "unknown-key":
        token = _token(monkeypatch, key_id="AKIAUNKNOWNUNKNOWN00")
    elif case == "wrong-secret":
        token = _token(monkeypatch, secret="not-the-secret")
    elif case == "region":
        token = _token(monkeypatch, region="eu-west-1")
    elif case == "garbage":
        token = "hunter2"
    else:
        token = _token(monkeypatch).replace("X-Amz-Expires=900", "X-Amz-Expires=3600")
    with pytest.raises(TokenError, match=match):
        _verify(token, user=user, port=port)


def test_ca_made_once_and_server_context_verifies(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    ca.ensure()
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    first = ca.cert_path.read_bytes()
    again = CertificateAuthority(tmp_path / "ca")
    ctx = again.server_context("127.0.1.7")
    assert ca.cert_path.read_bytes() == first  # reused on the next start, not remade
    assert isinstance(ctx, ssl.SSLContext)
    leaf_files = sorted((tmp_path / "ca").glob("endpoint-*.crt"))
    assert len(leaf_files) == 1
    leaf = x509.load_pem_x509_certificate(leaf_files[0].read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"127.0.1.7", "127.0.0.1"} <= ips
    root = x509.load_pem_x509_certificate(first)
    leaf.verify_directly_issued_by(root)
