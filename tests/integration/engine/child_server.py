"""Run by the SIGKILL test: start a server as a direct child of this process, report its pid, then idle.

Usage: python child_server.py DATADIR BINDIR VERSION PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from borealis.engine import Binaries, PostgresServer


async def main() -> None:
    datadir, bindir, version, port = sys.argv[1:5]
    server = PostgresServer(Path(datadir), Binaries(Path(bindir), int(version)), port=int(port))
    await server.start()
    print(server.status().pid, flush=True)
    await asyncio.sleep(3600)  # killed by the test long before


if __name__ == "__main__":
    asyncio.run(main())
