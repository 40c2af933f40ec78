"""Reads results of about 30 KB over TLS, 100 times, with psycopg's async API on the system's libpq.

Run by tests/integration/proxy/test_tls_results.py in a subprocess with PSYCOPG_IMPL=python, so psycopg uses
the libpq the operating system ships (Debian's 15 here) rather than the one bundled with psycopg[binary]:
libpq before 18 is the one that can wait forever with decrypted bytes left inside OpenSSL. Prints the libpq
version, then "ok"; a hang is the caller's timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys

import psycopg


async def main(conninfo: dict[str, object]) -> None:
    print("libpq", psycopg.pq.version(), psycopg.pq.__impl__, flush=True)
    async with await psycopg.AsyncConnection.connect(**conninfo, autocommit=True) as conn:  # type: ignore[arg-type]
        assert conn.pgconn.ssl_in_use
        for i in range(100):
            widths = [3000 + 10 * i] * 10  # 30,000 to 39,900 bytes of rows
            cur = await conn.execute("select repeat('x', w) from unnest(%s::int[]) w", (widths,))
            rows = await cur.fetchall()
            assert [len(r[0]) for r in rows] == widths, i
            async with conn.cursor().copy(
                "copy (select repeat('y', w) from unnest(%s::int[]) w) to stdout", (widths,)
            ) as copy:
                data = b"".join([bytes(chunk) async for chunk in copy])
            assert len(data) == sum(widths) + len(widths), i
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
