"""What the security tests attack with: raw sockets, signed raw requests, and the API processes' memory."""

from __future__ import annotations

import json
import socket
import weakref
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["api_rss", "closed_within", "read_response", "signed_request"]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def api_rss(pid: int) -> int:
    """Resident bytes of a `borealis up` and its HTTP worker processes (its python children; not postgres)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            exe = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and exe.startswith("python"):
            pids.append(int(entry.name))
    total = 0
    for each in pids:
        try:
            total += _rss_kib(each)
        except OSError:
            continue
    return total * 1024


_leftovers: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole HTTP response (status, lowercase headers, body); raises EOFError on a closed connection.

    Bytes read past the response (the next pipelined reply) are kept for the next call on the socket.
    """
    data = _leftovers.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(max(65536, length - len(rest)))
        if not chunk:
            raise EOFError(head + rest)
        rest += chunk
    if len(rest) > length:
        _leftovers[sock] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within `seconds` (whatever it sends first)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def signed_request(
    url: str,
    credentials: tuple[str, str],
    *,
    service: str,
    body: bytes | dict[str, Any],
    target: str | None = None,
    path: str = "/",
    region: str = "us-east-1",
    content_type: str = "application/x-amz-json-1.1",
) -> bytes:
    """The bytes of one keep-alive POST signed as botocore signs it (to send raw, pipelined or mangled)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=url.rstrip("/") + path, data=payload, headers=headers)
    SigV4Auth(Credentials(*credentials), service, region).add_auth(request)
    host = url.split("://", 1)[1].rstrip("/")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(payload)}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
