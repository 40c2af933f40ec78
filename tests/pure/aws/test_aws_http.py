"""The lean HTTP/1.1 server in front of the Gateway, over real loopback sockets.

The server runs on its own event loop in a thread; the tests talk to it with raw sockets (to control framing
exactly) and with a real boto3 client (to see an AWS call go through it end to end).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_harness import ACCESS_KEY, REGION, SECRET_KEY, Recorder
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from borealis.aws import AWSError, Direct, Gateway, HttpServer
from borealis.aws._gateway import MAX_BODY


class _Running:
    def __init__(self, gateway: Gateway) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = HttpServer(gateway)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.loop.run_until_complete(self.server.start("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(timeout=2), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server() -> Iterator[_Running]:
    recorder = Recorder()
    gateway = Gateway(
        {"rds": {"DescribeDBClusters": recorder.returning({"DBClusters": [{"DBClusterIdentifier": "x"}]})}},
        {ACCESS_KEY: SECRET_KEY}.get,
    )
    running = _Running(gateway)
    yield running
    running.close()


def _connect(server: _Running) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` complete responses (status line + headers + Content-Length body)."""
    data = b""
    out: list[bytes] = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        out.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return out


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_keep_alive_serves_several_requests(server: _Running) -> None:
    with _connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            [resp] = _read_responses(sock, 1)
            assert resp.startswith(b"HTTP/1.1 404 ")


def test_pipelined_requests_are_answered_in_order(server: _Running) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = _read_responses(sock, 2)
        assert len(responses) == 2
        assert all(r.startswith(b"HTTP/1.1 404 ") for r in responses)


def test_connection_close_is_honoured(server: _Running) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        [resp] = _read_responses(sock, 1)
        assert resp.startswith(b"HTTP/1.1 404 ")
        assert _closed(sock)


def test_expect_100_continue(server: _Running) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(5)
        first = sock.recv(64)
        assert first.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"a=b&c")
        [resp] = _read_responses(sock, 1) if b"\r\n\r\n" not in first[25:] else [first]
        # An unsigned form POST is an AWS call without a signature: refused with AWS's code, not a crash.
        assert b"MissingAuthenticationToken" in resp or resp.startswith(b"HTTP/1.1 403")


def test_oversize_body_gets_413_and_close(server: _Running) -> None:
    with _connect(server) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        sock.sendall(b"x" * 65536)
        [resp] = _read_responses(sock, 1)
        assert resp.startswith(b"HTTP/1.1 413 ")
        assert _closed(sock)


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"NOT HTTP AT ALL\r\n\r\n"])
def test_malformed_request_gets_400_and_the_server_lives_on(server: _Running, garbage: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(garbage)
        [resp] = _read_responses(sock, 1)
        assert resp.startswith(b"HTTP/1.1 400 ")
        assert _closed(sock)
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_responses(sock, 1)[0].startswith(b"HTTP/1.1 404 ")


def test_a_real_boto3_call_over_http(server: _Running) -> None:
    client: Any = boto3.client(
        "rds",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )
    for _ in range(3):  # over one kept-alive connection from botocore's pool
        out = client.describe_db_clusters()
        assert out["DBClusters"] == [{"DBClusterIdentifier": "x"}]
    with pytest.raises(client.exceptions.ClientError) as exc:
        boto3.client(
            "rds",
            endpoint_url=f"http://127.0.0.1:{server.port}",
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key="wrong-secret",
            config=Config(retries={"total_max_attempts": 1}),
        ).describe_db_clusters()
    assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


class _DirectError(Exception):
    pass


@pytest.fixture(params=[False, True], ids=["plain", "observed"])
def direct_server(request: pytest.FixtureRequest) -> Iterator[_Running]:
    """rds-data's ExecuteStatement as a Direct handler whose answer depends on the SQL it is given; "observed":
    with an ``observe`` (as GET /metrics counts calls), which must not change any answer."""
    started: list[str] = []
    observed: list[tuple[str, float]] = []

    def start(args: dict[str, Any], settle: Any) -> Any:
        sql = args["sql"]
        started.append(sql)
        if sql == "later":  # settled after the request behind it has arrived
            asyncio.get_running_loop().call_later(0.2, settle, {"numberOfRecordsUpdated": 7})
            return None
        if sql == "known error":
            raise _DirectError("no such thing")
        if sql == "bug":
            raise KeyError("a bug of ours")
        if sql == "failing later":
            asyncio.get_running_loop().call_soon(settle, _DirectError("failed later"))
            return None
        return {"numberOfRecordsUpdated": 1}

    def error(exc: BaseException) -> AWSError | None:
        return AWSError("BadRequestException", str(exc)) if isinstance(exc, _DirectError) else None

    def observe(failure: BaseException | None, at: float) -> None:
        observed.append((type(failure).__name__ if failure is not None else "ok", at))

    handler = Direct(start, error, observe=observe if request.param else None)
    gateway = Gateway({"rds-data": {"ExecuteStatement": handler}}, {ACCESS_KEY: SECRET_KEY}.get)
    running = _Running(gateway)
    running.started = started  # type: ignore[attr-defined]
    running.observed = observed if request.param else None  # type: ignore[attr-defined]
    yield running
    running.close()


def _signed_execute(port: int, body: dict[str, Any], *, secret: str = SECRET_KEY) -> bytes:
    request = AWSRequest(
        "POST", f"http://127.0.0.1:{port}/Execute", data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(ACCESS_KEY, secret), "rds-data", REGION).add_auth(request)
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    data = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    return (
        f"POST /Execute HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(data)}\r\n\r\n".encode() + data
    )


def _execute_body(sql: Any) -> dict[str, Any]:
    return {"resourceArn": "arn:aws:rds:eu-west-1:000000000000:cluster:c", "secretArn": "s", "sql": sql}


def test_direct_handlers_answer_pipelined_requests_in_order(direct_server: _Running) -> None:
    port = direct_server.port
    with _connect(direct_server) as sock:
        sock.sendall(
            _signed_execute(port, _execute_body("later"))
            + _signed_execute(port, _execute_body("now"))
            + b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        first, second, third = _read_responses(sock, 3)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"numberOfRecordsUpdated":7}')
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b'{"numberOfRecordsUpdated":1}')
    assert third.startswith(b"HTTP/1.1 404 ")
    assert direct_server.started == ["later", "now"]  # type: ignore[attr-defined]
    observed = direct_server.observed  # type: ignore[attr-defined]
    if observed is not None:  # settled later and answered at once: both observed, in the order they settled
        assert [outcome for outcome, _ in observed] == ["ok", "ok"]
        assert observed[0][1] < observed[1][1]  # "later" started first


