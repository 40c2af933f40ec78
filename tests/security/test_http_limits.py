"""Item 4: the HTTP API's limits on headers, URLs and time, and its back-pressure, probed with raw sockets.

A Borealis without clusters and with short timeouts serves the probes of size and time; the back-pressure
probe needs big replies, so it runs Data API calls on the shared Borealis.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BorealisProcess
from tests.security.probe import api_rss, closed_within, read_response, signed_request

IDLE_TIMEOUT = 2.0
REQUEST_TIMEOUT = 3.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis with no cluster (nothing but its API) and timeouts of a few seconds."""
    data_dir = tmp_path_factory.mktemp("http-limits") / "data"
    data_dir.mkdir()
    (data_dir / "borealis.toml").write_text(
        f"http_idle_timeout = {IDLE_TIMEOUT}\nhttp_request_timeout = {REQUEST_TIMEOUT}\n"
    )
    proc = BorealisProcess(data_dir, default_cluster=False, workers=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _connect(proc: BorealisProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proc.api_port), timeout=30)


def _healthy(proc: BorealisProcess) -> bool:
    with _connect(proc) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        return read_response(sock)[0] == 200


def _send_until_refused(sock: socket.socket, head: bytes, filler: bytes, limit: int) -> int:
    """Send ``head`` then ``filler`` until ``limit`` bytes or the server stops taking them; bytes sent."""
    sent = 0
    try:
        sock.sendall(head)
        while sent < limit:
            sock.sendall(filler)
            sent += len(filler)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_huge_headers_are_refused_and_do_not_grow_memory(api: BorealisProcess) -> None:
    """20 connections each offering 20 MB of one header field: 431 for each, memory stays flat."""
    assert api.proc is not None
    before = api_rss(api.proc.pid)
    statuses: list[int] = []
    sent: list[int] = []

    def attack() -> None:
        with _connect(api) as sock:
            sent.append(
                _send_until_refused(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 20 * MIB)
            )
            try:
                statuses.append(read_response(sock)[0])
            except (EOFError, ConnectionResetError):
                statuses.append(0)

    threads = [threading.Thread(target=attack) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    grown = api_rss(api.proc.pid) - before
    assert len(statuses) == 20
    assert all(status in (431, 0) for status in statuses), statuses
    assert statuses.count(431) >= 1, statuses
    assert max(sent) < 20 * MIB, "some connection was read to the end of 20 MB of headers"
    assert grown < 40 * MIB, f"the API processes grew by {grown / MIB:.0f} MiB"
    assert _healthy(api)


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis with no cluster and the default timeouts (a minute to receive a request)."""
    proc = BorealisProcess(tmp_path_factory.mktemp("http-bodies") / "data", default_cluster=False, workers=1)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_unsigned_bodies_are_not_kept(patient: BorealisProcess) -> None:
    """40 connections each sending all but the last byte of an 8 MiB body (the cap) that no known access key
    signs: the bodies are dropped as they arrive instead of filling memory (+320 MiB before), and each gets
    AWS's authentication error once complete."""
    assert patient.proc is not None
    size = 8 * MIB - 16
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Authorization: AWS4-HMAC-SHA256 Credential=AKIANOTAKEY/20240101/us-east-1/rds/aws4_request, "
        b"SignedHeaders=host, Signature=00\r\nX-Amz-Date: %s\r\nContent-Length: %d\r\n\r\n"
        % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()).encode(), size)
    )
    before = api_rss(patient.proc.pid)
    socks = []
    try:
        for _ in range(40):
            sock = _connect(patient)
            socks.append(sock)
            sock.sendall(head + b"Action=DescribeDBClusters&" + b"a" * (size - 27))
        grown = api_rss(patient.proc.pid) - before
        for sock in socks:
            sock.sendall(b"a")
            status, _, body = read_response(sock)
            assert status == 403 and b"InvalidClientTokenId" in body, body
    finally:
        for sock in socks:
            sock.close()
    assert grown < 40 * MIB, f"the API processes grew by {grown / MIB:.0f} MiB"


