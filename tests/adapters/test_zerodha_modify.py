"""Changing a working order at Kite: modify_order (PUT /orders/{variety}/{order_id}) through the
real kiteconnect client against the Kite peer."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.kite_peer import KitePeer, kite_peer  # noqa: F401  (kite_peer is a fixture)
from support import running, until

from brokers.adapters.zerodha import ZerodhaBroker
from brokers.amend import MODIFIED, MODIFY, MODIFY_REJECT
from brokers.errors import BrokerError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus, RejectCode

D = Decimal


def limit_buy(**fields) -> OrderRequest:
    return OrderRequest(
        **{
            "symbol": "INFY",
            "side": "BUY",
            "quantity": 5,
            "order_type": "LIMIT",
            "limit_price": "1490.05",
            **fields,
        }
    )


@pytest.fixture
async def broker(kite_peer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KITE_API_KEY", kite_peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)
    adapter = ZerodhaBroker.from_config(
        {"name": "kite", "root": kite_peer.root, "poll_interval": 0.2, "timeout": 2}
    )
    await adapter.connect()
    yield adapter
    await adapter.disconnect()


async def test_modify_order_puts_the_new_terms(broker, kite_peer):  # noqa: F811
    assert broker.capabilities.modify_orders
    order = await broker.place_order(limit_buy())
    changed = await broker.modify_order(
        order.broker_order_id,
        limit_buy(quantity=8, limit_price="1491.5", client_order_id=order.client_order_id),
    )
    assert kite_peer.modify_puts[-1] == {
        "variety": "regular",
        "order_id": order.broker_order_id,
        "quantity": "8",
        "order_type": "LIMIT",
        "validity": "DAY",
        "price": "1491.5",
    }
    assert (changed.quantity, changed.limit_price, changed.status) == (8, D("1491.5"), OrderStatus.ACCEPTED)
    assert changed.broker_order_id == order.broker_order_id
    peer_order = kite_peer.orders[order.broker_order_id]
    assert (peer_order.quantity, peer_order.price, peer_order.modified) == (8, D("1491.5"), True)
    assert [o.broker_order_id for o in await broker.get_open_orders()] == [order.broker_order_id]


async def test_a_refused_change_raises_and_the_order_keeps_working(broker, kite_peer):  # noqa: F811
    order = await broker.place_order(limit_buy())
    with pytest.raises(BrokerError, match="Tick size"):
        await broker.modify_order(
            order.broker_order_id, limit_buy(limit_price="1491.01", client_order_id=order.client_order_id)
        )
    current = await broker.get_order(order.broker_order_id)
    assert (current.status, current.limit_price) == (OrderStatus.ACCEPTED, D("1490.05"))


@pytest.fixture
async def service(tmp_path, broker):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("kite", broker, default=True)
    journal = Journal(tmp_path / "journal.sqlite")
    switch = KillSwitch(tmp_path, journal=journal, env={})
    service = ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings())
    async with running(manager, service):
        yield service
    journal.close()


async def test_execution_modify_through_kite(service, kite_peer):  # noqa: F811
    order = await service.submit(limit_buy())
    assert order.status is OrderStatus.ACCEPTED, order.reject_reason
    result = await service.modify(order.client_order_id, quantity=D(7), limit_price=D("1495"))
    assert result is order and (order.quantity, order.limit_price) == (7, D("1495"))
    kinds = [e.kind for e in service.journal.events(order=order.client_order_id)]
    assert kinds.index(MODIFY) < kinds.index(MODIFIED)
    assert service.journal.orders()[order.client_order_id].quantity == 7
    kite_peer.set_price("NSE:INFY", "1494")
    await until(lambda: order.status is OrderStatus.FILLED)
    assert order.filled_quantity == 7


async def test_execution_reports_kites_refusal(service, kite_peer):  # noqa: F811
    order = await service.submit(limit_buy())
    report = await service.modify(order.client_order_id, limit_price=D("1491.01"))
    assert report.status is OrderStatus.REJECTED and report.reject_code == RejectCode.BROKER_REJECTED
    assert "Tick size" in (report.reject_reason or "")
    assert order.status is OrderStatus.ACCEPTED and order.limit_price == D("1490.05")
    assert [e.kind for e in service.journal.events(order=order.client_order_id)][-1] == MODIFY_REJECT
    assert isinstance(service.get_order(order.client_order_id), Order)
