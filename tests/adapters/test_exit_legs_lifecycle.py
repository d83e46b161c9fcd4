"""A bracket's exits after it is placed, through the real client libraries against the peers:
a take-profit or stop-loss price changed with ``ExecutionService.modify`` on the leg's own id
(Alpaca's PATCH replace of that leg, IB's placeOrder with the leg's orderId, still in its OCA
group), and an IB restart with working legs: a new service on the same journal finds them,
knows their parent, and a halt cancels every one on the wire."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    REQ_GLOBAL_CANCEL,
    tws_peer_fixture,
)
from support import running, until

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX, leg_parent_id
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus

D = Decimal
TP, SL = TAKE_PROFIT_SUFFIX, STOP_LOSS_SUFFIX


def service_for(root, name, broker) -> tuple[MultiBrokerManager, ExecutionService, Journal]:
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker(name, broker, default=True)
    journal = Journal(root / "journal.sqlite")
    switch = KillSwitch(root, journal=journal, env={})
    return manager, ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings()), journal


# -- Alpaca ---------------------------------------------------------------------------------------


def alpaca_bracket() -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="BUY",
        quantity=10,
        order_type="LIMIT",
        limit_price="180",
        take_profit="200.5",
        stop_loss="170.25",
    )


@pytest.fixture
async def alpaca_service(tmp_path, broker):
    manager, service, journal = service_for(tmp_path, "alpaca", broker)
    async with running(manager, service):
        yield service
    journal.close()


async def test_alpaca_a_legs_prices_are_changed_by_replacing_that_leg(alpaca_service, peer):
    service = alpaca_service
    order = await service.submit(alpaca_bracket())
    coid = order.client_order_id
    tracker = service.tracker
    await until(lambda: {coid + TP, coid + SL} <= set(tracker.orders))
    await peer.fill(order.broker_order_id, price="180")
    take_profit, stop_loss = tracker.get(coid + TP), tracker.get(coid + SL)
    await until(
        lambda: take_profit.status is OrderStatus.ACCEPTED and stop_loss.status is OrderStatus.ACCEPTED
    )
    old_stop_id = stop_loss.broker_order_id

    changed = await service.modify(coid + SL, stop_price=D("172.5"))
    assert changed.status is not OrderStatus.REJECTED, changed.reject_reason
    # On the wire: a PATCH of the stop-loss leg itself, with its new stop price only.
    assert ("PATCH", f"/v2/orders/{old_stop_id}") in peer.requests
    assert peer.bodies[-1]["stop_price"] == "172.5"
    assert "limit_price" not in peer.bodies[-1] or peer.bodies[-1]["limit_price"] is None
    old = peer.orders[old_stop_id]
    assert old["status"] == "replaced"
    replacement = peer.orders[old["replaced_by"]]
    assert (replacement["type"], replacement["stop_price"], replacement["qty"]) == ("stop", "172.5", "10")
    # Ours: the same leg under its own name, Alpaca's new id, the new price, still working.
    await until(lambda: stop_loss.broker_order_id == replacement["id"])
    assert stop_loss.stop_price == D("172.5") and stop_loss.is_working
    assert leg_parent_id(stop_loss.client_order_id) == coid

    old_take_id = take_profit.broker_order_id
    changed = await service.modify(coid + TP, limit_price=D("201.25"))
    assert changed.status is not OrderStatus.REJECTED, changed.reject_reason
    assert ("PATCH", f"/v2/orders/{old_take_id}") in peer.requests
    assert peer.bodies[-1]["limit_price"] == "201.25"
    await until(lambda: take_profit.limit_price == D("201.25") and take_profit.broker_order_id != old_take_id)
    assert {o.client_order_id for o in service.working_orders()} == {coid + TP, coid + SL}
    # The changed legs are still one pair: the take-profit's fill cancels the changed stop.
    await peer.fill(take_profit.broker_order_id, price="201.25")
    await until(
        lambda: take_profit.status is OrderStatus.FILLED and stop_loss.status is OrderStatus.CANCELLED
    )
    assert peer.orders[stop_loss.broker_order_id]["status"] == "canceled"
    assert service.journal.orders()[coid + SL].status is OrderStatus.CANCELLED


# -- Interactive Brokers --------------------------------------------------------------------------


def ib_bracket() -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="BUY",
        quantity=100,
        order_type="LIMIT",
        limit_price="140",
        take_profit="160",
        stop_loss="130.5",
    )


async def ib_broker(tws_peer, client_id: int = 1):
    from brokers.adapters.ibkr import IBKRBroker

    broker = IBKRBroker("ib", port=tws_peer.port, timeout=2.0, client_id=client_id)
    broker.commission_grace = 0.3
    await broker.connect()
    return broker


async def test_ib_a_legs_prices_are_changed_with_its_own_order_id_in_its_group(tmp_path, tws_peer):
    broker = await ib_broker(tws_peer)
    manager, service, journal = service_for(tmp_path, "ib", broker)
    try:
        async with running(manager, service):
            order = await service.submit(ib_bracket())
            coid = order.client_order_id
            await until(lambda: {coid + TP, coid + SL} <= set(service.tracker.orders))
            placed = {sent["order_ref"]: sent for sent in tws_peer.placed}
            group = placed[coid + SL]["oca_group"]
            assert group and placed[coid + TP]["oca_group"] == group
            tws_peer.set_price("AAPL", "139")  # the entry fills; the children work
            await until(lambda: order.status is OrderStatus.FILLED)
            stop_loss = service.tracker.get(coid + SL)

            changed = await service.modify(coid + SL, stop_price=D("131"))
            assert changed.status is not OrderStatus.REJECTED, changed.reject_reason
            sent = tws_peer.modifications[-1]
            assert sent["order_id"] == stop_loss.broker_order_id == placed[coid + SL]["order_id"]
            assert (sent["order_type"], D(sent["aux_price"]), D(sent["quantity"])) == ("STP", 131, 100)
            assert sent["order_ref"] == coid + SL
            # Still in its OCA group: a modification that left it out would take the stop out of
            # the pair, and a take-profit fill would leave it working.
            assert sent["oca_group"] == group
            assert tws_peer.order(coid + SL).aux == 131
            await until(lambda: stop_loss.stop_price == 131)

            take_profit = service.tracker.get(coid + TP)
            changed = await service.modify(coid + TP, limit_price=D("159"))
            assert changed.status is not OrderStatus.REJECTED, changed.reject_reason
            sent = tws_peer.modifications[-1]
            assert sent["order_id"] == take_profit.broker_order_id
            assert (sent["order_type"], D(sent["lmt_price"]), sent["oca_group"]) == ("LMT", 159, group)
            # One order per leg at TWS, still: a change is never a second working order.
            working = sorted(o.order_ref for o in tws_peer.orders if o.working)
            assert working == sorted([coid + TP, coid + SL])
            # The changed take-profit fills and cancels its changed partner.
            tws_peer.set_price("AAPL", "159.5")
            await until(
                lambda: take_profit.status is OrderStatus.FILLED and stop_loss.status is OrderStatus.CANCELLED
            )
            assert tws_peer.order(coid + SL).status == "Cancelled"
    finally:
        journal.close()
        await broker.disconnect()


@pytest.mark.parametrize("entry_filled", [True, False], ids=["legs-working", "parent-working"])
async def test_ib_restart_finds_the_working_legs_and_a_halt_cancels_them_all(
    tmp_path, tws_peer, entry_filled
):
    first = await ib_broker(tws_peer)
    manager, service, journal = service_for(tmp_path, "ib", first)
    async with running(manager, service):
        order = await service.submit(ib_bracket())
        coid = order.client_order_id
        await until(lambda: {coid + TP, coid + SL} <= set(service.tracker.orders))
        if entry_filled:
            tws_peer.set_price("AAPL", "139")
            await until(lambda: order.status is OrderStatus.FILLED)
    journal.close()
    await first.disconnect()
    expected = {coid + TP, coid + SL} | (set() if entry_filled else {coid})
    assert {o.order_ref for o in tws_peer.orders if o.working} == expected

    # A new process: a new connection (the same client id, as a restarted console has), a new
    # service on the same journal.
    again = await ib_broker(tws_peer)
    manager, service, journal = service_for(tmp_path, "ib", again)
    try:
        async with running(manager, service):
            tracker = service.tracker
            await until(lambda: expected <= {o.client_order_id for o in service.working_orders()})
            take_profit, stop_loss = tracker.get(coid + TP), tracker.get(coid + SL)
            assert (take_profit.limit_price, stop_loss.stop_price) == (160, D("130.5"))
            assert take_profit.quantity == stop_loss.quantity == 100
            assert take_profit.account == stop_loss.account == "ib"
            # Grouped: each leg names its parent, whose journaled request names both exits.
            parent = journal.orders()[coid]
            assert (
                leg_parent_id(take_profit.client_order_id) == leg_parent_id(stop_loss.client_order_id) == coid
            )
            assert (parent.request.take_profit, parent.request.stop_loss) == (160, D("130.5"))
            assert parent.status is (OrderStatus.FILLED if entry_filled else OrderStatus.ACCEPTED)

            global_cancels = len(tws_peer.requests(REQ_GLOBAL_CANCEL))
            await service.halt("restart test", "test")
            await until(lambda: not any(o.working for o in tws_peer.orders))
            assert len(tws_peer.requests(REQ_GLOBAL_CANCEL)) == global_cancels + 1
            assert {o.order_ref for o in tws_peer.orders if o.status == "Cancelled"} == expected
            await until(lambda: not service.working_orders())
            for coid_ in expected:
                assert tracker.get(coid_).status is OrderStatus.CANCELLED
            await until(lambda: all(journal.orders()[c].status is OrderStatus.CANCELLED for c in expected))
    finally:
        journal.close()
        await again.disconnect()
