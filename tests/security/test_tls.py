"""TLS for the HTTP API (``--tls``): a certificate from Borealis's CA, trusted by the SDKs through
``AWS_CA_BUNDLE`` as ``borealis env`` prints it; and the warning for addresses beyond loopback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from borealis.proxy import CertificateAuthority
from tests.integration.conftest import BorealisProcess


class _TlsBorealis(BorealisProcess):
    @property
    def url(self) -> str:
        return f"https://localhost:{self.api_port}"


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_TlsBorealis]:
    """`borealis up` with ``tls = true`` in its TOML file, and no cluster; the CA made beforehand so that
    the fixture's readiness poll can verify the server (as a client configured once would)."""
    data_dir = tmp_path_factory.mktemp("tls") / "data"
    data_dir.mkdir()
    (data_dir / "borealis.toml").write_text("tls = true\n")
    CertificateAuthority(data_dir / "ca").ensure()
    context = ssl.create_default_context(cafile=str(data_dir / "ca" / "root.crt"))
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
    proc = _TlsBorealis(data_dir, default_cluster=False, workers=2)
    try:
        proc.start()
        yield proc
    finally:
        urllib.request.install_opener(None)  # type: ignore[arg-type]  # None restores the default opener
        if proc.proc is not None:
            proc.stop()


def _client(proc: BorealisProcess, service: str, verify: Any) -> Any:
    key, secret = proc.credentials()
    return boto3.client(
        service,
        endpoint_url=proc.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        verify=verify,
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_verifies_the_api_with_the_borealis_ca(tls_api: _TlsBorealis) -> None:
    ca = str(tls_api.data_dir / "ca" / "root.crt")
    assert _client(tls_api, "rds", ca).describe_db_clusters()["DBClusters"] == []
    assert _client(tls_api, "secretsmanager", ca).list_secrets()["SecretList"] == []
    with pytest.raises(SSLError):
        _client(tls_api, "rds", None).describe_db_clusters()  # the public roots do not vouch for it


def test_every_api_process_speaks_tls_and_plain_http_is_refused(tls_api: _TlsBorealis) -> None:
    context = ssl.create_default_context(cafile=str(tls_api.data_dir / "ca" / "root.crt"))
    for _ in range(12):  # new connections, spread by the kernel over the main process and the worker
        raw = socket.create_connection(("127.0.0.1", tls_api.api_port), timeout=30)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 "), reply
    with socket.create_connection(("127.0.0.1", tls_api.api_port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = sock.recv(65536)
        except ConnectionResetError:
            reply = b""
        assert b"200" not in reply and b"ready" not in reply


def test_borealis_env_gives_the_sdks_what_they_need(tls_api: _TlsBorealis) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run(
        [sys.executable, "-m", "borealis", "env", "--data-dir", str(tls_api.data_dir)],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    ).stdout  # fmt: skip
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export AWS_")
    )
    assert exports["AWS_ENDPOINT_URL"].startswith("https://")
    assert exports["AWS_CA_BUNDLE"] == str(tls_api.data_dir / "ca" / "root.crt")
    aws = Path(sys.executable).parent / "aws"
    listed = subprocess.run(
        # aws CLI v1 pins rds in us-east-1 to its AWS URL unless --endpoint-url is given; AWS_CA_BUNDLE it reads.
        [str(aws), "rds", "describe-db-clusters", "--endpoint-url", exports["AWS_ENDPOINT_URL"], "--output", "json"],
        capture_output=True, text=True, timeout=120, env={**env, **exports},
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert '"DBClusters": []' in listed.stdout
    status = subprocess.run(
        [sys.executable, "-m", "borealis", "status", "--data-dir", str(tls_api.data_dir)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
