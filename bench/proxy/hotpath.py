"""The proxy's own Python per round trip, with no sockets, no postgres and no other process: steady to a few %.

    python bench/proxy/hotpath.py [--iterations 200000] [--profile] [--src build/compiled]

Real :class:`~borealis.proxy._client.ClientConn`, :class:`~borealis.proxy._server.ServerConn` and
:class:`~borealis.proxy._pool.Pool` objects, on a running loop, talk to transports whose ``write`` is a C
call that keeps nothing. One iteration is one pgbench round trip as the proxy sees it: the client's chunk
(one Query) arrives, a connection is borrowed, the Query goes out, the server's whole answer arrives (one
chunk ending in ReadyForQuery), it goes to the client and the connection goes back. Scenarios:

* ``select-only``: pgbench -S -M simple (``SELECT abalance ...``, answered with one row, status I);
* ``tpcb-like``: pgbench's default transaction, seven Queries, BEGIN..END (status T between them);
* ``queued``: select-only with more clients than server connections: every borrow after the first waits in
  the pool's queue and is served by the previous client's release (:meth:`Pool.release` -> ``pool_grant``);
* ``relay``: the floor, ``relay.py``'s two callbacks with the same fake transports (what Python costs at least).

It prints the thread's CPU nanoseconds per round trip (the median of ``--repeat`` timings), and the Python
and C function calls per round trip (counted with ``sys.setprofile``: steady whatever the load).
``--profile`` adds a cProfile of each scenario (sorted by own time); ``--bytecodes`` the bytecodes the
interpreter runs per round trip, by function (opcode trace events: as steady as the call counts, and closer to
the time, since a Python call costs little since 3.11). This measures only the Python the proxy runs per
message: the syscalls (``send``/``recv``) and uvloop's dispatch come on top (see ``cpu.py``).
``--src DIR`` imports Borealis from DIR instead of this checkout's ``src``: ``build/compiled`` (made by
``scripts/build-compiled``) runs the compiled build. The first line says which build ran.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

# Before the imports below: --src picks the tree they come from.
sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--src") + 1]).resolve() if "--src" in sys.argv[:-1]
                       else Path(__file__).resolve().parents[2] / "src"))  # fmt: skip

from borealis._build import build_name
from borealis.proxy import ProxyStats
from borealis.proxy._client import ClientConn
from borealis.proxy._pool import Pool
from borealis.proxy._server import ServerConn, query_frame


def _frame(t: bytes, body: bytes) -> bytes:
    return t + (len(body) + 4).to_bytes(4, "big") + body


def _answer(tag: bytes, status: bytes, row: bool) -> bytes:
    out = b""
    if row:
        out += _frame(b"T", b"\0\x01abalance\0" + b"\0" * 6 + b"\0\x17\0\x04\xff\xff\xff\xff\0\0")
        out += _frame(b"D", b"\0\x01\0\0\0\x041234")
    return out + _frame(b"C", tag + b"\0") + _frame(b"Z", status)


SELECT = (query_frame("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"), _answer(b"SELECT 1", b"I", True))
TPCB = [
    (query_frame("BEGIN;"), _answer(b"BEGIN", b"T", False)),
    (query_frame("UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 56789;"),
     _answer(b"UPDATE 1", b"T", False)),
    (query_frame("SELECT abalance FROM pgbench_accounts WHERE aid = 56789;"), _answer(b"SELECT 1", b"T", True)),
    (query_frame("UPDATE pgbench_tellers SET tbalance = tbalance + -1234 WHERE tid = 7;"),
     _answer(b"UPDATE 1", b"T", False)),
    (query_frame("UPDATE pgbench_branches SET bbalance = bbalance + -1234 WHERE bid = 1;"),
     _answer(b"UPDATE 1", b"T", False)),
    (query_frame("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 56789, -1234, "
                 "CURRENT_TIMESTAMP);"), _answer(b"INSERT 0 1", b"T", False)),
    (query_frame("END;"), _answer(b"COMMIT", b"I", False)),
]  # fmt: skip


CONFIG = {"MaxConnectionsPercent": 100, "MaxIdleConnectionsPercent": 100}


class Sink:
    """A transport whose ``write`` is a C call that keeps nothing (a deque of length 0)."""

    def __init__(self) -> None:
        self.write = collections.deque(maxlen=0).append
        self.sent = 0

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Topology:
    # As the real one: ControlPlane.generation -> Topology.generation -> _refresh() (the borrow path asks it
    # nothing since the runtime watches it; a pool's first borrow resolves its target through this chain).
    def __init__(self) -> None:
        self._generation = 1
        self._expires = time.monotonic() + 1e9

    @property
    def generation(self) -> int:
        self._refresh()
        return self._generation

    def _refresh(self) -> None:
        if time.monotonic() >= self._expires:
            self._generation += 1

    def watch(self, fn: Any) -> None:
        pass

    def unwatch(self, fn: Any) -> None:
        pass


class _Control:
    def __init__(self) -> None:
        self.topology = _Topology()

    @property
    def generation(self) -> int:
        return self.topology.generation


class _Manager:
    def __init__(self) -> None:
        self.control = _Control()

    def forget_key(self, pid: int, client: Any) -> None:
        pass

    def statement_name(self) -> str:
        return "_bp1"


def _runtime(pool: Pool) -> Any:
    from borealis.proxy._manager import ProxyRuntime

    rt = ProxyRuntime.__new__(ProxyRuntime)
    rt.manager = _Manager()  # type: ignore[assignment]
    rt.name = "bench"
    rt.stats = pool.stats
    rt.clients = set()
    rt.pools = {}
    rt.doc = {"target_group": {"pool": {"ConnectionBorrowTimeout": 120, "SessionPinningFilters": []}}}
    rt._targets = {}
    rt._pools = {("READ_WRITE", "u", "d"): pool}  # as current_pool() leaves it after resolving the target
    pool.routed = True
    rt.filters = ()
    rt.borrow_seconds = 120.0
    rt._topology = rt.manager.control.topology
    return rt


def setup(clients: int, servers: int) -> tuple[list[ClientConn], list[ServerConn], Pool]:
    """``clients`` logged-in clients and a pool of ``servers`` idle connections, all on sink transports."""
    stats = ProxyStats("bench")
    pool = Pool(host="h", port=1, user="u", database="d", password=lambda: None,
                config=lambda: CONFIG,
                stats=stats, max_connections={"k": servers}, key="k")  # fmt: skip
    rt = _runtime(pool)
    conns = []
    for _ in range(servers):
        conn = ServerConn(pool._lost)
        conn.connection_made(Sink())  # type: ignore[arg-type]
        conn._login = None
        conn.pool = pool
        pool.members.add(conn)
        pool.idle.append(conn)
        conns.append(conn)
    cls = []
    for _ in range(clients):
        c = ClientConn(rt, "READ_WRITE")
        c.connection_made(Sink())  # type: ignore[arg-type]
        c.state = "ready"
        c.user, c.database = "u", "d"
        cls.append(c)
    return cls, conns, pool


def scenario(name: str, iterations: int) -> Any:
    """A function that runs ``iterations`` round trips of scenario ``name``; round trips per call."""
    if name in ("select-only", "tpcb-like"):
        (client,), (server,), _ = setup(1, 1)
        return _pairs(client.data_received, server.data_received, [SELECT] if name == "select-only" else TPCB,
                      iterations)  # fmt: skip
    if name == "queued":
        # 4 clients, 2 connections: clients 0 and 1 borrow, 2 and 3 queue; each answer hands its
        # connection to the next client in the queue, which sends its held Query at once.
        clients, _servers, pool = setup(4, 2)
        q, a = SELECT
        for c in clients:
            c.data_received(q)
        assert len(pool.waiters) == 2
        n = iterations

        def run() -> None:
            # Each step answers the connection lent to the oldest client: it releases, the queue's first
            # waiter gets it; the answered client asks again and queues.
            for i in range(n):
                c = clients[i % 4]
                s = c.server
                assert s is not None
                s.data_received(a)
                c.data_received(q)

        return run, n
    if name == "relay":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from relay import Client, Upstream

        cl = Client("h", 1)
        cl.transport = Sink()
        up = Upstream(cl)
        up.transport = Sink()
        cl.upstream = up
        return _pairs(cl.data_received, up.data_received, [SELECT], iterations)
    raise ValueError(name)


def _pairs(to_client: Any, to_server: Any, script: list[tuple[bytes, bytes]], iterations: int) -> Any:
    """Run ``script`` (query, answer pairs) for about ``iterations`` round trips; (function, round trips)."""
    n = iterations // len(script)

    def run() -> None:
        for _ in range(n):
            for q, a in script:
                to_client(q)
                to_server(a)

    return run, n * len(script)


SCENARIOS = ("relay", "select-only", "tpcb-like", "queued")


def count_calls(name: str, trips: int = 700) -> tuple[float, float]:
    """Python and C function calls per round trip: a count the machine's load cannot move."""
    run, n = scenario(name, trips)
    counts = collections.Counter[str]()

    def hook(frame: Any, event: str, arg: Any) -> None:
        counts[event] += 1

    sys.setprofile(hook)
    try:
        run()
    finally:
        sys.setprofile(None)
    # The harness's own loop (range, list iteration) makes no calls; the setprofile(None) call itself is one.
    return counts["call"] / n, max(0, counts["c_call"] - 1) / n


