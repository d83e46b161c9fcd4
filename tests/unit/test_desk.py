"""Desk mode against a real PostgreSQL server: one halt, one resume across processes with their
own state folders, and a process that loses the desk halting itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from support import until

from brokers.desk import UNREACHABLE_SOURCE, DeskLink, DeskSettings, DeskStore
from brokers.desk.store import SCHEMA_VERSION, WorkingOrder
from brokers.enums import TradingState
from brokers.killswitch import KillSwitch
from console.cli.bench.postgres import Cluster

PROJECT = Path(__file__).resolve().parents[2]


def settings(dsn: str, **fields: object) -> DeskSettings:
    return DeskSettings(dsn=dsn, **{"fail_after_ms": 1000, "poll_ms": 100, **fields})  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def linked(
    dsn: str, folder: Path, name: str, **fields: object
) -> AsyncIterator[tuple[KillSwitch, DeskLink]]:
    switch = KillSwitch(folder, env={})
    link = DeskLink(switch, settings(dsn, **fields), name=name, host=f"host-{name}")
    await link.start()
    try:
        yield switch, link
    finally:
        await link.stop()


def desk_row(dsn: str) -> tuple[str, str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state, source, version FROM desk.trading_state").fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), int(row[2])


def test_a_password_in_the_address_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError) as caught:
        DeskSettings(dsn="postgresql://trader:hunter2@db:5432/desk")
    assert "password" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="PostgreSQL address"):
        DeskSettings(dsn="mysql://db/desk")


async def test_a_halt_and_a_resume_reach_every_process(desk_dsn: str, tmp_path: Path) -> None:
    async with (
        linked(desk_dsn, tmp_path / "a", "a") as (a, link_a),
        linked(desk_dsn, tmp_path / "b", "b") as (b, link_b),
        linked(desk_dsn, tmp_path / "c", "c") as (c, link_c),
    ):
        for link in (link_a, link_b, link_c):
            assert await link.wait_connected(5)
        a.halt("fat finger on the desk", source="key")
        await until(lambda: b.is_halted and c.is_halted, within=3)
        assert b.info is not None and "fat finger" in b.info.reason and b.info.source.startswith("desk")
        assert desk_row(desk_dsn)[:2] == ("HALTED", "key")

        b.resume("checked, all clear", source="cli")
        await until(lambda: a.state is TradingState.ACTIVE and c.state is TradingState.ACTIVE, within=3)
        assert desk_row(desk_dsn)[0] == "ACTIVE"

        c.reduce_only("near the loss limit", source="api")
        await until(lambda: a.state is TradingState.REDUCING and b.state is TradingState.REDUCING, within=3)


async def test_a_desk_halt_holds_for_a_process_that_starts_later(desk_dsn: str, tmp_path: Path) -> None:
    async with linked(desk_dsn, tmp_path / "a", "a") as (a, link_a):
        assert await link_a.wait_connected(5)
        a.halt("closing the desk", source="key")
        await until(lambda: desk_row(desk_dsn)[0] == "HALTED", within=3)
    async with linked(desk_dsn, tmp_path / "late", "late") as (late, link):
        assert await link.wait_connected(5)
        await until(lambda: late.is_halted, within=3)


async def test_a_local_halt_newer_than_the_desk_is_written_to_it(desk_dsn: str, tmp_path: Path) -> None:
    async with linked(desk_dsn, tmp_path / "a", "a") as (_a, link_a):
        assert await link_a.wait_connected(5)  # the desk exists and is ACTIVE
    offline = KillSwitch(tmp_path / "b", env={})
    offline.halt("halted while the desk was not linked", source="cli")
    async with (
        linked(desk_dsn, tmp_path / "b", "b") as (b, link_b),
        linked(desk_dsn, tmp_path / "c", "c") as (c, _),
    ):
        assert await link_b.wait_connected(5)
        await until(lambda: desk_row(desk_dsn)[0] == "HALTED", within=3)
        await until(lambda: c.is_halted, within=3)
        assert b.is_halted


async def test_many_processes_starting_together_create_the_desk_once(desk_dsn: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        links = [
            (await stack.enter_async_context(linked(desk_dsn, tmp_path / str(i), str(i))))[1]
            for i in range(6)
        ]
        assert all([await link.wait_connected(10) for link in links])
        store = await DeskStore.connect(settings(desk_dsn))
        try:
            assert len(await store.processes()) == 6
        finally:
            await store.close()
    with psycopg.connect(desk_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM desk.trading_state").fetchone() == (1,)
        # Each migration ran once.
        versions = [
            row[0] for row in conn.execute("SELECT version FROM desk.schema_version ORDER BY version")
        ]
        assert versions == list(range(1, SCHEMA_VERSION + 1))


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from brokers.desk import DeskLink, DeskSettings
    from brokers.killswitch import KillSwitch

    async def main():
        switch = KillSwitch(Path(sys.argv[2]), env={})
        # A long fail_after: this test is about a halt reaching it, not about losing the desk.
        link = DeskLink(switch, DeskSettings(dsn=sys.argv[1], poll_ms=100, fail_after_ms=10_000), name="script")
        await link.start()
        assert await link.wait_connected(10)
        print("ready", flush=True)
        while not switch.is_halted:
            await asyncio.sleep(0.005)
        print("halted", switch.info.reason, flush=True)
        await link.stop()

    asyncio.run(main())
    """
)


