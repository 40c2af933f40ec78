"""Results of tens of kilobytes over a TLS proxy connection never hang a client (issue 13, bug 1).

libpq before 18, reading without blocking (psycopg's async API), can leave decrypted bytes inside OpenSSL
and wait on a socket that has nothing more to say when a TLS record is larger than the 8 KB postgres writes
at a time (psycopg #1107, ruby-pg #588). The proxy used to hand whole server reads to TLS, making 16 KB
records: 2 runs in 3 hung. The client runs in a subprocess on the system's libpq, so a hang is a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ProxyInfo

CLIENT = Path(__file__).parents[2] / "clients" / "psycopg_tls_results.py"


def test_30kb_results_and_copy_over_tls_with_the_system_libpq(proxy: ProxyInfo) -> None:
    env = {**os.environ, "PSYCOPG_IMPL": "python"}
    conninfo = json.dumps(proxy.conninfo(sslmode="require"))
    try:
        done = subprocess.run(
            [sys.executable, str(CLIENT), conninfo], capture_output=True, text=True, timeout=120, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the client hung reading results over TLS: {exc.stdout!r}") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ok"
