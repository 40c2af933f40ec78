"""Pure tests: ConnectionPoolConfig rules, SCRAM/MD5 exchanges, metrics, startup options."""

from __future__ import annotations

import hashlib

import pytest
import scramp

from borealis.aws import AWSError
from borealis.proxy import DEFAULT_POOL, MetricsRegistry, pool_config
from borealis.proxy._auth import MD5Challenge, ScramError, ScramKeys, ScramServer, md5_response
from borealis.proxy._client import _options
from borealis.proxy._config import auth_entries, idle_client_timeout, valid_proxy_name


def test_pool_defaults_and_ranges() -> None:
    assert pool_config(None) == DEFAULT_POOL
    assert pool_config({"MaxConnectionsPercent": 30})["MaxIdleConnectionsPercent"] == 30
    assert pool_config({"MaxConnectionsPercent": 80})["MaxIdleConnectionsPercent"] == 50
    current = pool_config({"ConnectionBorrowTimeout": 5})
    assert pool_config({"InitQuery": "SET x = 1"}, current)["ConnectionBorrowTimeout"] == 5
    for bad in (
        {"MaxConnectionsPercent": 0},
        {"MaxConnectionsPercent": 101},
        {"MaxConnectionsPercent": 10, "MaxIdleConnectionsPercent": 11},
        {"ConnectionBorrowTimeout": -1},
        {"ConnectionBorrowTimeout": 3601},
        {"SessionPinningFilters": ["EXCLUDE_EVERYTHING"]},
    ):
        with pytest.raises(AWSError) as exc:
            pool_config(bad)
        assert exc.value.code == "InvalidParameterValue"


def test_auth_entries_and_names() -> None:
    [entry] = auth_entries([{"SecretArn": "arn:s"}])
    assert entry == {
        "AuthScheme": "SECRETS",
        "SecretArn": "arn:s",
        "IAMAuth": "DISABLED",
        "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
    }
    with pytest.raises(AWSError):
        auth_entries([{"SecretArn": "arn:s", "ClientPasswordAuthType": "MYSQL_NATIVE_PASSWORD"}])
    with pytest.raises(AWSError):
        auth_entries([])
    assert idle_client_timeout(None) == 1800
    with pytest.raises(AWSError):
        idle_client_timeout(28801)
    assert valid_proxy_name("my-proxy1")
    assert not valid_proxy_name("1proxy") and not valid_proxy_name("a--b") and not valid_proxy_name("a-")


def _scram(password: str, server_password: str, first_prefix: str = "") -> bytes:
    server = ScramServer(ScramKeys().get(server_password))
    client = scramp.ScramClient(["SCRAM-SHA-256"], "user", password)
    first = client.get_client_first()
    if first_prefix:
        first = first_prefix + first[3:]
    client.set_server_first(server.first(first.encode()).decode())
    final = server.final(client.get_client_final().encode())
    client.set_server_final(final.decode())  # the client checks the server too
    return final


def test_scram_exchange() -> None:
    assert _scram("pw", "pw").startswith(b"v=")
    assert _scram("pw", "pw", first_prefix="y,,").startswith(b"v=")
    with pytest.raises(ScramError):
        _scram("wrong", "pw")
    server = ScramServer(ScramKeys().get("pw"))
    for bad in (b"p=tls-server-end-point,,n=,r=x", b"garbage", b"n,,n=", b"\xff\xfe"):
        with pytest.raises(ScramError):
            ScramServer(ScramKeys().get("pw")).first(bad)
    server.first(b"n,,n=,r=abc")
    for bad in (b"c=biws,r=abc", b"c=biws,r=other,p=AAAA", b"\xff"):
        with pytest.raises(ScramError):
            server.final(bad)


def test_scram_keys_are_cached() -> None:
    keys = ScramKeys()
    assert keys.get("a") is keys.get("a")


def test_md5() -> None:
    challenge = MD5Challenge()
    inner = hashlib.md5(b"pwuser").hexdigest()
    answer = "md5" + hashlib.md5(inner.encode() + challenge.salt).hexdigest()
    assert md5_response("user", "pw", challenge.salt) == answer
    assert challenge.verify("user", "pw", answer)
    assert not challenge.verify("user", "other", answer)


def test_metrics_registry() -> None:
    registry = MetricsRegistry()
    stats = registry.stats("p")
    stats.client_connections += 2
    stats.borrow_count, stats.borrow_latency_us_sum = 2, 300
    samples = {s["MetricName"]: s["Value"] for s in registry.snapshot()}
    assert samples["ClientConnections"] == 2
    assert samples["DatabaseConnectionsBorrowLatency"] == 150
    assert samples["DatabaseConnectionsCurrentlyInTransaction"] == 0
    registry.drop("p")
    assert registry.snapshot() == []


def test_startup_options() -> None:
    assert _options("-c search_path=app -c statement_timeout=5s") == {
        "search_path": "app",
        "statement_timeout": "5s",
    }
    assert _options("--search-path=x") == {"search_path": "x"}