async def test_a_halt_reaches_another_process_with_its_own_state_folder(
    desk_dsn: str, tmp_path: Path
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        desk_dsn,
        str(tmp_path / "child"),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"ready"
        async with linked(desk_dsn, tmp_path / "parent", "parent") as (parent, link):
            assert await link.wait_connected(5)
            parent.halt("one key for the whole desk", source="key")
            line = await asyncio.wait_for(child.stdout.readline(), 10)
        assert line.startswith(b"halted") and b"one key for the whole desk" in line
        assert await asyncio.wait_for(child.wait(), 10) == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


# -- the desk going away ----------------------------------------------------------------------


async def test_losing_the_desk_halts_each_process_and_only_a_deliberate_resume_lifts_it(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn
    async with (
        linked(dsn, tmp_path / "a", "a", fail_after_ms=600) as (a, link_a),
        linked(dsn, tmp_path / "b", "b", fail_after_ms=600) as (b, link_b),
    ):
        assert await link_a.wait_connected(5) and await link_b.wait_connected(5)
        stopped = time.monotonic()
        own_cluster.stop("immediate")
        await until(lambda: a.is_halted and b.is_halted, within=5)
        took = time.monotonic() - stopped
        assert took < 0.6 + 1.0, took
        assert a.info is not None and a.info.source == UNREACHABLE_SOURCE
        assert "desk unreachable" in a.info.reason

        # Resuming while the desk does not answer does not hold, and is never told to the desk.
        a.resume("trying anyway", source="cli")
        await until(lambda: a.is_halted, within=3)
        assert link_a.unsent is None

        # A halt made here while the desk is down goes to the desk when it is back.
        b.resume("b's own halt follows", source="cli")
        b.halt("risk officer's halt", source="key")

        own_cluster.start()
        await until(lambda: link_a.connected and link_b.connected, within=10)
        await until(lambda: desk_row(dsn)[:2] == ("HALTED", "key"), within=5)
        # The fail-closed halt itself was never written to the desk.
        with psycopg.connect(dsn) as conn:
            reason = conn.execute("SELECT reason FROM desk.trading_state").fetchone()
        assert reason == ("risk officer's halt",)

        # The deliberate resume, now that the desk answers, lifts it everywhere.
        b.resume("all clear", source="cli")
        await until(lambda: a.state is TradingState.ACTIVE and b.state is TradingState.ACTIVE, within=5)
        assert desk_row(dsn)[0] == "ACTIVE"


async def test_a_halt_from_another_machine_stops_this_process_orders(desk_dsn: str, tmp_path: Path) -> None:
    from brokers.config import AccountConfig, Config
    from brokers.models import OrderRequest, OrderStatus, RejectCode
    from brokers.runtime import build_runtime
    from brokers.sim import SimBroker

    config = Config(
        accounts=[AccountConfig(name="paper", type="sim")],
        desk=DeskSettings(dsn=desk_dsn, poll_ms=100),
    )
    runtime = build_runtime(config, brokers={"paper": SimBroker("paper")}, state_dir=tmp_path / "here")
    await runtime.start()
    try:
        assert runtime.desk is not None and runtime.desk.connected
        placed = await runtime.execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
        assert placed.status is not OrderStatus.REJECTED, placed.reject_reason
        async with linked(desk_dsn, tmp_path / "elsewhere", "elsewhere") as (elsewhere, link):
            assert await link.wait_connected(5)
            elsewhere.halt("the desk stops", source="key")
            await until(lambda: runtime.kill_switch.is_halted, within=3)
        refused = await runtime.execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
        assert refused.reject_code == RejectCode.SYSTEM_HALTED
    finally:
        await runtime.stop()


async def test_one_deliberate_resume_lifts_every_halt_the_lost_desk_caused(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn
    async with (
        linked(dsn, tmp_path / "a", "a", fail_after_ms=600) as (a, link_a),
        linked(dsn, tmp_path / "b", "b", fail_after_ms=600) as (b, link_b),
    ):
        assert await link_a.wait_connected(5) and await link_b.wait_connected(5)
        own_cluster.stop("immediate")
        await until(lambda: a.is_halted and b.is_halted, within=5)
        own_cluster.start()
        await until(lambda: link_a.connected and link_b.connected, within=10)
        # The desk answers again and is ACTIVE, yet both stay halted: nobody has resumed.
        assert desk_row(dsn)[0] == "ACTIVE"
        assert a.is_halted and b.is_halted
        a.resume("network back, positions checked", source="cli")
        await until(lambda: b.state is TradingState.ACTIVE, within=5)
        assert b.info is None and a.last_resume is not None
        with psycopg.connect(dsn) as conn:
            reason = conn.execute("SELECT reason FROM desk.trading_state").fetchone()
        assert reason == ("network back, positions checked",)


async def test_a_halt_from_losing_the_desk_outlives_a_restart(desk_dsn: str, tmp_path: Path) -> None:
    async with linked(desk_dsn, tmp_path / "a", "a") as (_a, link_a):
        assert await link_a.wait_connected(5)  # the desk exists and is ACTIVE
    earlier = KillSwitch(tmp_path / "b", env={})
    earlier.halt("desk unreachable for 1.0s", source=UNREACHABLE_SOURCE)
    async with linked(desk_dsn, tmp_path / "b", "b") as (b, link_b):
        assert await link_b.wait_connected(5)
        # In step with an ACTIVE desk, and still halted: only a deliberate resume lifts it.
        assert b.is_halted and link_b.unsent is None
        assert desk_row(desk_dsn)[0] == "ACTIVE"


class _Orders:
    """One working order, and the cancels asked of it (``DeskOrders``)."""

    def __init__(self, client_order_id: str) -> None:
        self.order = WorkingOrder("paper", client_order_id, f"B-{client_order_id}")
        self.cancelled: list[str] = []

    def working(self) -> list[WorkingOrder]:
        return [self.order]

    def reaches(self, account: str) -> bool:
        return True

    async def cancel_for_desk(self, account: str, broker_order_id: str) -> None:
        self.cancelled.append(broker_order_id)


def ghost(dsn: str) -> None:
    """A process last heard an hour ago, with a working order: dead by any setting."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO desk.processes (id, host, pid, name, seen_at) "
            "VALUES ('ghost', 'elsewhere', 1, 'console', now() - interval '1 hour')"
        )
        conn.execute("INSERT INTO desk.working_orders VALUES ('ghost', 'paper', 'G1', 'B-G1')")


async def test_a_restarted_desk_counts_silence_from_its_start(own_cluster: Cluster) -> None:
    desk = settings(own_cluster.dsn)
    store = await DeskStore.connect(desk)
    await store.migrate()
    await store.close()
    ghost(own_cluster.dsn)
    own_cluster.stop("fast")  # the cluster commits asynchronously: an immediate stop may lose the rows
    own_cluster.start()
    store = await DeskStore.connect(desk)
    try:
        # Every process looks silent right after the server is back: none is dead yet.
        assert await store.take_over_silent("me", 1.0) == []
        taken: list[str] = []

        async def claim() -> bool:
            taken.extend(process.id for process, _ in await store.take_over_silent("me", 1.0))
            return bool(taken)

        # Silent for a whole second of the server being up, it is.
        started = time.monotonic()
        for _ in range(100):
            if await claim():
                break
            await asyncio.sleep(0.05)
        assert taken == ["ghost"]
        assert time.monotonic() - started >= 0.5
    finally:
        await store.close()


async def test_a_process_back_on_the_desk_waits_before_taking_anyone_over(
    desk_dsn: str, tmp_path: Path
) -> None:
    store = await DeskStore.connect(settings(desk_dsn))
    await store.migrate()
    await store.close()
    ghost(desk_dsn)
    orders = _Orders("A1")
    link = DeskLink(
        KillSwitch(tmp_path / "a", env={}),
        settings(desk_dsn, heartbeat_ms=100, dead_after_ms=1000),
        name="a",
        orders=orders,
    )
    await link.start()
    try:
        assert await link.wait_connected(5)
        connected = time.monotonic()
        await until(lambda: link.alerts, within=5)
        # Not at once: the others may not be back yet after this process's own outage.
        assert time.monotonic() - connected >= 0.9
        assert orders.cancelled == ["B-G1"]
    finally:
        await link.stop()