def test_direct_handlers_errors_signatures_and_bad_input(direct_server: _Running) -> None:
    port = direct_server.port
    cases = [
        (_signed_execute(port, _execute_body("known error")), b"400", b"BadRequestException", b"no such thing"),
        (_signed_execute(port, _execute_body("failing later")), b"400", b"BadRequestException", b"failed later"),
        (_signed_execute(port, _execute_body("bug")), b"500", b"InternalFailure", b"internal error"),
        # The model reads the body before the handler starts: a number where SQL goes is refused as AWS does.
        (_signed_execute(port, _execute_body(12)), b"400", b"BadRequestException", b"sql"),
        (
            _signed_execute(port, _execute_body("now"), secret="wrong"),
            b"403",
            b"InvalidSignatureException",
            b"The request signature we calculated does not match",
        ),
    ]
    with _connect(direct_server) as sock:
        for raw, status, code, text in cases:
            sock.sendall(raw)
            [resp] = _read_responses(sock, 1)
            assert resp.startswith(b"HTTP/1.1 " + status + b" "), resp
            assert b"x-amzn-errortype: " + code in resp, resp
            assert text in resp.partition(b"\r\n\r\n")[2], resp
    # Neither the unsigned-in-time nor the malformed requests reached the handler.
    assert direct_server.started == ["known error", "failing later", "bug"]  # type: ignore[attr-defined]
    observed = direct_server.observed  # type: ignore[attr-defined]
    if observed is not None:  # each call the handler started is observed once, with its outcome and start
        assert [outcome for outcome, _ in observed] == ["_DirectError", "_DirectError", "KeyError"]
        assert all(0 < at <= time.perf_counter() for _, at in observed)


def test_a_long_pipeline_answered_at_once_is_served_in_order(direct_server: _Running) -> None:
    """Hundreds of requests queued behind a slow one, each answered at once when its turn comes: served in a
    loop, not by recursion (the stack would overflow), and in order."""
    port = direct_server.port
    count = 400
    with _connect(direct_server) as sock:
        sock.settimeout(30)
        sock.sendall(
            _signed_execute(port, _execute_body("later")) + _signed_execute(port, _execute_body("now")) * count
        )
        responses = _read_responses(sock, count + 1)
    assert len(responses) == count + 1
    assert responses[0].endswith(b'{"numberOfRecordsUpdated":7}')
    assert all(r.startswith(b"HTTP/1.1 200 ") and r.endswith(b'{"numberOfRecordsUpdated":1}') for r in responses[1:])


def test_a_head_reply_has_no_body(server: _Running) -> None:
    """Pipelined behind a HEAD, the next reply must start where the HEAD reply's headers end."""
    with _connect(server) as sock:
        sock.sendall(
            b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ") and b"content-length: 9" in head
    assert rest.startswith(b"HTTP/1.1 404 "), rest[:40]  # not the HEAD reply's body
