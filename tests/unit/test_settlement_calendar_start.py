"""The settlement calendars load in the background, off the connect path: accounts connect at
once, the event loop goes on, and the first order of the paper broker waits for them in a
thread (its fills are dated by them)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from brokers import settlement
from brokers.config import demo_config
from brokers.models import ConnectionState, OrderRequest, OrderStatus
from brokers.runtime import build_runtime
from brokers.sim import SimBroker


@pytest.fixture
def held_calendars(monkeypatch):
    """Calendars whose load does not finish until the returned event is set."""
    release = threading.Event()
    loaded = threading.Event()

    def load() -> None:
        release.wait(10)
        loaded.set()

    monkeypatch.setattr(settlement, "_LOADED", loaded)
    monkeypatch.setattr(settlement, "_load_calendars", load)
    settlement.warm_up.cache_clear()
    yield release
    release.set()
    settlement.warm_up.cache_clear()


async def test_an_account_connects_while_the_calendars_load_and_its_first_order_waits(held_calendars):
    broker = SimBroker("paper", prices={"AAPL": 100})
    await broker.connect()
    assert broker.is_connected() and not settlement.calendars_loaded()

    placing = asyncio.create_task(broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=1)))
    # The event loop is not held up meanwhile: other calls of the account are answered.
    balance = await broker.get_balance()
    assert balance.cash == 100_000 and not placing.done()

    held_calendars.set()
    order = await asyncio.wait_for(placing, 10)
    assert order.status is OrderStatus.FILLED
    assert order.fills[0].settlement_date is not None and settlement.calendars_loaded()


async def test_the_runtime_starts_loading_them_and_connects_without_waiting(held_calendars, tmp_path: Path):
    runtime = build_runtime(demo_config(tick_interval=None), state_dir=tmp_path)
    await runtime.start()
    try:
        states = {status.state for status in runtime.manager.statuses().values()}
        assert states == {ConnectionState.CONNECTED} and not settlement.calendars_loaded()
        assert settlement.warm_up().is_alive()  # started by the runtime, still loading
    finally:
        held_calendars.set()
        await runtime.stop()
