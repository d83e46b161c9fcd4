"""The fast paths of the order path behave exactly as the general ones they stand in for."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.journal import request_json
from brokers.manager import MultiBrokerManager
from brokers.models import Fill, Order, OrderRequest, OrderStatus, OrderType, Side, utcnow
from brokers.sim import SimBroker

D = Decimal


def fill(fill_id: str, quantity: str = "1", price: str = "10") -> Fill:
    return Fill(fill_id=fill_id, account="a", symbol="AAPL", side="BUY", quantity=quantity, price=price)


def test_an_order_for_a_request_equals_the_validated_one():
    request = OrderRequest(symbol="AAPL", side="BUY", quantity=3, account="a")
    now = utcnow()
    fast = Order.for_request(request, broker_order_id="B1", at=now)
    slow = Order(request=request, broker_order_id="B1", created_at=now, updated_at=now)
    assert fast == slow
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    with pytest.raises(TypeError):
        Order.for_request({"symbol": "AAPL"})  # type: ignore[arg-type]


def test_a_change_to_one_order_never_leaks_into_another():
    request = OrderRequest(symbol="AAPL", side="BUY", quantity=3)
    a, b = Order.for_request(request, "a"), Order.for_request(request, "b")
    a.reject("X", "why")
    assert a.reject_code == "X" and b.reject_code is None
    copy = dataclasses.replace(a, broker_order_id="Z")
    assert copy.broker_order_id == "Z" and a.broker_order_id is None
    b.filled_quantity = D(1)
    assert b.filled_quantity == 1 and a.filled_quantity == 0


@pytest.mark.parametrize("count", [1, 7, 8, 9, 40])
def test_fills_stay_idempotent_however_many_there_are(count):
    order = Order.for_request(OrderRequest(symbol="AAPL", side="BUY", quantity=1000), "a")
    fills = [fill(f"F{i}", "1", str(10 + i)) for i in range(count)]
    assert all(order.apply_fill(f) for f in fills)
    assert not any(order.apply_fill(f) for f in fills)
    assert order.filled_quantity == count and len(order.fills) == count
    assert all(order.has_fill(f.fill_id) for f in fills) and not order.has_fill("other")
    again = dataclasses.replace(order, fills=list(order.fills))
    assert again == order and not again.apply_fill(fills[-1])


def test_a_snapshot_is_independent_and_equal():
    order = Order.for_request(OrderRequest(symbol="AAPL", side="BUY", quantity=5), "a")
    order.apply_fill(fill("F1"))
    copy = order.snapshot()
    assert copy == order and copy is not order and copy.fills is not order.fills
    assert copy.apply_fill(fill("F2")) and not order.has_fill("F2")
    assert order.filled_quantity == 1 and copy.filled_quantity == 2
    assert not copy.apply_fill(fill("F1"))


def test_a_venue_fill_equals_one_from_text_and_still_refuses_nonsense():
    now = utcnow()
    fast = Fill(
        fill_id="F",
        account="a",
        symbol="AAPL",
        side=Side.BUY,
        quantity=D(1),
        price=D(10),
        commission=D(0),
        currency="USD",
        broker_order_id="B",
        client_order_id="C",
        timestamp=now,
    )
    slow = Fill(
        fill_id="F",
        account="a",
        symbol="AAPL",
        side="BUY",
        quantity=1,
        price=10,
        broker_order_id="B",
        client_order_id="C",
        timestamp=now,
    )
    assert fast == slow and fast.model_dump() == slow.model_dump()
    with pytest.raises(ValueError):
        Fill(
            fill_id="F", account="a", symbol="AAPL", side=Side.BUY, quantity=D(0), price=D(10), timestamp=now
        )


amounts = st.decimals(min_value=D("0.00000001"), max_value=D(10**9), places=8).filter(lambda d: d > 0)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(OrderType)),
    quantity=amounts,
    price=amounts,
    percent=st.integers(1, 99),
    account=st.one_of(st.none(), st.from_regex(r"[abXY09][abXY09_.-]{0,7}", fullmatch=True)),
    currency=st.sampled_from([None, "usd"]),
    exchange=st.sampled_from([None, "nyse"]),
)
def test_the_hand_written_intent_is_pydantics_json(
    kind, quantity, price, percent, account, currency, exchange
):
    fields = {
        "symbol": "brk.b",
        "side": "sell",
        "quantity": quantity,
        "order_type": kind,
        "account": account,
        "currency": currency,
        "exchange": exchange,
    }
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        fields["limit_price"] = price
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        fields["stop_price"] = price
    if kind is OrderType.TRAILING_STOP:
        fields["trail_percent"] = percent
    request = OrderRequest(**fields)
    assert request_json(request) == request.model_dump_json(exclude_none=True)
    assert OrderRequest.model_validate(json.loads(request_json(request))) == request


async def test_a_market_order_fills_at_once_exactly_as_on_the_book():
    quick = SimBroker("s", prices={"AAPL": 100}, commission_per_share="0.01", commission_min=1)
    booked = SimBroker(
        "s", prices={"AAPL": 100}, commission_per_share="0.01", commission_min=1, liquidity_per_tick=10**6
    )  # takes the general path
    for broker in (quick, booked):
        await broker.connect()
    request = OrderRequest(symbol="AAPL", side="BUY", quantity=3, client_order_id="SAME")
    a, b = await quick.place_order(request), await booked.place_order(request)
    assert a.status is b.status is OrderStatus.FILLED
    assert (a.filled_quantity, a.avg_fill_price, a.fills[0].commission) == (
        b.filled_quantity,
        b.avg_fill_price,
        b.fills[0].commission,
    )
    assert (await quick.get_balance()).cash == (await booked.get_balance()).cash


async def test_manager_events_keep_their_order_and_reach_listeners_and_queues():
    manager = MultiBrokerManager(heartbeat_interval=3600)
    broker = SimBroker("s", prices={"AAPL": 100})
    manager.add_broker("s", broker, default=True)
    await manager.connect_all()
    heard: list = []
    manager.add_listener(heard.append)
    queue = manager.subscribe()
    await manager.start()
    try:
        for _ in range(3):
            await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
        await asyncio.sleep(0)
        queued = [queue.get_nowait() for _ in range(queue.qsize())]
        kinds = [
            type(getattr(e, "order", None) or getattr(e, "fill", None)).__name__
            for e in heard
            if hasattr(e, "order") or hasattr(e, "fill")
        ]
        assert kinds == ["Order", "Fill", "Order"] * 3
        assert [id(e) for e in queued if hasattr(e, "order") or hasattr(e, "fill")] == [
            id(e) for e in heard if hasattr(e, "order") or hasattr(e, "fill")
        ]
        manager.remove_listener(heard.append)
    finally:
        await manager.stop()
        await manager.disconnect_all()
