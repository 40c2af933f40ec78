"""The floor: the least a Python + uvloop pooler can do per round trip, a byte relay with no logic at all.

    python bench/proxy/relay.py --listen-port P --upstream-host H --upstream-port Q

Each accepted client gets its own upstream connection (a session "pool" of one), and every chunk read on one
side is written to the other as it is: one ``data_received`` callback and one ``transport.write`` per chunk,
which is exactly the I/O the Borealis proxy does per message on its fast paths (2 recv + 2 send per round
trip). What the proxy spends above this relay, per round trip, is its own logic; what this relay spends above
PgBouncer is the cost of Python and uvloop themselves. ``bench/proxy/cpu.py`` starts it and measures it.
It prints ``ready`` once listening, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import uvloop


class Upstream(asyncio.Protocol):
    """The relay's connection to postgres: whatever it reads goes to the client."""

    __slots__ = ("client", "transport")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    """One client connection; bytes that come before the upstream is open wait in ``early``."""

    __slots__ = ("early", "host", "opening", "port", "transport", "upstream")

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.transport: Any = None
        self.upstream: Upstream | None = None
        self.early: list[bytes] = []
        self.opening: asyncio.Task[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.opening = asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        except OSError:
            self.transport.close()
            return
        self.upstream = up
        for chunk in self.early:
            up.transport.write(chunk)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        up = self.upstream
        if up is None:
            self.early.append(data)
        else:
            up.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    server = await loop.create_server(
        lambda: Client(args.upstream_host, args.upstream_port), "127.0.0.1", args.listen_port, backlog=4096
    )
    print("ready", flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--upstream-host", default="127.0.0.1")
    ap.add_argument("--upstream-port", type=int, required=True)
    uvloop.run(main(ap.parse_args()))
