"""Brackets, OTO and OCO at IB through the real client library (ib_async) against the TWS peer:
the entry as parent and the exits as its children (``parentId``) in one OCA group, every order
but the last sent with ``transmit`` off; TWS holds the group until the last arrives, activates
the children when the parent fills, and cancels the rest of the group on a fill."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    ibkr_fixture,
    tws_peer_fixture,
)
from support import running, until

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
            "quantity": 100,
            "order_type": "LIMIT",
            "limit_price": "140",
            "take_profit": "160",
            "stop_loss": "130.5",
            **fields,
        }
    )


async def test_a_bracket_is_a_parent_and_two_children_in_one_oca_group(tws_peer, ibkr):
    assert ibkr.capabilities.bracket_orders
    order = await ibkr.place_order(bracket())
    sent = tws_peer.placed[-3:]
    parent, take_profit, stop_loss = sent
    assert parent["order_ref"] == order.client_order_id
    assert (parent["transmit"], parent["parent_id"]) == ("0", "0")
    assert take_profit["order_ref"] == order.client_order_id + TAKE_PROFIT_SUFFIX
    assert (take_profit["action"], take_profit["order_type"], D(take_profit["lmt_price"])) == (
        "SELL",
        "LMT",
        160,
    )
    assert (stop_loss["action"], stop_loss["order_type"], D(stop_loss["aux_price"])) == (
        "SELL",
        "STP",
        D("130.5"),
    )
    for child, transmit in ((take_profit, "0"), (stop_loss, "1")):
        assert child["parent_id"] == parent["order_id"] == order.broker_order_id
        assert child["transmit"] == transmit
    assert take_profit["oca_group"] == stop_loss["oca_group"] != ""
    assert tws_peer.untransmitted == []


async def test_an_oco_pair_is_two_transmitted_orders_in_one_group(tws_peer, ibkr):
    await ibkr.place_order(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=10, order_class="OCO", take_profit=160, stop_loss=130
        )
    )
    first, second = tws_peer.placed[-2:]
    assert first["oca_group"] == second["oca_group"] != ""
    assert (first["transmit"], second["transmit"]) == ("1", "1")
    assert (first["parent_id"], second["parent_id"]) == ("0", "0")
    assert (first["order_type"], second["order_type"]) == ("LMT", "STP")


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


async def test_the_children_work_once_the_parent_fills_and_one_fill_cancels_the_other(service, tws_peer):
    order = await service.submit(bracket())
    assert order.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED), order.reject_reason
    coid = order.client_order_id
    tp_id, sl_id = coid + TAKE_PROFIT_SUFFIX, coid + STOP_LOSS_SUFFIX
    await until(lambda: {tp_id, sl_id} <= set(service.tracker.orders))
    tws_peer.set_price("AAPL", "139")  # the entry fills; the take-profit at 160 does not
    await until(lambda: order.status is OrderStatus.FILLED)
    assert tws_peer.order(tp_id).status == "Submitted"
    tws_peer.set_price("AAPL", "161")
    tp, sl = service.tracker.get(tp_id), service.tracker.get(sl_id)
    await until(lambda: tp.status is OrderStatus.FILLED and sl.status is OrderStatus.CANCELLED)
    assert tws_peer.order(sl_id).status == "Cancelled"
    assert service.journal.orders()[sl_id].status is OrderStatus.CANCELLED


async def test_a_halt_cancels_the_parent_and_its_children(service, tws_peer):
    order = await service.submit(bracket())
    await until(lambda: order.client_order_id + STOP_LOSS_SUFFIX in service.tracker.orders)
    await service.halt("test", "test")
    await until(lambda: all(o.status == "Cancelled" for o in tws_peer.orders))
    await until(lambda: not service.working_orders())
    refused = await service.submit(bracket())
    assert refused.reject_code == RejectCode.SYSTEM_HALTED
