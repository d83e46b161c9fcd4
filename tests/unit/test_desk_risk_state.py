"""The desk's risk state against a real PostgreSQL server: one order-rate budget for processes
with their own state folders, daily P&L baselines read back by another process, and a desk
that stops answering falling back to this process's own counting without raising."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from support import until

from brokers.config import AccountConfig, Config
from brokers.desk import DeskSettings, DeskStore
from brokers.desk.risk_state import DeskBuckets, DeskDayStore
from brokers.models import OrderRequest, OrderStatus, RejectCode, Side
from brokers.risk import RiskLimits
from brokers.riskstate import DayBaseline
from brokers.runtime import Runtime, build_runtime
from brokers.sim import SimBroker
from console.cli.bench.postgres import Cluster


def settings(dsn: str) -> DeskSettings:
    return DeskSettings(dsn=dsn, poll_ms=100)


async def made(dsn: str) -> None:
    store = await DeskStore.connect(settings(dsn))
    try:
        await store.migrate()
    finally:
        await store.close()


def runtime_on(dsn: str, folder: Path) -> Runtime:
    # Three orders at once, then one every hundred seconds: the test never sees a refill.
    limits = RiskLimits(max_orders_per_second=Decimal("0.01"), burst=3)
    config = Config(accounts=[AccountConfig(name="paper", type="sim", risk=limits)], desk=settings(dsn))
    broker = SimBroker("paper", prices={"AAPL": Decimal(100)}, seed=1)
    return build_runtime(config, brokers={"paper": broker}, state_dir=folder)


async def test_two_processes_share_one_order_rate_budget(desk_dsn: str, tmp_path: Path) -> None:
    await made(desk_dsn)
    here, there = runtime_on(desk_dsn, tmp_path / "here"), runtime_on(desk_dsn, tmp_path / "there")
    await here.start()
    await there.start()
    try:
        mine, theirs = here.desk_buckets, there.desk_buckets
        assert mine is not None and theirs is not None
        await until(lambda: mine.connected and theirs.connected, within=5)
        results = [
            await runtime.execution.submit(OrderRequest(symbol="AAPL", side=Side.BUY, quantity=Decimal(1)))
            for runtime in (here, there, here, there)
        ]
        accepted = [r for r in results if r.status is not OrderStatus.REJECTED]
        refused = [r for r in results if r.status is OrderStatus.REJECTED]
        assert len(accepted) == 3, [r.reject_reason for r in results]
        assert [r.reject_code for r in refused] == [RejectCode.RATE_LIMIT]
    finally:
        await here.stop()
        await there.stop()


async def test_daily_baselines_are_read_back_by_another_process(desk_dsn: str) -> None:
    await made(desk_dsn)
    writer, reader = DeskDayStore(settings(desk_dsn)), DeskDayStore(settings(desk_dsn))
    try:
        await until(lambda: writer.connected and reader.connected, within=5)
        today = date(2026, 12, 4)
        baseline = DayBaseline(Decimal("101.25"), Decimal("-40.5"))
        assert writer.save(
            today, [("paper", "AAPL", baseline), ("paper", "MSFT", DayBaseline(Decimal(1), Decimal(0)))]
        )
        assert writer.save(today, [("paper", "AAPL", baseline._replace(realized=Decimal("-41")))])
        loaded = reader.load("paper", today)
        assert loaded["AAPL"] == DayBaseline(Decimal("101.25"), Decimal("-41"))
        assert set(loaded) == {"AAPL", "MSFT"}
        assert reader.load("paper", date(2026, 12, 3)) == {}
    finally:
        writer.close()
        reader.close()


async def test_a_silent_desk_falls_back_to_this_process_and_comes_back(own_cluster: Cluster) -> None:
    await made(own_cluster.dsn)
    buckets, days = DeskBuckets(settings(own_cluster.dsn)), DeskDayStore(settings(own_cluster.dsn))
    try:
        await until(lambda: buckets.connected and days.connected, within=5)
        assert buckets.take("paper", 0.01, 1, 0.0)
        assert not buckets.take("paper", 0.01, 1, 0.0)  # the desk's only token is spent
        # A clean stop: the test cluster commits asynchronously, and an immediate stop could
        # lose the token just taken, which the desk must still hold when it is back.
        own_cluster.stop("fast")
        # This process's own bucket from here on: limited, never raising.
        assert buckets.take("paper", 0.01, 1, 0.0)
        assert not buckets.take("paper", 0.01, 1, 0.0)
        assert days.save(date(2026, 12, 4), [("paper", "AAPL", DayBaseline(Decimal(1), Decimal(0)))]) is False
        assert days.load("paper", date(2026, 12, 4)) == {}
        own_cluster.start()
        await until(lambda: buckets.connected, within=10)
        # The desk's bucket again, still spent.
        assert not buckets.take("paper", 0.01, 1, 0.0)
    finally:
        buckets.close()
        days.close()


async def test_the_bucket_of_orders_tied_to_no_account_is_on_the_desk_too(desk_dsn: str) -> None:
    await made(desk_dsn)
    here, there = DeskBuckets(settings(desk_dsn)), DeskBuckets(settings(desk_dsn))
    try:
        await until(lambda: here.connected and there.connected, within=5)
        assert here.take(None, 0.01, 1, 0.0)
        assert not there.take(None, 0.01, 1, 0.0)  # one budget for both
        assert here.connected and there.connected  # the desk took the key: nothing fell back
    finally:
        here.close()
        there.close()
