"""Changing a working order at Alpaca: the replace (PATCH /v2/orders/{id}) through the real
alpaca-py client against the Alpaca peer. Alpaca answers with a new order that ``replaces`` the
old one; here it stays one order, under its own client order id, with the new terms."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
    next_event,
)
from support import running, until

from brokers.amend import MODIFIED, MODIFY
from brokers.errors import OrderRejectedError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus, RejectCode

D = Decimal


def limit_buy(**fields) -> OrderRequest:
    return OrderRequest(
        **{
            "symbol": "AAPL",
            "side": "BUY",
            "quantity": 10,
            "order_type": "LIMIT",
            "limit_price": "180",
            **fields,
        }
    )


def working(peer) -> list[dict]:
    return [o for o in peer.orders.values() if o["status"] in ("new", "accepted", "partially_filled")]


async def test_replace_patches_and_follows_the_new_order(broker, peer):
    assert broker.capabilities.modify_orders
    order = await broker.place_order(limit_buy())
    await next_event(broker, lambda e: isinstance(e, Order) and e.status is OrderStatus.ACCEPTED)
    changed = await broker.modify_order(
        order.broker_order_id,
        limit_buy(quantity=12, limit_price="181.25", client_order_id=order.client_order_id),
    )
    body = peer.bodies[-1]
    assert {k: body[k] for k in ("qty", "limit_price", "time_in_force")} == {
        "qty": "12",
        "limit_price": "181.25",
        "time_in_force": "day",
    }
    assert body["client_order_id"] != order.client_order_id  # Alpaca's client ids are unique
    old = peer.orders[order.broker_order_id]
    assert old["status"] == "replaced" and old["replaced_by"] == changed.broker_order_id
    # Ours: the same order, Alpaca's new id, the new terms; never cancelled on the way.
    assert changed.client_order_id == order.client_order_id
    assert changed.broker_order_id != order.broker_order_id
    assert (changed.quantity, changed.limit_price) == (12, D("181.25"))
    assert changed.status is OrderStatus.ACCEPTED
    assert [o["id"] for o in working(peer)] == [changed.broker_order_id]
    open_orders = await broker.get_open_orders()
    assert [(o.client_order_id, o.broker_order_id) for o in open_orders] == [
        (order.client_order_id, changed.broker_order_id)
    ]


async def test_the_replacement_fills_as_the_same_order(broker, peer):
    order = await broker.place_order(limit_buy())
    changed = await broker.modify_order(
        order.broker_order_id, limit_buy(limit_price="185", client_order_id=order.client_order_id)
    )
    await peer.fill(changed.broker_order_id)
    done = await next_event(
        broker,
        lambda e: (
            isinstance(e, Order)
            and e.client_order_id == order.client_order_id
            and e.status is OrderStatus.FILLED
        ),
    )
    assert done.filled_quantity == 10 and done.avg_fill_price == 185


async def test_a_partly_filled_order_is_not_replaced(broker, peer):
    order = await broker.place_order(limit_buy())
    await peer.fill(order.broker_order_id, qty="4")
    await next_event(broker, lambda e: isinstance(e, Order) and e.filled_quantity == 4)
    with pytest.raises(OrderRejectedError, match="partly filled"):
        await broker.modify_order(
            order.broker_order_id, limit_buy(quantity=12, client_order_id=order.client_order_id)
        )
    assert peer.count("PATCH", f"/v2/orders/{order.broker_order_id}") == 0


@pytest.fixture
async def service(tmp_path, broker):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("alpaca", broker, default=True)
    journal = Journal(tmp_path / "journal.sqlite")
    switch = KillSwitch(tmp_path, journal=journal, env={})
    service = ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings())
    async with running(manager, service):
        yield service
    journal.close()


async def test_execution_modify_through_alpaca(service, peer):
    order = await service.submit(limit_buy())
    assert order.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED), order.reject_reason
    first_id = order.broker_order_id
    result = await service.modify(order.client_order_id, quantity=D(15), limit_price=D("179.5"))
    assert result is order, result.reject_reason
    assert (order.quantity, order.limit_price) == (15, D("179.5"))
    assert order.broker_order_id != first_id and order.is_working
    assert [o["id"] for o in working(peer)] == [order.broker_order_id]
    await until(lambda: service.working_orders() == [order])
    kinds = [e.kind for e in service.journal.events(order=order.client_order_id)]
    assert kinds.index(MODIFY) < kinds.index(MODIFIED)
    replayed = service.journal.orders()[order.client_order_id]
    assert (replayed.quantity, replayed.broker_order_id) == (15, order.broker_order_id)
    # The old order's "replaced" never ends ours.
    await peer.fill(order.broker_order_id)
    await until(lambda: order.status is OrderStatus.FILLED)
    assert order.filled_quantity == 15


async def test_execution_modify_refused_while_halted(service, peer):
    service.halt_settings = HaltSettings(cancel_open_orders=False)
    order = await service.submit(limit_buy())
    service.kill_switch.halt("test", "test")
    report = await service.modify(order.client_order_id, quantity=D(11))
    assert report.reject_code == RejectCode.SYSTEM_HALTED
    assert peer.count("PATCH", f"/v2/orders/{order.broker_order_id}") == 0
