"""IAM database authentication at the cluster endpoints (issue 17), with the clients that make tokens.

With EnableIAMDatabaseAuthentication on, a member of rds_iam logs in with a token (boto3's
generate_db_auth_token, the aws CLI, @aws-sdk/rds-signer) and only with one; other users keep their
passwords; bad tokens are refused with 28P01 and RDS's wording. The default cluster's flag is turned on
for this module and off again after it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.auth
import psycopg
import pytest

from borealis import pgwire

from .conftest import BorealisProcess

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
IAM_USER = "iam_app"
PW_USER = "pw_app"
PW = "pw-app-Secret-1"


@pytest.fixture(scope="module")
def iam_cluster(borealis: BorealisProcess) -> Iterator[tuple[str, int]]:
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    with borealis.master_connect() as conn:
        conn.autocommit = True
        conn.execute(f"drop role if exists {IAM_USER}; drop role if exists {PW_USER}")
        conn.execute(f"create role {IAM_USER} login password 'not-used-by-iam-1'; grant rds_iam to {IAM_USER}")
        conn.execute(f"create role {PW_USER} login password '{PW}'")
    rds.modify_db_cluster(DBClusterIdentifier="default", EnableIAMDatabaseAuthentication=True, ApplyImmediately=True)
    try:
        yield cluster["Endpoint"], cluster["Port"]
    finally:
        rds.modify_db_cluster(
            DBClusterIdentifier="default", EnableIAMDatabaseAuthentication=False, ApplyImmediately=True
        )
        with borealis.master_connect() as conn:
            conn.autocommit = True
            conn.execute(f"drop role if exists {IAM_USER}; drop role if exists {PW_USER}")


def _token(borealis: BorealisProcess, host: str, port: int, user: str = IAM_USER, **kw: Any) -> str:
    token: str = borealis.client("rds", **kw).generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
    return token


def _connect(host: str, port: int, user: str, password: str, **extra: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=host, port=port, user=user, password=password, dbname="postgres", connect_timeout=10, **extra
    )


def test_rds_iam_member_logs_in_with_a_token(borealis: BorealisProcess, iam_cluster: tuple[str, int]) -> None:
    host, port = iam_cluster
    token = _token(borealis, host, port)
    root = str(borealis.data_dir / "ca" / "root.crt")
    with _connect(host, port, IAM_USER, token, sslmode="verify-full", sslrootcert=root) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select current_user").fetchone() == (IAM_USER,)
        # The session is postgres's own after the login: a cancel reaches it, results flow.
        assert conn.execute("select count(*) from generate_series(1, 100000)").fetchone() == (100000,)
    # The aws CLI's token works too.
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    out = subprocess.run(
        [aws, "rds", "generate-db-auth-token", "--hostname", host, "--port", str(port), "--username", IAM_USER,
         "--region", "us-east-1"],
        capture_output=True, text=True, timeout=60, env=borealis.env(), check=True,
    )  # fmt: skip
    with _connect(host, port, IAM_USER, out.stdout.strip(), sslmode="require") as conn:
        assert conn.execute("select session_user").fetchone() == (IAM_USER,)


def test_only_a_token_for_members_and_passwords_for_the_others(
    borealis: BorealisProcess, iam_cluster: tuple[str, int]
) -> None:
    host, port = iam_cluster
    with pytest.raises(psycopg.OperationalError, match=f'PAM authentication failed for user "{IAM_USER}"'):
        _connect(host, port, IAM_USER, "not-used-by-iam-1")
    with _connect(host, port, PW_USER, PW) as conn:
        assert conn.execute("select current_user").fetchone() == (PW_USER,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(host, port, PW_USER, "wrong")
    # A token is no password for a user outside rds_iam.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(host, port, PW_USER, _token(borealis, host, port, PW_USER))


def test_bad_tokens_are_refused(
    borealis: BorealisProcess, iam_cluster: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = iam_cluster
    good = _token(borealis, host, port)
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    tampered = good.replace("Action=connect", "Action=connect&x=1")
    wrong_user = _token(borealis, host, port, PW_USER)
    wrong_port = _token(borealis, host, port + 1)
    wrong_host = _token(borealis, "db.example.com", port)
    unknown_key = _token(borealis, host, port, key="AKIAUNKNOWNKEY000000", secret="x" * 40)
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=901)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: old)
    expired = _token(borealis, host, port)
    monkeypatch.undo()
    for token in (forged, tampered, wrong_user, wrong_port, wrong_host, unknown_key, expired):
        with pytest.raises(psycopg.OperationalError) as exc:
            _connect(host, port, IAM_USER, token, sslmode="disable")
        assert f'PAM authentication failed for user "{IAM_USER}"' in str(exc.value)
    # libpq does not keep a login error's SQLSTATE: read it off the wire.
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(pgwire.encode(pgwire.StartupMessage({"user": IAM_USER, "database": "postgres"})))
        assert s.recv(9) == pgwire.encode(pgwire.AuthenticationCleartextPassword())
        s.sendall(pgwire.encode(pgwire.PasswordMessage(expired)))
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer[:1] == b"E" and b"C28P01\0" in answer
    with _connect(host, port, IAM_USER, good) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_seed_node_snippet_with_rds_signer(borealis: BorealisProcess, iam_cluster: tuple[str, int]) -> None:
    node = shutil.which("node")
    assert node is not None, "the JavaScript client tests need Node.js 18+"
    host, port = iam_cluster
    env = borealis.env()
    env.update(DB_HOST=host, DB_PORT=str(port), DB_USER=IAM_USER, DB_CA=str(borealis.data_dir / "ca" / "root.crt"))
    out = subprocess.run(
        [node, str(CLIENTS / "cluster_iam_pg.mjs")], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")
