"""Fault injection: each fault behaves like the real failure it stands for."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import pytest

from brokers.errors import BrokerConnectionError, BrokerTimeoutError, OrderRejectedError
from brokers.models import Fill, Order, OrderRequest, OrderStatus
from brokers.sim import SimBroker, SimFaults

D = Decimal


def buy(quantity=10, symbol="AAPL", **kwargs) -> OrderRequest:
    return OrderRequest(symbol=symbol, side="BUY", quantity=quantity, **kwargs)


async def connected(faults: SimFaults | None = None, **kwargs) -> SimBroker:
    """A connected broker; ``faults`` are armed after connecting, so connect() is not their
    first victim (a fault with no method filter hits the very next call of any kind)."""
    broker = SimBroker(prices={"AAPL": 200}, **kwargs)
    await broker.connect()
    if faults is not None:
        broker.faults = faults
    return broker


def drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_fail_the_next_connects():
    broker = SimBroker(faults=SimFaults(fail_connects=2))
    for _ in range(2):
        with pytest.raises(BrokerConnectionError) as failed:
            await broker.connect()
        assert failed.value.retryable
        assert not broker.is_connected()
    await broker.connect()
    assert broker.is_connected()


async def test_disconnect_after_n_calls_until_reconnected():
    broker = await connected(faults=SimFaults(disconnect_after=2))
    await broker.get_balance()
    await broker.get_positions()
    assert broker.is_connected()
    with pytest.raises(BrokerConnectionError):
        await broker.get_balance()
    assert not broker.is_connected()
    with pytest.raises(BrokerConnectionError):
        await broker.place_order(buy())
    await broker.connect()
    assert (await broker.place_order(buy())).status is OrderStatus.FILLED
    await broker.get_balance()  # the fault fired once; the connection stays up
    assert broker.is_connected()


async def test_resting_orders_keep_working_while_disconnected_and_events_are_not_delivered():
    broker = await connected()
    queue = broker.subscribe()
    order = await broker.place_order(buy(order_type="LIMIT", limit_price=190))
    drain(queue)
    broker.faults.disconnect_after = 0
    with pytest.raises(BrokerConnectionError):
        await broker.get_open_orders()
    broker.set_price("AAPL", 190)
    assert drain(queue) == []  # the stream was down
    await broker.connect()
    assert (await broker.get_order(order.broker_order_id)).status is OrderStatus.FILLED


async def test_timeout_before_the_order_reached_the_broker():
    broker = await connected(faults=SimFaults(timeout_next=1, timeout_methods={"place_order"}))
    request = buy(client_order_id="LOST-BEFORE")
    with pytest.raises(BrokerTimeoutError) as lost:
        await broker.place_order(request)
    assert lost.value.retryable
    assert await broker.get_order_by_client_id("LOST-BEFORE") is None
    assert await broker.get_positions() == []
    assert (await broker.place_order(request)).status is OrderStatus.FILLED  # the fault was one call


async def test_timeout_after_accept_leaves_an_order_to_reconcile():
    broker = await connected(faults=SimFaults(timeout_next=1, timeout_after_accept=True))
    queue = broker.subscribe()
    with pytest.raises(BrokerTimeoutError):
        await broker.place_order(buy(client_order_id="LOST-AFTER"))
    found = await broker.get_order_by_client_id("LOST-AFTER")
    assert found is not None and found.status is OrderStatus.FILLED
    assert found.filled_quantity == D(10)
    assert (await broker.get_positions())[0].quantity == D(10)
    events = drain(queue)
    assert [e.status for e in events if isinstance(e, Order)] == [OrderStatus.ACCEPTED, OrderStatus.FILLED]


async def test_a_refusal_whose_answer_is_lost_is_still_a_timeout():
    broker = await connected(faults=SimFaults(timeout_next=1, timeout_after_accept=True))
    with pytest.raises(BrokerTimeoutError):
        await broker.place_order(buy(symbol="NOPE", client_order_id="NEVER-BOOKED"))
    assert await broker.get_order_by_client_id("NEVER-BOOKED") is None


async def test_timeout_after_accept_on_cancel_still_cancels():
    broker = await connected()
    order = await broker.place_order(buy(order_type="LIMIT", limit_price=100))
    broker.faults = SimFaults(timeout_next=1, timeout_after_accept=True, timeout_methods={"cancel_order"})
    with pytest.raises(BrokerTimeoutError):
        await broker.cancel_order(order.broker_order_id)
    assert (await broker.get_order(order.broker_order_id)).status is OrderStatus.CANCELLED


async def test_timeouts_can_target_one_method():
    broker = await connected(faults=SimFaults(timeout_next=math.inf, timeout_methods={"get_balance"}))
    for _ in range(3):
        with pytest.raises(BrokerTimeoutError):
            await broker.get_balance()
    assert await broker.get_positions() == []
    assert (await broker.place_order(buy())).status is OrderStatus.FILLED
    broker.faults.clear()
    assert (await broker.get_balance()).cash == D(98_000)


async def test_connect_can_time_out():
    broker = SimBroker(faults=SimFaults(timeout_next=1, timeout_methods={"connect"}))
    with pytest.raises(BrokerTimeoutError):
        await broker.connect()
    assert not broker.is_connected()
    await broker.connect()
    assert broker.is_connected()


async def test_hang_on_one_method_trips_the_callers_timeout():
    broker = await connected(
        faults=SimFaults(hang_next=1, hang_seconds=math.inf, hang_methods={"get_positions"})
    )
    assert (await asyncio.wait_for(broker.get_balance(), 1)).cash == D(100_000)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(broker.get_positions(), 0.05)
    assert await asyncio.wait_for(broker.get_positions(), 1) == []


async def test_a_finite_hang_answers_late():
    broker = await connected(faults=SimFaults(hang_next=1, hang_seconds=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await broker.get_margin()
    assert loop.time() - started >= 0.05
    started = loop.time()
    await broker.get_margin()
    assert loop.time() - started < 0.05


async def test_an_order_hanging_when_the_caller_gives_up_was_never_placed():
    broker = await connected(faults=SimFaults(hang_next=1, hang_seconds=math.inf))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(broker.place_order(buy(client_order_id="HUNG")), 0.05)
    assert await broker.get_order_by_client_id("HUNG") is None


async def test_latency_is_awaited_on_every_call():
    broker = SimBroker(prices={"AAPL": 200}, latency=0.03)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await broker.connect()
    await broker.place_order(buy())
    await broker.get_balance()
    assert loop.time() - started >= 0.09


async def test_zero_latency_never_yields_to_the_event_loop():
    broker = await connected()
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count())
    await asyncio.sleep(0)
    before = ticks
    for _ in range(50):
        await broker.place_order(buy(quantity=1))
        await broker.get_balance()
    assert ticks == before  # no call suspended, so the other task never ran
    counter.cancel()


async def test_reject_the_next_orders_with_a_reason():
    broker = await connected(faults=SimFaults(reject_next=2, reject_reason="venue halted"))
    for _ in range(2):
        with pytest.raises(OrderRejectedError) as refused:
            await broker.place_order(buy(client_order_id="REFUSED"))
        assert "venue halted" in str(refused.value)
        assert refused.value.code == "SIMULATED_REJECT" and refused.value.definite
    assert await broker.get_order_by_client_id("REFUSED") is None
    assert (await broker.place_order(buy(client_order_id="REFUSED"))).status is OrderStatus.FILLED


async def test_duplicate_fill_events_are_harmless_to_an_order():
    broker = await connected(faults=SimFaults(duplicate_fills=True))
    queue = broker.subscribe()
    placed = await broker.place_order(buy())
    fills = [e for e in drain(queue) if isinstance(e, Fill)]
    assert len(fills) == 2 and fills[0].fill_id == fills[1].fill_id
    mirror = Order(request=placed.request, broker_order_id=placed.broker_order_id)
    for fill in fills:
        mirror.apply_fill(fill)
    assert mirror.filled_quantity == D(10)


async def test_out_of_order_fill_events():
    broker = await connected(liquidity_per_tick=4, faults=SimFaults(out_of_order_fills=True))
    queue = broker.subscribe()
    first = await broker.place_order(buy(order_type="LIMIT", limit_price=190))
    second = await broker.place_order(buy(order_type="LIMIT", limit_price=190))
    drain(queue)
    broker.set_price("AAPL", 190)  # one update fills 4 of each order
    events = drain(queue)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Order", "Order", "Fill", "Fill"]  # order updates before the fills they count
    assert [e.filled_quantity for e in events[:2]] == [D(4), D(4)]
    assert [e.broker_order_id for e in events[2:]] == [second.broker_order_id, first.broker_order_id]
    # A consumer applying fills as they come still ends up with the right totals.
    mirror = Order(request=first.request, broker_order_id=first.broker_order_id)
    broker.set_price("AAPL", 189)
    broker.set_price("AAPL", 189)
    for fill in [e for e in drain(queue) + events if isinstance(e, Fill)]:
        if fill.broker_order_id == first.broker_order_id:
            mirror.apply_fill(fill)
    assert (mirror.filled_quantity, mirror.status) == (D(10), OrderStatus.FILLED)
    assert mirror.avg_fill_price == D(190)


async def test_faults_from_a_mapping_and_refused_names():
    faults = SimFaults.from_mapping({"fail_connects": 1, "hang_methods": ["get_positions"]})
    assert faults.hang_methods == frozenset({"get_positions"})
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        SimFaults.from_mapping({"explode": True})
    with pytest.raises(ValueError, match="unknown method 'get_everything'"):
        SimFaults(timeout_methods={"get_everything"})
    with pytest.raises(ValueError, match="reject_next"):
        SimFaults(reject_next=-1)
