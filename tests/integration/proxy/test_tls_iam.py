"""TLS (the proxy's CA, sslmode verify-full/require/disable, RequireTLS) and IAM auth tokens through the proxy."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import botocore.auth
import psycopg
import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo, make_auth_proxy


def _root(borealis: BorealisProcess) -> Path:
    return borealis.data_dir / "ca" / "root.crt"


@pytest.fixture(scope="module")
def tls_proxy(borealis: BorealisProcess) -> ProxyInfo:
    return make_auth_proxy(borealis, "tls-proxy", require_tls=True)


@pytest.fixture(scope="module")
def iam_proxy(borealis: BorealisProcess) -> ProxyInfo:
    return make_auth_proxy(borealis, "iam-proxy", iam="REQUIRED")


# ---------------------------------------------------------------------------------------------------- TLS


def test_ca_in_data_dir(borealis: BorealisProcess, tls_proxy: ProxyInfo) -> None:
    root = _root(borealis)
    assert root.exists()
    assert (root.parent / "root.key").stat().st_mode & 0o777 == 0o600


def test_verify_full_require_and_disable(borealis: BorealisProcess, tls_proxy: ProxyInfo) -> None:
    root = str(_root(borealis))
    with psycopg.connect(**tls_proxy.conninfo(sslmode="verify-full", sslrootcert=root), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select 1").fetchone() == (1,)
    # The certificate names localhost too (checked against the name; the address is the endpoint's).
    with psycopg.connect(
        **tls_proxy.conninfo(host="localhost", hostaddr=tls_proxy.host, sslmode="verify-full", sslrootcert=root),
        autocommit=True,
    ) as conn:
        assert conn.execute("select 2").fetchone() == (2,)
    with psycopg.connect(**tls_proxy.conninfo(sslmode="require"), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        # Transaction pooling and prepared statements work the same over TLS.
        for i in range(5):
            assert conn.execute("select %s::int", [i], prepare=True).fetchone() == (i,)
    with pytest.raises(psycopg.OperationalError, match="requires TLS"):
        psycopg.connect(**tls_proxy.conninfo(sslmode="disable"))


def test_verify_full_refuses_another_ca(tls_proxy: ProxyInfo, tmp_path: Path) -> None:
    # A root that did not sign the proxy's certificate: libpq must refuse to go on.
    from borealis.proxy._tls import CertificateAuthority

    other = CertificateAuthority(tmp_path / "other")
    other.ensure()
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        psycopg.connect(**tls_proxy.conninfo(sslmode="verify-full", sslrootcert=str(other.cert_path)))


def test_prefer_uses_tls_when_not_required(proxy: ProxyInfo) -> None:
    with psycopg.connect(**proxy.conninfo(sslmode="prefer"), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
    with psycopg.connect(**proxy.conninfo(sslmode="disable"), autocommit=True) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("select 1").fetchone() == (1,)


def test_plaintext_after_ssl_request_is_refused(tls_proxy: ProxyInfo) -> None:
    # CVE-2021-23214: a startup packet injected behind the SSLRequest must not be taken as encrypted.
    ssl_request = struct.pack("!ii", 8, 80877103)
    body = struct.pack("!i", 196608) + b"user\0x\0\0"
    startup = struct.pack("!i", len(body) + 4) + body
    with socket.create_connection((tls_proxy.host, tls_proxy.port), timeout=5) as s:
        s.sendall(ssl_request + startup)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert not data.startswith(b"S")
    assert b"08P01" in data


def test_tls_then_python_ssl_client(borealis: BorealisProcess, tls_proxy: ProxyInfo) -> None:
    # The raw exchange: 'S', then a handshake that verifies against the data directory's root.
    ctx = ssl.create_default_context(cafile=str(_root(borealis)))
    with socket.create_connection((tls_proxy.host, tls_proxy.port), timeout=5) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))
        assert s.recv(1) == b"S"
        with ctx.wrap_socket(s, server_hostname=tls_proxy.host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


# ---------------------------------------------------------------------------------------------------- IAM


def _token(borealis: BorealisProcess, info: ProxyInfo, *, user: str | None = None, **kw: Any) -> str:
    rds = borealis.client("rds", **kw)
    token: str = rds.generate_db_auth_token(DBHostname=info.host, Port=info.port, DBUsername=user or info.user)
    return token


def _iam_connect(info: ProxyInfo, token: str, **extra: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(**info.conninfo(password=token, **extra), autocommit=True)


def test_iam_token_valid(borealis: BorealisProcess, iam_proxy: ProxyInfo) -> None:
    token = _token(borealis, iam_proxy)
    with _iam_connect(iam_proxy, token) as conn:
        assert conn.execute("select current_user").fetchone() == (iam_proxy.user,)
    # The same token over TLS, as on AWS, and again: a token is good for 15 minutes, not once.
    root = str(_root(borealis))
    with _iam_connect(iam_proxy, token, sslmode="verify-full", sslrootcert=root) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select 1").fetchone() == (1,)


def test_iam_required_refuses_password(iam_proxy: ProxyInfo) -> None:
    with pytest.raises(psycopg.OperationalError, match="IAM authentication failed"):
        psycopg.connect(**iam_proxy.conninfo())


def test_iam_bad_tokens(borealis: BorealisProcess, iam_proxy: ProxyInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _token(borealis, iam_proxy)
    tampered = good.replace("Action=connect", "Action=connect&x=1")
    forged_sig = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    wrong_user = _token(borealis, iam_proxy, user="someone_else")
    unknown_key = _token(borealis, iam_proxy, key="AKIAUNKNOWNKEY000000", secret="x" * 40)
    wrong_port = borealis.client("rds").generate_db_auth_token(
        DBHostname=iam_proxy.host, Port=iam_proxy.port + 1, DBUsername=iam_proxy.user
    )
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=901)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: old)
    expired = _token(borealis, iam_proxy)
    monkeypatch.undo()
    for token in (tampered, forged_sig, wrong_user, unknown_key, wrong_port, expired):
        with pytest.raises(psycopg.OperationalError, match="IAM authentication failed"):
            _iam_connect(iam_proxy, token, sslmode="disable")
    # The wrong-user token is good for its own user, who has no secret here: refused before auth.
    with pytest.raises(psycopg.OperationalError, match="no credentials"):
        psycopg.connect(**iam_proxy.conninfo(user="someone_else", password=wrong_user))
    with _iam_connect(iam_proxy, good) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_iam_enabled_takes_token_or_password(borealis: BorealisProcess) -> None:
    info = make_auth_proxy(borealis, "iam-enabled", iam="ENABLED")
    with _iam_connect(info, _token(borealis, info)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with psycopg.connect(**info.conninfo(), autocommit=True) as conn:
        assert conn.execute("select 2").fetchone() == (2,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**info.conninfo(password="wrong"))


def test_default_auth_scheme_iam_requires_tokens(borealis: BorealisProcess) -> None:
    # DefaultAuthScheme IAM_AUTH: every client brings a token, whatever the UserAuthConfig's IAMAuth says;
    # the proxy still logs in to PostgreSQL with the role's secret.
    info = make_auth_proxy(borealis, "iam-default", scheme="IAM_AUTH")
    with _iam_connect(info, _token(borealis, info)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="IAM authentication failed"):
        psycopg.connect(**info.conninfo(sslmode="disable"))