def test_a_long_pipeline_is_read_as_fast_as_it_is_served(patient: BorealisProcess) -> None:
    """200,000 pipelined requests sent as fast as the socket takes them, their replies read: the server stops
    reading while 64 wait (before: a million queued 330 MiB), and answers every one."""
    assert patient.proc is not None
    count = 200_000
    answered = [0]
    before = api_rss(patient.proc.pid)
    with _connect(patient) as sock:

        def read() -> None:
            tail = b""
            while answered[0] < count:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return
                answered[0] += (tail + chunk).count(b"HTTP/1.1 200 ")
                tail = (tail + chunk)[-12:]  # shorter than a match: none is counted twice

        reader = threading.Thread(target=read)
        reader.start()
        peak = 0
        batch = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
        for i in range(count // 1000):
            sock.sendall(batch)
            if i % 10 == 0:
                peak = max(peak, api_rss(patient.proc.pid) - before)
        reader.join(300)
    assert answered[0] == count
    assert peak < 20 * MIB, f"the API process grew by {peak / MIB:.0f} MiB"


def test_many_header_fields_get_431(api: BorealisProcess) -> None:
    with _connect(api) as sock:
        fields = b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert read_response(sock)[0] == 431
        assert closed_within(sock, 30)
    assert _healthy(api)


def test_a_one_megabyte_url_gets_414(api: BorealisProcess) -> None:
    with _connect(api) as sock:
        _send_until_refused(sock, b"GET /", b"a" * 65536, MIB)
        assert read_response(sock)[0] == 414
    assert _healthy(api)


def test_connect_gets_400_without_a_traceback(api: BorealisProcess) -> None:
    with _connect(api) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        assert read_response(sock)[0] == 400
    assert _healthy(api)
    assert "Traceback" not in (api.data_dir / "borealis.log").read_text()


@pytest.mark.parametrize(
    "partial",
    [
        b"",  # connected, nothing sent
        b"GET /health HTTP/1.1\r\nHost: x\r\n",  # a head never finished (slowloris)
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part of it",  # a body never finished
    ],
)
def test_a_connection_that_does_not_finish_its_request_is_closed(api: BorealisProcess, partial: bytes) -> None:
    with _connect(api) as sock:
        sock.sendall(partial)
        assert closed_within(sock, 60), "the server kept a stalled connection open"


def test_a_slowloris_trickle_is_cut_off(api: BorealisProcess) -> None:
    """A header sent a byte at a time, each well within the idle timeout, still has the request timeout."""
    with _connect(api) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 60
        cut = False
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            sock.settimeout(0.5)
            try:
                sock.recv(65536)  # the 408, or the end of the connection
            except TimeoutError:
                continue
            except ConnectionResetError:
                pass
            cut = True
            break
        assert cut, "a request trickling in was never cut off"


def test_kept_alive_connections_are_served_between_waits(api: BorealisProcess) -> None:
    """The idle timeout closes idle connections, not busy ones: requests in a row keep one connection."""
    with _connect(api) as sock:
        for _ in range(5):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200


def test_unread_replies_stop_the_reading_of_a_connection(borealis: BorealisProcess) -> None:
    """300 pipelined Data API calls with ~1 MB replies, none read: the server stops serving them (its memory
    stays bounded), and serves the rest once the client reads."""
    assert borealis.proc is not None
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    call: dict[str, Any] = {
        "resourceArn": cluster["DBClusterArn"],
        "secretArn": cluster["MasterUserSecret"]["SecretArn"],
        "sql": "SELECT repeat('y', 60000) FROM generate_series(1, 16)",
    }
    request = signed_request(
        borealis.url, borealis.credentials(), service="rds-data", body=call, path="/Execute",
        content_type="application/json",
    )  # fmt: skip
    count = 300
    with _connect(borealis) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(request)  # one first, so its reply shows the server has started (and its size)
        status, _, body = read_response(sock)
        assert status == 200 and len(body) > 960_000, body[:300]
        before = api_rss(borealis.proc.pid)
        sock.sendall(request * count)
        # Wait until the server's memory stops changing (or a minute): the replies it has made by then.
        samples = [before]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1)
            samples.append(api_rss(borealis.proc.pid))
            if len(samples) > 4 and max(samples[-4:]) - min(samples[-4:]) < MIB:
                break
        grown = max(samples) - before
        answered = 0
        for _ in range(count):
            status, _, body = read_response(sock)
            assert status == 200 and len(body) > 960_000
            answered += 1
    assert answered == count
    assert grown < 100 * MIB, f"the API processes grew by {grown / MIB:.0f} MiB with replies nobody read"


def test_the_api_is_still_healthy(api: BorealisProcess) -> None:
    assert _healthy(api)
    assert "Traceback" not in Path(api.data_dir / "borealis.log").read_text()
