"""Hold N idle PostgreSQL client connections open: startup + authentication, then nothing.

    python bench/proxy/hold.py --host H --port P --user U --database D --count 10000 [--hold 300]

The password comes from the PGPASSWORD environment variable. Run by ``bench/proxy/bench.py`` as a separate
process, so the connections' client side is never counted in the pooler's memory. It speaks just enough of
protocol 3.0 with raw asyncio streams: StartupMessage, SCRAM-SHA-256 (or MD5/cleartext), then waits for the
first ReadyForQuery. The SCRAM salted password is cached per (salt, iterations), so a pooler that keeps one
salt per password costs the client no PBKDF2 per connection.

Protocol with the parent, one JSON object per line on stdout:

* ``{"event": "ready", "connected": n, "failed": m, "seconds": t, "errors": [...]}`` once every connection
  has finished its login (or failed);
* then it waits for a line on stdin (or ``--hold`` seconds), closes every connection with Terminate and
  prints ``{"event": "closed"}``.

Bounded: ``--connect-timeout`` for the whole login phase, ``--hold`` for the idle phase.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import resource
import struct
import sys
import time

_int = struct.Struct("!i")
_salted: dict[tuple[bytes, int], bytes] = {}


def _frame(t: bytes, body: bytes) -> bytes:
    return t + _int.pack(len(body) + 4) + body


async def _read_msg(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(5)
    t, length = head[0], _int.unpack_from(head, 1)[0]
    return t, await reader.readexactly(length - 4)


async def login(host: str, port: int, user: str, database: str, password: str) -> asyncio.StreamWriter:
    """Open one connection and authenticate it; return the writer (the connection stays open)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
        body = _int.pack(196608) + params
        writer.write(_int.pack(len(body) + 4) + body)
        nonce = client_first_bare = auth_message = ""
        salted = b""
        while True:
            t, body = await _read_msg(reader)
            if t == ord("R"):
                code = _int.unpack_from(body)[0]
                if code == 0:
                    continue
                if code == 3:
                    writer.write(_frame(b"p", password.encode() + b"\0"))
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    answer = "md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    writer.write(_frame(b"p", answer.encode() + b"\0"))
                elif code == 10:
                    nonce = base64.b64encode(os.urandom(18)).decode()
                    client_first_bare = f"n=,r={nonce}"
                    first = ("n,," + client_first_bare).encode()
                    writer.write(_frame(b"p", b"SCRAM-SHA-256\0" + _int.pack(len(first)) + first))
                elif code == 11:
                    server_first = body[4:].decode()
                    attrs = dict(part.split("=", 1) for part in server_first.split(","))
                    if not attrs["r"].startswith(nonce):
                        raise RuntimeError("SCRAM nonce mismatch")
                    salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
                    salted = _salted.get((salt, iterations), b"")
                    if not salted:
                        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
                        _salted[(salt, iterations)] = salted
                    without_proof = f"c=biws,r={attrs['r']}"
                    auth_message = f"{client_first_bare},{server_first},{without_proof}"
                    client_key = hmac.digest(salted, b"Client Key", "sha256")
                    stored_key = hashlib.sha256(client_key).digest()
                    signature = hmac.digest(stored_key, auth_message.encode(), "sha256")
                    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
                    final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
                    writer.write(_frame(b"p", final))
                elif code == 12:
                    server_key = hmac.digest(salted, b"Server Key", "sha256")
                    expected = base64.b64encode(hmac.digest(server_key, auth_message.encode(), "sha256"))
                    if body[4:].strip() != b"v=" + expected:
                        raise RuntimeError("SCRAM server signature mismatch")
                else:
                    raise RuntimeError(f"unsupported authentication request {code}")
            elif t == ord("E"):
                fields = dict((f[:1].decode(), f[1:].decode(errors="replace")) for f in body.split(b"\0") if f)
                raise RuntimeError(f"{fields.get('C')}: {fields.get('M')}")
            elif t == ord("Z"):
                return writer
            # S (ParameterStatus), K (BackendKeyData), N (Notice), v: nothing to do.
    except BaseException:
        writer.close()
        raise


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=100, help="logins in flight at once")
    ap.add_argument("--connect-timeout", type=float, default=240)
    ap.add_argument("--hold", type=float, default=300)
    args = ap.parse_args()
    password = os.environ.get("PGPASSWORD", "")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    writers: list[asyncio.StreamWriter] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(args.parallel)

    async def one() -> None:
        async with sem:
            try:
                writers.append(await login(args.host, args.port, args.user, args.database, password))
            except Exception as exc:  # counted and reported
                key = f"{type(exc).__name__}: {exc}"[:160]
                errors[key] = errors.get(key, 0) + 1

    started = time.monotonic()
    tasks = [asyncio.ensure_future(one()) for _ in range(args.count)]
    _, pending = await asyncio.wait(tasks, timeout=args.connect_timeout)
    for task in pending:
        task.cancel()
    if pending:
        errors["connect timeout"] = len(pending)
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "event": "ready",
                "connected": len(writers),
                "failed": args.count - len(writers),
                "seconds": round(elapsed, 2),
                "errors": sorted(errors.items(), key=lambda kv: -kv[1])[:5],
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.hold)
    for w in writers:
        try:
            w.write(b"X\0\0\0\x04")
            w.close()
        except Exception:  # the peer may be gone already
            pass
    await asyncio.sleep(0.5)
    print(json.dumps({"event": "closed"}), flush=True)
    os._exit(0)  # the stdin reader thread may still block: leave without waiting for it


if __name__ == "__main__":
    asyncio.run(main())