def count_bytecodes(name: str, trips: int = 700) -> tuple[float, list[tuple[str, float]]]:
    """Bytecodes executed per round trip (opcode trace events), in all and per function: the work the
    interpreter does, which neither the load nor the C calls' cost can move."""
    run, n = scenario(name, trips)
    counts = collections.Counter[str]()
    here = __file__

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_filename == here:
            return None  # the harness's own loop
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        key = f"{Path(code.co_filename).name}:{code.co_name}"

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[key] += 1
            return local

        return local

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return sum(counts.values()) / n, [(k, v / n) for k, v in counts.most_common() if v / n >= 0.5]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    ap.add_argument("--profile", action="store_true", help="also a cProfile of each scenario")
    ap.add_argument("--bytecodes", action="store_true", help="also the bytecodes run per round trip, by function")
    ap.add_argument("--src", help="import borealis from this tree (build/compiled: the compiled build)")
    args = ap.parse_args()
    print(f"borealis from {Path(sys.modules['borealis'].__file__ or '').parent.parent}: {build_name()}", flush=True)

    async def go() -> None:
        for name in args.scenarios:
            times = []
            for _ in range(args.repeat):
                run, trips = scenario(name, args.iterations)
                t0 = time.thread_time_ns()
                run()
                times.append((time.thread_time_ns() - t0) / trips)
            times.sort()
            calls, c_calls = count_calls(name)
            print(f"{name:12} {times[len(times) // 2]:6.0f} ns CPU per round trip (min {times[0]:.0f}, max "
                  f"{times[-1]:.0f}); {calls:.1f} Python calls + {c_calls:.1f} C calls", flush=True)  # fmt: skip
            if args.bytecodes:
                total, by_function = count_bytecodes(name)
                print(f"{'':12} {total:6.0f} bytecodes per round trip: "
                      + ", ".join(f"{k} {v:.0f}" for k, v in by_function), flush=True)  # fmt: skip
            if args.profile:
                run, trips = scenario(name, args.iterations // 4)
                prof = cProfile.Profile()
                prof.runcall(run)
                pstats.Stats(prof).sort_stats("tottime").print_stats(14)

    try:
        import uvloop

        uvloop.run(go())
    except ImportError:
        asyncio.run(go())


if __name__ == "__main__":
    main()
