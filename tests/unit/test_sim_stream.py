"""The update stream: order snapshots and fills, in the order they happened."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from brokers.models import Fill, Order, OrderRequest, OrderStatus
from brokers.sim import SimBroker

D = Decimal
S = OrderStatus


def drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def connected(**kwargs) -> SimBroker:
    broker = SimBroker(prices={"AAPL": 200}, **kwargs)
    await broker.connect()
    return broker


async def test_a_market_order_streams_accepted_fill_filled():
    broker = await connected()
    queue = broker.subscribe()
    placed = await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=3))
    accepted, fill, filled = drain(queue)
    assert isinstance(accepted, Order) and accepted.status is S.ACCEPTED and accepted.fills == []
    assert isinstance(fill, Fill) and (fill.quantity, fill.price) == (D(3), D(200))
    assert fill.fill_id == placed.fills[0].fill_id and fill.account == "sim"
    assert isinstance(filled, Order) and filled.status is S.FILLED and filled.filled_quantity == D(3)
    assert accepted is not filled and filled is not placed


async def test_snapshots_do_not_change_afterwards():
    broker = await connected(liquidity_per_tick=2)
    queue = broker.subscribe()
    await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=5))
    broker.set_price("AAPL", 201)
    broker.set_price("AAPL", 202)
    orders = [e for e in drain(queue) if isinstance(e, Order)]
    assert [(o.status, o.filled_quantity, len(o.fills)) for o in orders] == [
        (S.ACCEPTED, D(0), 0),
        (S.PARTIALLY_FILLED, D(2), 1),
        (S.PARTIALLY_FILLED, D(4), 2),
        (S.FILLED, D(5), 3),
    ]
    # A consumer applying a fill to one snapshot does not touch another.
    orders[1].apply_fill(Fill(fill_id="X", account="sim", symbol="AAPL", side="BUY", quantity=1, price=1))
    assert orders[2].filled_quantity == D(4) and len(orders[1].fills) == 2


async def test_cancel_expire_and_reject_are_streamed():
    broker = await connected(account_type="cash", initial_cash=1_000)
    queue = broker.subscribe()
    resting = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price=150)
    )
    day = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price=140)
    )
    await broker.cancel_order(resting.broker_order_id)
    broker.end_of_day()
    statuses = [(e.broker_order_id, e.status) for e in drain(queue)]
    assert statuses == [
        (resting.broker_order_id, S.ACCEPTED),
        (day.broker_order_id, S.ACCEPTED),
        (resting.broker_order_id, S.CANCELLED),
        (day.broker_order_id, S.EXPIRED),
    ]


async def test_updates_iterator_delivers_events_from_the_feed():
    broker = await connected(seed=2, volatility=0.02)
    received: list = []

    async def consume() -> None:
        async for event in broker.updates():
            received.append(event)
            if isinstance(event, Order) and event.status is S.FILLED:
                return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the consumer subscribe
    await broker.place_order(
        OrderRequest(symbol="AAPL", side="SELL", quantity=1, order_type="LIMIT", limit_price=202)
    )
    broker.start_feed(0.001)
    try:
        await asyncio.wait_for(consumer, 5)
    finally:
        await broker.disconnect()
    assert [type(e).__name__ for e in received] == ["Order", "Fill", "Order"]
    assert received[1].price == D(202)
    assert not broker._hub.queues  # the finished iterator unsubscribed


async def test_no_snapshots_are_built_without_subscribers():
    broker = await connected()
    await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    queue = broker.subscribe()
    assert drain(queue) == []  # nothing buffered from before the subscription
    broker.unsubscribe(queue)
    await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    assert drain(queue) == []


async def test_reset_account_reports_working_orders_cancelled():
    broker = await connected()
    resting = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price=150)
    )
    queue = broker.subscribe()
    broker.reset_account()
    (event,) = drain(queue)
    assert (event.broker_order_id, event.status) == (resting.broker_order_id, S.CANCELLED)
