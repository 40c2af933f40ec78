"""Pure tests of the topology: who is the writer, which readers are up, the generation, wake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from borealis.control import Address, ClusterRecord, InstanceRecord, Topology, Unavailable, stored_views
from borealis.control._topology import build_view


def _records(**statuses: str) -> list[InstanceRecord]:
    return [
        InstanceRecord(
            id=iid,
            cluster="c",
            status=status,
            role="writer" if iid == "w" else "reader",
            port=1,
            promotion_tier=int(iid[1:]) if iid[1:].isdigit() else 1,
        )
        for iid, status in statuses.items()
    ]


def test_build_view_names_writer_and_ready_readers_in_tier_order() -> None:
    insts = _records(w="available", r2="available", r1="available", r0="rebooting", x="deleting")
    addresses = {i: Address("127.0.0.1", n) for n, i in enumerate(["w", "r1", "r2"], 7000)}
    view = build_view(ClusterRecord(id="c", status="available", port=5432), insts, addresses, {"r1": 12.5})
    assert view.writer is not None and view.writer.id == "w" and view.writer.ready
    assert [m.id for m in view.readers] == ["r0", "r1", "r2"]  # deleting instances are gone
    assert [m.id for m in view.ready_readers] == ["r1", "r2"]
    assert view.readers[1].lag_ms == 12.5


def test_generation_moves_on_change_and_routes_follow() -> None:
    state: dict[str, Any] = {"insts": _records(w="available"), "addresses": {"w": Address("127.0.0.1", 7000)}}
    loads = []

    def load() -> dict[str, Any]:
        loads.append(1)
        return {"c": build_view(ClusterRecord(id="c", status="available", port=1), state["insts"], state["addresses"])}

    topo = Topology(load)
    g0 = topo.generation
    assert topo.writer("c") is not None and topo.readers("c") == ()
    assert topo.generation == g0 and len(loads) == 1  # cached
    state["insts"] = _records(w="available", r1="available")
    state["addresses"]["r1"] = Address("127.0.0.1", 7001)
    moved: list[int] = []

    def watcher() -> None:
        moved.append(topo._generation)

    topo.watch(watcher)
    topo.changed()
    assert moved == [g0 + 1]  # told at once, before anyone reads the generation
    assert topo.generation > g0
    assert [m.id for m in topo.readers("c")] == ["r1"]
    assert len(loads) == 2
    topo.unwatch(watcher)
    topo.unwatch(watcher)  # (twice: no error)
    topo.changed()
    assert moved == [g0 + 1]


def test_route_errors_and_reader_fallback() -> None:
    views = {
        "c": build_view(ClusterRecord(id="c", status="available", port=1), _records(w="available"),
                        {"w": Address("127.0.0.1", 7000)}),
        "s": build_view(ClusterRecord(id="s", status="stopped", port=2), [], {}),
        "e": build_view(ClusterRecord(id="e", status="available", port=3), [], {}),
    }  # fmt: skip
    topo = Topology(lambda: views)

    async def main() -> None:
        assert (await topo.route("c", "reader")).id == "w"  # no reader: the writer serves
        for cid, sqlstate in (("nope", "08006"), ("s", "57P03"), ("e", "57P03")):
            with pytest.raises(Unavailable) as exc:
                await topo.route(cid, "writer")
            assert exc.value.sqlstate == sqlstate

    asyncio.run(main())


def test_wake_is_a_no_op_for_a_serving_instance_and_asks_the_waker_otherwise() -> None:
    state = {"addresses": {}}  # type: dict[str, dict[str, Address]]
    insts = _records(w="available")
    topo = Topology(
        lambda: {"c": build_view(ClusterRecord(id="c", status="available", port=1), insts, state["addresses"])}
    )
    woken = []

    async def waker(iid: str) -> None:
        woken.append(iid)
        state["addresses"] = {"w": Address("127.0.0.1", 7000)}

    async def main() -> None:
        topo.waker = waker
        member = await topo.route("c", "writer")
        assert member.port == 7000 and woken == ["w"]
        await topo.wake("w")
        assert woken == ["w"]  # serving: returns at once

    asyncio.run(main())


@pytest.mark.parametrize("status", ["available", "starting", "rebooting"])
def test_route_holds_a_login_until_an_instance_that_should_run_serves(status: str) -> None:
    """After a restart of Borealis (or a crash) the record says it should run before its postgres does."""
    state: dict[str, Any] = {"status": status, "addresses": {}}
    topo = Topology(
        lambda: {
            "c": build_view(
                ClusterRecord(id="c", status="available", port=1), _records(w=state["status"]), state["addresses"]
            )
        }
    )

    async def main() -> None:
        held = asyncio.ensure_future(topo.route("c", "writer"))
        while not topo._waiters:  # parked until the next change
            assert not held.done()
            await asyncio.sleep(0)
        state["addresses"] = {"w": Address("127.0.0.1", 7000)}
        state["status"] = "available"
        topo.changed()
        assert (await held).port == 7000

    asyncio.run(main())


@pytest.mark.parametrize("status", ["failed", "stopped", "inaccessible-encryption-credentials"])
def test_route_fails_at_once_for_an_instance_that_is_down(status: str) -> None:
    topo = Topology(
        lambda: {"c": build_view(ClusterRecord(id="c", status="available", port=1), _records(w=status), {})}
    )

    async def main() -> None:
        with pytest.raises(Unavailable, match=f"not available \\(status: {status}\\)") as exc:
            await topo.route("c", "writer")
        assert exc.value.sqlstate == "57P03" and not topo._waiters

    asyncio.run(main())


def test_stored_views_read_addresses_from_records() -> None:
    clusters = [{"id": "c", "status": "available", "port": 1}]
    instances = [
        {"id": "w", "cluster": "c", "status": "available", "role": "writer", "port": 2, "pg_port": 7000,
         "pg_socket": "/tmp/sock"},
        {"id": "r", "cluster": "c", "status": "available", "role": "reader", "port": 3},
    ]  # fmt: skip
    views = stored_views(clusters, instances)
    writer = views["c"].writer
    assert writer is not None and writer.ready and str(writer.socket_dir) == "/tmp/sock"
    assert views["c"].ready_readers == ()  # no address stored: not running
    # A worker's topology moves its generation only when what it reads changed.
    topo = Topology(lambda: stored_views(clusters, instances), ttl=0.0)
    moved: list[int] = []
    topo.watch(lambda: moved.append(1))
    g = topo.generation
    assert topo.generation == g and moved == [1]  # the first load is a change too
    instances[1]["pg_port"] = 7001
    assert topo.generation == g + 1 and moved == [1, 1]  # watchers hear of a reload that moved it
    assert topo.generation == g + 1 and moved == [1, 1]
