"""Changing a working order at IB: placeOrder again with the same orderId, through the real client
library against the TWS peer, which modifies the order in place as TWS does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    PLACE_ORDER,
    ibkr_fixture,
    next_event,
    tws_peer_fixture,
)
from support import running, until

from brokers.amend import MODIFIED, MODIFY
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
            "quantity": 100,
            "order_type": "LIMIT",
            "limit_price": "140",
            **fields,
        }
    )


async def test_modify_sends_placeorder_with_the_same_order_id(tws_peer, ibkr):
    assert ibkr.capabilities.modify_orders
    updates = ibkr.subscribe()
    order = await ibkr.place_order(limit_buy())
    placed = len(tws_peer.requests(PLACE_ORDER))
    changed = await ibkr.modify_order(
        order.broker_order_id,
        limit_buy(quantity=150, limit_price="141.5", client_order_id=order.client_order_id),
    )
    assert (changed.quantity, changed.limit_price) == (150, D("141.5"))
    assert changed.broker_order_id == order.broker_order_id
    assert changed.status is OrderStatus.ACCEPTED
    # One more placeOrder on the wire, with the order's own id: TWS modified the one order.
    sent = tws_peer.requests(PLACE_ORDER)
    assert len(sent) == placed + 1
    assert tws_peer.modifications[-1]["order_id"] == order.broker_order_id
    assert D(tws_peer.modifications[-1]["quantity"]) == 150
    assert len(tws_peer.orders) == 1
    resting = tws_peer.order(order.client_order_id)
    assert (resting.quantity, resting.limit, resting.status) == (150, D("141.5"), "Submitted")
    snapshot = await next_event(updates, Order, lambda o: o.quantity == 150)
    assert snapshot.limit_price == D("141.5")


async def test_a_modified_price_that_crosses_fills(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(limit_buy())
    await ibkr.modify_order(
        order.broker_order_id, limit_buy(limit_price="151", client_order_id=order.client_order_id)
    )
    done = await next_event(
        updates,
        Order,
        lambda o: o.client_order_id == order.client_order_id and o.status is OrderStatus.FILLED,
    )
    assert done.filled_quantity == 100


@pytest.fixture
async def service(tmp_path, ibkr):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib", ibkr, default=True)
    journal = Journal(tmp_path / "journal.sqlite")
    switch = KillSwitch(tmp_path, journal=journal, env={})
    service = ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings())
    async with running(manager, service):
        yield service
    journal.close()


async def test_execution_modify_through_tws(tws_peer, service):
    order = await service.submit(limit_buy(account="ib"))
    assert order.status is OrderStatus.ACCEPTED, order.reject_reason
    result = await service.modify(order.client_order_id, quantity=D(120), limit_price=D("139.25"))
    assert result is order
    assert (order.quantity, order.limit_price, order.status) == (120, D("139.25"), OrderStatus.ACCEPTED)
    assert [o.order_id for o in tws_peer.orders if o.working] == [int(order.broker_order_id)]
    kinds = [e.kind for e in service.journal.events(order=order.client_order_id)]
    # The change asked for is written before TWS is asked; TWS's openOrder with the new terms
    # may be taken in before the answer is.
    assert MODIFY in kinds and kinds.index(MODIFY) < kinds.index(MODIFIED)
    await until(lambda: service.journal.orders()[order.client_order_id].quantity == 120)


async def test_execution_modify_refused_while_halted_sends_nothing(tws_peer, service):
    service.halt_settings = HaltSettings(cancel_open_orders=False)
    order = await service.submit(limit_buy(account="ib"))
    service.kill_switch.halt("test", "test")
    report = await service.modify(order.client_order_id, quantity=D(1))
    assert report.reject_code == RejectCode.SYSTEM_HALTED
    assert tws_peer.modifications == []
    assert tws_peer.order(order.client_order_id).quantity == 100
