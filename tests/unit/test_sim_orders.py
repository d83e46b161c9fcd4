"""Order types, time in force, partial fills and order bookkeeping at the paper broker."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.errors import (
    BrokerConnectionError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from brokers.instruments import Instrument
from brokers.models import AssetClass, OrderRequest, OrderStatus, OrderType, TimeInForce
from brokers.sim import ManualClock, SimBroker

D = Decimal
S = OrderStatus


def request(
    side: str = "BUY", quantity="10", order_type: str = "MARKET", symbol: str = "AAPL", **kwargs
) -> OrderRequest:
    return OrderRequest(symbol=symbol, side=side, quantity=quantity, order_type=order_type, **kwargs)


@pytest.fixture
async def broker():
    sim = SimBroker(prices={"AAPL": 200}, initial_cash=1_000_000)
    await sim.connect()
    yield sim
    await sim.disconnect()


async def status(broker: SimBroker, order) -> OrderStatus:
    return (await broker.get_order(order.broker_order_id)).status


# -- market and limit --------------------------------------------------------------------


async def test_market_order_fills_at_once_with_ids(broker):
    order = await broker.place_order(request(client_order_id="MINE-1"))
    assert order.status is S.FILLED
    assert order.broker_order_id == "SIM-000001"
    assert order.client_order_id == "MINE-1"
    assert order.account == "sim"
    assert (order.filled_quantity, order.avg_fill_price) == (D(10), D(200))
    assert [f.fill_id for f in order.fills] == ["SIM-000001-1"]
    fill = order.fills[0]
    assert (fill.broker_order_id, fill.client_order_id, fill.currency) == ("SIM-000001", "MINE-1", "USD")
    second = await broker.place_order(request())
    assert second.broker_order_id == "SIM-000002"


async def test_resting_buy_limit_fills_at_its_limit_when_the_price_comes_down(broker):
    order = await broker.place_order(request(order_type="LIMIT", limit_price=195))
    assert order.status is S.ACCEPTED
    broker.set_price("AAPL", 197)
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", 194)  # gaps through: the resting bid was hit at 195
    filled = await broker.get_order(order.broker_order_id)
    assert filled.status is S.FILLED and filled.avg_fill_price == D(195)


async def test_marketable_limit_takes_the_market_price(broker):
    buy = await broker.place_order(request(order_type="LIMIT", limit_price=205))
    sell = await broker.place_order(request(side="SELL", order_type="LIMIT", limit_price=190))
    assert (buy.status, buy.avg_fill_price) == (S.FILLED, D(200))
    assert (sell.status, sell.avg_fill_price) == (S.FILLED, D(200))


async def test_sell_limit_fills_on_touch(broker):
    order = await broker.place_order(request(side="SELL", order_type="LIMIT", limit_price=210))
    broker.set_price("AAPL", "209.99")
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", 210)
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D(210))


async def test_slippage_never_crosses_the_limit():
    sim = SimBroker(prices={"AAPL": 200}, slippage_bps=50)  # 1.00 on 200
    await sim.connect()
    capped = await sim.place_order(request(order_type="LIMIT", limit_price="200.40"))
    assert capped.avg_fill_price == D("200.40")
    free = await sim.place_order(request())
    assert free.avg_fill_price == D(201)


# -- stops ----------------------------------------------------------------------------------


async def test_buy_stop_triggers_at_the_stop_and_fills_at_the_market(broker):
    order = await broker.place_order(request(order_type="STOP", stop_price=205))
    assert order.status is S.ACCEPTED and broker.stop_level(order.broker_order_id) == D(205)
    broker.set_price("AAPL", "204.99")
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", 207)  # a gap: fills at the price that triggered it
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D(207))


async def test_sell_stop(broker):
    order = await broker.place_order(request(side="SELL", order_type="STOP", stop_price=195))
    broker.set_price("AAPL", 196)
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", 195)
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D(195))


async def test_stop_already_through_the_market_triggers_on_arrival(broker):
    order = await broker.place_order(request(order_type="STOP", stop_price=150))
    assert (order.status, order.avg_fill_price) == (S.FILLED, D(200))


async def test_stop_limit_triggered_past_its_limit_rests_as_a_limit(broker):
    order = await broker.place_order(
        request(side="SELL", order_type="STOP_LIMIT", stop_price=195, limit_price=194)
    )
    broker.set_price("AAPL", 193)  # triggered, but 193 is below the 194 limit
    assert await status(broker, order) is S.ACCEPTED
    assert await broker.get_positions() == []
    broker.set_price("AAPL", "194.50")
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D(194))


async def test_stop_limit_marketable_when_triggered(broker):
    order = await broker.place_order(request(order_type="STOP_LIMIT", stop_price=205, limit_price=207))
    broker.set_price("AAPL", 204)
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", 206)
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D(206))


async def test_stop_limit_untriggered_does_not_fill_even_when_the_limit_is_marketable(broker):
    order = await broker.place_order(request(order_type="STOP_LIMIT", stop_price=210, limit_price=212))
    broker.set_price("AAPL", 201)  # below the limit, but the stop is not reached
    assert await status(broker, order) is S.ACCEPTED


async def test_trailing_stop_by_amount_follows_the_high_water_mark(broker):
    broker.set_price("AAPL", 100)
    order = await broker.place_order(request(side="SELL", order_type="TRAILING_STOP", trail_amount=5))
    oid = order.broker_order_id
    assert broker.stop_level(oid) == D(95)
    broker.set_price("AAPL", 110)
    assert broker.stop_level(oid) == D(105)
    broker.set_price("AAPL", 106)
    assert broker.stop_level(oid) == D(105)  # the stop never moves back down
    broker.set_price("AAPL", 108)
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", "104.99")
    filled = await broker.get_order(oid)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D("104.99"))
    assert broker.stop_level(oid) is None


async def test_trailing_stop_by_percent(broker):
    broker.set_price("AAPL", 100)
    order = await broker.place_order(request(side="SELL", order_type="TRAILING_STOP", trail_percent=10))
    assert broker.stop_level(order.broker_order_id) == D(90)
    broker.set_price("AAPL", 120)
    assert broker.stop_level(order.broker_order_id) == D(108)  # 120 * 0.9
    broker.set_price("AAPL", "108.50")
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", "107.90")
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D("107.90"))


async def test_buy_trailing_stop_follows_the_low(broker):
    broker.set_price("AAPL", 50)
    order = await broker.place_order(request(order_type="TRAILING_STOP", trail_amount=2))
    assert broker.stop_level(order.broker_order_id) == D(52)
    broker.set_price("AAPL", 45)
    assert broker.stop_level(order.broker_order_id) == D(47)
    broker.set_price("AAPL", 46)
    assert await status(broker, order) is S.ACCEPTED
    broker.set_price("AAPL", 47)
    filled = await broker.get_order(order.broker_order_id)
    assert (filled.status, filled.avg_fill_price) == (S.FILLED, D(47))


async def test_the_random_feed_triggers_resting_orders():
    sim = SimBroker(prices={"AAPL": 100}, seed=7, volatility=0.01)
    await sim.connect()
    order = await sim.place_order(request(order_type="LIMIT", limit_price=99))
    path = []
    while (await sim.get_order(order.broker_order_id)).status is S.ACCEPTED:
        path.append(sim.step()["AAPL"])
        assert len(path) < 10_000
    filled = await sim.get_order(order.broker_order_id)
    assert min(path) <= D(99) < min(path[:-1], default=D(100))
    assert filled.avg_fill_price == D(99)


# -- time in force -----------------------------------------------------------------------


async def test_day_orders_expire_at_end_of_day_and_gtc_orders_stay(broker):
    day = await broker.place_order(request(order_type="LIMIT", limit_price=150))
    gtc = await broker.place_order(request(order_type="LIMIT", limit_price=150, time_in_force="GTC"))
    assert broker.end_of_day() == [day.broker_order_id]
    assert await status(broker, day) is S.EXPIRED
    assert await status(broker, gtc) is S.ACCEPTED
    assert [o.broker_order_id for o in await broker.get_open_orders()] == [gtc.broker_order_id]


async def test_partially_filled_day_order_expires_with_its_fills(broker):
    sim = SimBroker(prices={"AAPL": 200}, liquidity_per_tick=4)
    await sim.connect()
    order = await sim.place_order(request(order_type="LIMIT", limit_price=200))
    assert (order.status, order.filled_quantity) == (S.PARTIALLY_FILLED, D(4))
    sim.end_of_day()
    expired = await sim.get_order(order.broker_order_id)
    assert (expired.status, expired.filled_quantity) == (S.EXPIRED, D(4))


async def test_day_orders_expire_when_the_clock_passes_the_session_close():
    clock = ManualClock(datetime(2024, 1, 2, 20, 0, tzinfo=UTC))  # 15:00 in New York
    sim = SimBroker(
        prices={"AAPL": 200}, clock=clock, session_close="16:00", session_timezone="America/New_York"
    )
    await sim.connect()
    day = await sim.place_order(request(order_type="LIMIT", limit_price=150))
    gtc = await sim.place_order(request(order_type="LIMIT", limit_price=150, time_in_force="GTC"))
    assert day.created_at == clock()
    clock.advance(minutes=59)
    sim.set_price("AAPL", 199)
    assert await status(sim, day) is S.ACCEPTED
    clock.advance(minutes=1)  # 21:00 UTC is 16:00 in New York in January
    orders = {o.broker_order_id for o in await sim.get_open_orders()}
    assert orders == {gtc.broker_order_id}
    expired = await sim.get_order(day.broker_order_id)
    assert expired.status is S.EXPIRED and expired.updated_at == clock()

    # The next session's DAY order lives until the next close.
    tomorrow = await sim.place_order(request(order_type="LIMIT", limit_price=150))
    clock.advance(hours=23, minutes=59)
    assert await status(sim, tomorrow) is S.ACCEPTED
    clock.advance(minutes=1)
    assert await status(sim, tomorrow) is S.EXPIRED


async def test_ioc_fills_what_it_can_and_cancels_the_rest():
    sim = SimBroker(prices={"AAPL": 200}, liquidity_per_tick=100)
    await sim.connect()
    order = await sim.place_order(request(quantity=250, time_in_force="IOC"))
    assert (order.status, order.filled_quantity) == (S.CANCELLED, D(100))
    assert (await sim.get_positions())[0].quantity == D(100)
    sim.set_price("AAPL", 200)
    assert (await sim.get_order(order.broker_order_id)).filled_quantity == D(100)


async def test_ioc_limit_that_is_not_marketable_is_cancelled_unfilled(broker):
    order = await broker.place_order(request(order_type="LIMIT", limit_price=150, time_in_force="IOC"))
    assert (order.status, order.filled_quantity) == (S.CANCELLED, D(0))
    assert await broker.get_open_orders() == []


async def test_fok_fills_completely_or_is_cancelled():
    sim = SimBroker(prices={"AAPL": 200}, liquidity_per_tick=100)
    await sim.connect()
    too_big = await sim.place_order(request(quantity=250, time_in_force="FOK"))
    assert (too_big.status, too_big.filled_quantity, too_big.fills) == (S.CANCELLED, D(0), [])
    assert await sim.get_positions() == []
    fits = await sim.place_order(request(quantity=100, time_in_force="FOK"))
    assert (fits.status, fits.filled_quantity) == (S.FILLED, D(100))


async def test_fok_limit_away_from_the_market_is_cancelled(broker):
    order = await broker.place_order(request(order_type="LIMIT", limit_price=150, time_in_force="FOK"))
    assert order.status is S.CANCELLED
    marketable = await broker.place_order(request(order_type="LIMIT", limit_price=201, time_in_force="FOK"))
    assert marketable.status is S.FILLED


# -- partial fills -----------------------------------------------------------------------


async def test_market_order_larger_than_liquidity_fills_over_several_updates():
    sim = SimBroker(prices={"AAPL": 200}, liquidity_per_tick=100)
    await sim.connect()
    order = await sim.place_order(request(quantity=250))
    assert (order.status, order.filled_quantity) == (S.PARTIALLY_FILLED, D(100))
    sim.set_price("AAPL", 201)
    assert (await sim.get_order(order.broker_order_id)).filled_quantity == D(200)
    sim.set_price("AAPL", 202)
    done = await sim.get_order(order.broker_order_id)
    assert done.status is S.FILLED
    assert [(f.quantity, f.price) for f in done.fills] == [
        (D(100), D(200)),
        (D(100), D(201)),
        (D(50), D(202)),
    ]
    assert done.avg_fill_price == D("200.8")  # (20,000 + 20,100 + 10,100) / 250
    assert [f.fill_id for f in done.fills] == [f"{done.broker_order_id}-{n}" for n in (1, 2, 3)]


async def test_liquidity_is_per_order_per_update():
    sim = SimBroker(prices={"AAPL": 200}, liquidity_per_tick=5)
    await sim.connect()
    first = await sim.place_order(request(order_type="LIMIT", limit_price=190))
    second = await sim.place_order(request(order_type="LIMIT", limit_price=190))
    sim.set_price("AAPL", 190)
    got = [await sim.get_order(o.broker_order_id) for o in (first, second)]
    assert [(o.status, o.filled_quantity) for o in got] == [(S.PARTIALLY_FILLED, D(5))] * 2
    sim.set_price("AAPL", 191)  # back above the limit: nothing more
    assert (await sim.get_order(first.broker_order_id)).filled_quantity == D(5)


# -- refusals ------------------------------------------------------------------------------


async def test_unknown_symbol_is_refused(broker):
    with pytest.raises(InvalidSymbolError) as refused:
        await broker.place_order(request(symbol="ZZZZ"))
    assert refused.value.code == "UNKNOWN_SYMBOL" and "ZZZZ" in str(refused.value)
    assert refused.value.definite
    assert await broker.get_last_price(Instrument.stock("ZZZZ")) is None


async def test_new_symbols_can_be_priced_in(broker):
    broker.set_price("eurusd", "1.0850")
    order = await broker.place_order(request(symbol="EURUSD", quantity=1000, asset_class=AssetClass.FOREX))
    assert order.avg_fill_price == D("1.0850")
    assert broker.last_price_nowait(Instrument.stock("EURUSD")) == D("1.0850")


async def test_insufficient_funds_creates_no_order():
    sim = SimBroker(prices={"AAPL": 200}, initial_cash=1_000, account_type="cash")
    await sim.connect()
    cid = "BIG-ORDER"
    with pytest.raises(InsufficientFundsError):
        await sim.place_order(request(client_order_id=cid))
    assert await sim.get_order_by_client_id(cid) is None


async def test_a_client_order_id_cannot_be_used_twice(broker):
    await broker.place_order(request(client_order_id="ONCE"))
    with pytest.raises(OrderRejectedError) as refused:
        await broker.place_order(request(client_order_id="ONCE"))
    assert refused.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    assert len([p for p in await broker.get_positions()]) == 1
    assert (await broker.get_positions())[0].quantity == D(10)


async def test_an_order_in_another_currency_is_refused(broker):
    with pytest.raises(OrderRejectedError) as refused:
        await broker.place_order(request(currency="EUR"))
    assert refused.value.code == "CURRENCY"


async def test_calls_while_disconnected_raise():
    sim = SimBroker(prices={"AAPL": 200})
    assert not sim.is_connected()
    with pytest.raises(BrokerConnectionError):
        await sim.place_order(request())
    with pytest.raises(BrokerConnectionError):
        await sim.get_balance()
    await sim.connect()
    assert sim.is_connected()
    await sim.disconnect()
    with pytest.raises(BrokerConnectionError):
        await sim.get_open_orders()
    assert sim.last_price_nowait(Instrument.stock("AAPL")) == D(200)  # in-memory reads need no connection


# -- lookups and cancels -------------------------------------------------------------------


async def test_lookup_by_client_order_id(broker):
    order = await broker.place_order(request(order_type="LIMIT", limit_price=150, client_order_id="FIND-ME"))
    found = await broker.get_order_by_client_id("FIND-ME")
    assert found.broker_order_id == order.broker_order_id and found.status is S.ACCEPTED
    assert await broker.get_order_by_client_id("NEVER-SENT") is None


async def test_cancel_order(broker):
    order = await broker.place_order(request(order_type="LIMIT", limit_price=150))
    cancelled = await broker.cancel_order(order.broker_order_id)
    assert cancelled.status is S.CANCELLED
    broker.set_price("AAPL", 100)
    assert await broker.get_positions() == []
    again = await broker.cancel_order(order.broker_order_id)  # terminal: returned unchanged
    assert again.status is S.CANCELLED and again.updated_at == cancelled.updated_at
    filled = await broker.place_order(request())
    assert (await broker.cancel_order(filled.broker_order_id)).status is S.FILLED
    with pytest.raises(OrderNotFoundError):
        await broker.cancel_order("SIM-999999")
    with pytest.raises(OrderNotFoundError):
        await broker.get_order("nope")


async def test_cancel_all_orders(broker):
    resting = [await broker.place_order(request(order_type="LIMIT", limit_price=p)) for p in (150, 160)]
    await broker.place_order(request())  # filled: nothing to cancel
    ids = await broker.cancel_all_orders()
    assert ids == [o.broker_order_id for o in resting]
    assert await broker.get_open_orders() == []
    assert [await status(broker, o) for o in resting] == [S.CANCELLED, S.CANCELLED]
    assert await broker.cancel_all_orders() == []
    assert broker.capabilities.bulk_cancel


async def test_returned_orders_are_snapshots(broker):
    placed = await broker.place_order(request(order_type="LIMIT", limit_price=150))
    broker.set_price("AAPL", 150)
    assert placed.status is S.ACCEPTED and placed.fills == []
    now = await broker.get_order(placed.broker_order_id)
    assert now.status is S.FILLED
    now.fills.clear()
    assert len((await broker.get_order(placed.broker_order_id)).fills) == 1


async def test_history_is_bounded_but_working_orders_are_kept():
    sim = SimBroker(prices={"AAPL": 200}, history_limit=3)
    await sim.connect()
    gtc = await sim.place_order(request(order_type="LIMIT", limit_price=100, time_in_force="GTC"))
    filled = [await sim.place_order(request(quantity=1)) for _ in range(5)]
    assert await sim.get_order_by_client_id(filled[0].client_order_id) is None
    assert (await sim.get_order(filled[-1].broker_order_id)).status is S.FILLED
    assert (await sim.get_order(gtc.broker_order_id)).status is S.ACCEPTED


async def test_capabilities():
    sim = SimBroker(currency="EUR")
    caps = sim.capabilities
    assert caps.order_types == frozenset(OrderType)
    assert caps.time_in_force == frozenset(TimeInForce)
    assert caps.asset_classes == frozenset(AssetClass) - {AssetClass.OTHER}  # nothing trades OTHER
    assert caps.fractional_quantities and caps.short_selling and caps.bulk_cancel
    assert caps.currencies == frozenset({"EUR"})
    assert caps.supports(request(quantity="0.5", time_in_force="FOK")) is None
