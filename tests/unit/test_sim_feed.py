"""The seeded random-walk price feed and its task."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from brokers.instruments import Instrument
from brokers.sim import SimBroker
from brokers.sim.feed import RandomWalkFeed, round_to_tick, tick_size

D = Decimal
PRICES = {"AAPL": 200, "MSFT": 410, "PENNY": "0.5"}


def path(seed: int, steps: int = 50, **kwargs) -> list[dict[str, Decimal]]:
    broker = SimBroker(prices=PRICES, seed=seed, **kwargs)
    return [broker.step() for _ in range(steps)]


def test_same_seed_same_path_and_different_seed_different_path():
    assert path(42) == path(42)
    assert path(42) != path(43)


def test_path_does_not_depend_on_the_order_prices_were_given():
    reordered = SimBroker(prices=dict(reversed(list(PRICES.items()))), seed=42)
    assert [reordered.step() for _ in range(50)] == path(42)


def test_step_moves_every_symbol_and_updates_last_prices():
    broker = SimBroker(prices=PRICES, seed=1, volatility=0.01)
    moved = broker.step()
    assert set(moved) == {"AAPL", "MSFT", "PENNY"}
    assert {s: broker.last_price_nowait(Instrument.stock(s)) for s in moved} == moved
    assert moved["AAPL"] != D(200) or moved["MSFT"] != D(410)


def test_prices_stay_positive_and_on_the_tick_grid():
    feed = RandomWalkFeed(seed=3, volatility=0.2)
    prices = {"CHEAP": D("0.0003"), "MID": D("1.01"), "DEAR": D(5000)}
    for _ in range(2000):
        prices = feed.step(prices)
        for price in prices.values():
            assert price > 0
            assert price == price.quantize(tick_size(price))


def test_tick_rounding():
    assert tick_size(D("1.00")) == D("0.01")
    assert tick_size(D("0.99")) == D("0.0001")
    assert round_to_tick(D("100.005")) == D("100.00")  # half to even
    assert round_to_tick(D("100.015")) == D("100.02")
    assert round_to_tick(D("0.00001")) == D("0.0001")  # never below one tick
    assert round_to_tick(D("7.3"), D("0.25")) == D("7.25")


def test_zero_volatility_is_a_flat_market():
    broker = SimBroker(prices={"AAPL": 200}, seed=5, volatility=0)
    assert [broker.step()["AAPL"] for _ in range(10)] == [D(200)] * 10


def test_a_fixed_tick_size():
    broker = SimBroker(prices={"ES": 5000}, seed=9, volatility=0.01, tick_size="0.25")
    for _ in range(100):
        price = broker.step()["ES"]
        assert price % D("0.25") == 0


async def test_start_and_stop_feed():
    broker = SimBroker(prices={"AAPL": 200}, seed=11, volatility=0.01)
    broker.start_feed(0.005)
    assert broker.feed_running
    for _ in range(200):
        await asyncio.sleep(0.005)
        if broker.last_price_nowait(Instrument.stock("AAPL")) != D(200):
            break
    assert broker.last_price_nowait(Instrument.stock("AAPL")) != D(200)
    broker.stop_feed()
    await asyncio.sleep(0)
    assert not broker.feed_running
    frozen = broker.last_price_nowait(Instrument.stock("AAPL"))
    await asyncio.sleep(0.03)
    assert broker.last_price_nowait(Instrument.stock("AAPL")) == frozen


async def test_tick_interval_runs_the_feed_between_connect_and_disconnect():
    broker = SimBroker(prices={"AAPL": 200}, seed=11, tick_interval=0.005)
    assert not broker.feed_running
    await broker.connect()
    assert broker.feed_running
    await broker.disconnect()
    assert not broker.feed_running
