"""Brackets, OTO and OCO at the paper broker: the venue holds the exits, sends them when the entry
is done, and lets at most one exit of a pair ever fill."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX
from brokers.models import OrderRequest, OrderStatus, Side
from brokers.sim import SimBroker

D = Decimal


def paper(**fields) -> SimBroker:
    fields.setdefault("prices", {"AAPL": 100})
    fields.setdefault("initial_cash", 10_000_000)
    return SimBroker("paper", **fields)


def exits(broker: SimBroker, coid: str):
    venue = broker._venue
    found = {}
    for suffix in (TAKE_PROFIT_SUFFIX, STOP_LOSS_SUFFIX):
        order = venue.order_by_client(coid + suffix)
        if order is not None:
            found[suffix] = order
    return found


async def test_a_filled_bracket_entry_sends_both_exits_for_its_quantity():
    broker = paper()
    await broker.connect()
    entry = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=10, take_profit=110, stop_loss=95)
    )
    assert entry.status is OrderStatus.FILLED
    legs = exits(broker, entry.client_order_id)
    tp, sl = legs[TAKE_PROFIT_SUFFIX], legs[STOP_LOSS_SUFFIX]
    assert (tp.side, tp.order_type.value, tp.limit_price, tp.quantity) == (Side.SELL, "LIMIT", 110, 10)
    assert (sl.side, sl.order_type.value, sl.stop_price, sl.quantity) == (Side.SELL, "STOP", 95, 10)
    broker.set_price("AAPL", 94)
    legs = exits(broker, entry.client_order_id)
    assert legs[STOP_LOSS_SUFFIX].status is OrderStatus.FILLED
    assert legs[TAKE_PROFIT_SUFFIX].status is OrderStatus.CANCELLED
    assert await broker.get_positions() == []


async def test_a_resting_entry_sends_nothing_until_it_fills_and_its_cancel_cancels_the_bracket():
    broker = paper()
    await broker.connect()
    entry = await broker.place_order(
        OrderRequest(
            symbol="AAPL",
            side="BUY",
            quantity=5,
            order_type="LIMIT",
            limit_price=90,
            take_profit=100,
            stop_loss=80,
        )
    )
    assert entry.status is OrderStatus.ACCEPTED
    assert exits(broker, entry.client_order_id) == {}
    await broker.cancel_order(entry.broker_order_id)
    broker.set_price("AAPL", 85)
    assert exits(broker, entry.client_order_id) == {}
    assert await broker.get_open_orders() == []


async def test_an_oco_pair_rests_both_exits_and_cancelling_one_cancels_the_other():
    broker = paper(initial_positions={"AAPL": ("20", "90")})
    await broker.connect()
    pair = await broker.place_order(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=20, order_class="OCO", take_profit=120, stop_loss=90
        )
    )
    assert (pair.order_type.value, pair.limit_price) == ("LIMIT", 120)
    stop = exits(broker, pair.client_order_id)[STOP_LOSS_SUFFIX]
    assert stop.is_working and stop.stop_price == 90
    await broker.cancel_order(stop.broker_order_id)
    assert await broker.get_open_orders() == []


async def test_an_oto_sends_its_one_exit():
    broker = paper()
    await broker.connect()
    entry = await broker.place_order(OrderRequest(symbol="AAPL", side="SELL", quantity=3, stop_loss=105))
    legs = exits(broker, entry.client_order_id)
    assert list(legs) == [STOP_LOSS_SUFFIX]
    assert (legs[STOP_LOSS_SUFFIX].side, legs[STOP_LOSS_SUFFIX].stop_price) == (Side.BUY, 105)


async def test_cancel_all_takes_every_leg():
    broker = paper()
    await broker.connect()
    entry = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, take_profit=120, stop_loss=80)
    )
    assert len(await broker.get_open_orders()) == 2
    await broker.cancel_all_orders()
    assert await broker.get_open_orders() == []
    assert all(leg.status is OrderStatus.CANCELLED for leg in exits(broker, entry.client_order_id).values())


prices = st.lists(st.integers(min_value=50, max_value=150), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=prices,
    quantity=st.integers(min_value=1, max_value=40),
    liquidity=st.sampled_from([None, 3, 7]),
    limit=st.sampled_from([None, 95, 100, 104]),
)
async def test_at_most_one_exit_fills_and_exits_never_exceed_the_entry(path, quantity, liquidity, limit):
    broker = paper(liquidity_per_tick=liquidity)
    await broker.connect()
    typed = {} if limit is None else {"order_type": "LIMIT", "limit_price": limit}
    entry = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=quantity, take_profit=110, stop_loss=90, **typed)
    )
    for price in path:
        broker.set_price("AAPL", price)
    venue = broker._venue
    entry = venue.order_by_client(entry.client_order_id)
    legs = exits(broker, entry.client_order_id).values()
    filled_legs = [leg for leg in legs if leg.filled_quantity > 0]
    assert len(filled_legs) <= 1
    assert sum((leg.filled_quantity for leg in legs), D(0)) <= entry.filled_quantity
    assert all(leg.quantity <= entry.filled_quantity for leg in legs)
    if legs:
        assert entry.status is OrderStatus.FILLED or entry.is_terminal


@settings(max_examples=40, deadline=None)
@given(path=prices, cancel_at=st.integers(min_value=0, max_value=30))
async def test_a_cancelled_entry_never_has_exits(path, cancel_at):
    broker = paper(liquidity_per_tick=2)
    await broker.connect()
    entry = await broker.place_order(
        OrderRequest(
            symbol="AAPL",
            side="BUY",
            quantity=9,
            order_type="LIMIT",
            limit_price=98,
            take_profit=110,
            stop_loss=90,
        )
    )
    cut = min(cancel_at, len(path))
    for price in path[:cut]:
        broker.set_price("AAPL", price)
    cancelled = broker._venue.order_by_client(entry.client_order_id).is_working
    await broker.cancel_order(entry.broker_order_id)
    for price in [*path[cut:], 95, 80, 120]:
        broker.set_price("AAPL", price)
    if cancelled:
        # Whatever part filled before the cancel: no exit was ever sent.
        assert exits(broker, entry.client_order_id) == {}
    else:
        assert broker._venue.order_by_client(entry.client_order_id).status is OrderStatus.FILLED


@settings(max_examples=40, deadline=None)
@given(path=prices)
async def test_an_oco_pair_never_fills_both(path):
    broker = paper(initial_positions={"AAPL": ("10", "100")}, liquidity_per_tick=4)
    await broker.connect()
    pair = await broker.place_order(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=10, order_class="OCO", take_profit=108, stop_loss=92
        )
    )
    for price in path:
        broker.set_price("AAPL", price)
    first = broker._venue.order_by_client(pair.client_order_id)
    stop = exits(broker, pair.client_order_id)[STOP_LOSS_SUFFIX]
    assert not (first.filled_quantity > 0 and stop.filled_quantity > 0)
    assert first.filled_quantity + stop.filled_quantity <= 10
