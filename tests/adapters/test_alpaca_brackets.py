"""Brackets, OTO and OCO at Alpaca (``order_class`` with ``take_profit`` and ``stop_loss``)
through the real alpaca-py client against the Alpaca peer: the body Alpaca reads, the legs it
holds followed here under their parent's name, and one exit's fill cancelling the other."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from support import running, until

from brokers.errors import OrderRejectedError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, RejectCode

D = Decimal


def bracket(**fields) -> OrderRequest:
    return OrderRequest(
        **{
            "symbol": "AAPL",
            "side": "BUY",
            "quantity": 10,
            "order_type": "LIMIT",
            "limit_price": "180",
            "take_profit": "200.5",
            "stop_loss": "170.25",
            **fields,
        }
    )


async def test_a_bracket_goes_out_as_order_class_bracket(broker, peer):
    assert broker.capabilities.bracket_orders and broker.capabilities.oco_orders
    order = await broker.place_order(bracket())
    body = peer.bodies[-1]
    assert body["order_class"] == "bracket"
    assert body["take_profit"] == {"limit_price": "200.5"}
    assert body["stop_loss"] == {"stop_price": "170.25"}
    assert (body["type"], body["limit_price"], body["qty"]) == ("limit", "180", "10")
    legs = peer.legs_of(order.broker_order_id)
    assert sorted((leg["type"], leg["side"], leg["status"]) for leg in legs) == [
        ("limit", "sell", "held"),
        ("stop", "sell", "held"),
    ]


async def test_an_oco_and_an_oto_go_out_with_their_class(broker, peer):
    await broker.place_order(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=5, order_class="OCO", take_profit=210, stop_loss=175
        )
    )
    body = peer.bodies[-1]
    assert (body["order_class"], body["type"], body["limit_price"]) == ("oco", "limit", "210")
    assert (body["take_profit"], body["stop_loss"]) == ({"limit_price": "210"}, {"stop_price": "175"})
    await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=5, stop_loss=170))
    body = peer.bodies[-1]
    assert body["order_class"] == "oto" and "take_profit" not in body


async def test_alpaca_rules_for_exits_are_checked_before_sending(broker, peer):
    sent = len(peer.bodies)
    with pytest.raises(OrderRejectedError, match="DAY or GTC"):
        await broker.place_order(bracket(time_in_force="IOC"))
    with pytest.raises(OrderRejectedError, match="whole shares"):
        await broker.place_order(bracket(quantity="1.5"))
    assert len(peer.bodies) == sent


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


async def test_the_legs_are_followed_under_their_parent_and_one_fill_cancels_the_other(service, peer):
    order = await service.submit(bracket())
    assert order.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED), order.reject_reason
    coid = order.client_order_id
    tp_id, sl_id = coid + TAKE_PROFIT_SUFFIX, coid + STOP_LOSS_SUFFIX
    tracker = service.tracker
    await until(lambda: {tp_id, sl_id} <= set(tracker.orders))
    await peer.fill(order.broker_order_id, price="180")
    await until(lambda: order.status is OrderStatus.FILLED)
    tp, sl = tracker.get(tp_id), tracker.get(sl_id)
    assert (tp.limit_price, sl.stop_price, tp.quantity) == (D("200.5"), D("170.25"), 10)
    take_profit = next(leg for leg in peer.legs_of(order.broker_order_id) if leg["type"] == "limit")
    await peer.fill(take_profit["id"], price="200.5")
    await until(lambda: tp.status is OrderStatus.FILLED and sl.status is OrderStatus.CANCELLED)
    journaled = service.journal.orders()
    assert journaled[tp_id].status is OrderStatus.FILLED
    assert journaled[sl_id].status is OrderStatus.CANCELLED
    assert service.book.positions().get(("alpaca", "AAPL"), D(0)) == 0


async def test_a_halt_cancels_the_entry_and_its_legs(service, peer):
    order = await service.submit(bracket())
    await until(lambda: order.client_order_id + STOP_LOSS_SUFFIX in service.tracker.orders)
    await service.halt("test", "test")
    await until(lambda: all(o["status"] == "canceled" for o in peer.orders.values()))
    await until(lambda: not service.working_orders())
    refused = await service.submit(bracket())
    assert refused.reject_code == RejectCode.SYSTEM_HALTED


async def test_after_a_restart_a_leg_is_found_by_its_name_through_its_parent(broker, peer):
    from brokers.adapters.alpaca import AlpacaBroker
    from brokers.registry import BrokerFactory

    order = await broker.place_order(bracket())
    again = BrokerFactory.create(peer.settings())
    assert isinstance(again, AlpacaBroker)
    await again.connect()
    try:
        stop = await again.get_order_by_client_id(order.client_order_id + STOP_LOSS_SUFFIX)
        assert stop is not None
        assert (stop.stop_price, stop.quantity, stop.is_working) == (D("170.25"), 10, True)
        assert await again.get_order_by_client_id("NOPE" + STOP_LOSS_SUFFIX) is None
    finally:
        await again.disconnect()
