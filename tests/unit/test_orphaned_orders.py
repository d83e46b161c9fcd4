"""Working orders in the journal whose account is not configured here (the demo's paper
accounts sharing a journal with a real configuration, an account removed from the config):
orphaned, never counted as working at a connected account, never offered to cancel, and a
halt does not claim to have cancelled them."""

from __future__ import annotations

import pytest

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus, Side
from brokers.sim import SimBroker


def left_working(journal: Journal, account: str) -> Order:
    """An order a process with ``account`` configured sent and saw accepted."""
    request = OrderRequest(
        symbol="AAPL", side="BUY", quantity=5, order_type="LIMIT", limit_price=150, account=account
    )
    order = Order(request=request, account=account)
    journal.record_intent(order)
    order.broker_order_id = "B-1"
    order.transition(OrderStatus.ACCEPTED)
    journal.record_order("ack", order)
    return order


@pytest.fixture
async def service(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    left_working(journal, "paper")
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("us", SimBroker("us", prices={"AAPL": 200}, initial_cash=1_000_000), default=True)
    await manager.connect_all()
    await manager.start()
    service = ExecutionService(manager, KillSwitch(tmp_path, journal=journal, env={}), journal=journal)
    await service.start()
    yield service
    await service.stop()
    await manager.stop()
    await manager.disconnect_all()
    journal.close()


async def test_an_order_of_an_account_not_configured_is_orphaned(service):
    [orphan] = service.orphaned_orders()
    assert orphan.account == "paper" and orphan.status is OrderStatus.ACCEPTED
    assert service.get_order(orphan.client_order_id) is orphan
    note = service.orphan_note(orphan)
    assert note is not None
    assert "'paper' is not in this configuration" in note
    assert "add the account back" in note.lower() and "another configuration" in note
    # Counted as working nowhere: not in the book, not among working orders, not to be settled.
    assert service.working_orders() == []
    assert service.book.open_orders(None) == 0
    assert service.book.pending("paper", "AAPL", Side.BUY) == 0
    assert orphan.client_order_id not in service.tracker.unsettled
    # Its client id is still one a broker has seen: never sent again.
    resent = await service.submit(orphan.request.model_copy(update={"account": "us"}))
    assert resent.reject_code == "DUPLICATE_ORDER"


async def test_an_order_of_a_configured_account_is_not_orphaned(service):
    order = await service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price=150)
    )
    assert service.orphan_note(order) is None
    assert service.working_orders() == [order]


async def test_a_halt_does_not_claim_to_cancel_orphans_and_says_they_were_left(service):
    [orphan] = service.orphaned_orders()
    outcome = await service.halt("test", source="test")
    assert set(outcome) == {"us"} and outcome["us"].cancelled == 0
    assert orphan.status is OrderStatus.ACCEPTED
    row = service.journal.events(kinds=["cancel"])[-1]
    assert row.data["orphaned_not_cancelled"] == {orphan.client_order_id: "paper"}
    # Reconciling asks only the configured accounts.
    report = await service.reconcile()
    assert "paper" not in report.errors and orphan.client_order_id not in report.unresolved
