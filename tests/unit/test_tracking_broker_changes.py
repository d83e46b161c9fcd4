"""What the execution layer does when a broker says more than it was told: an order modified
in the broker's own app, and an order reported filled without its executions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import until

from brokers.events import FillEvent, OrderEvent
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Fill, OrderRequest, OrderStatus, Position, Side
from brokers.sim import SimBroker

D = Decimal


class HeldPositions(SimBroker):
    """A paper broker whose positions can be set by the test, as a broker that filled an
    order it has not reported the executions of would list them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.listed: list[Position] | None = None
        self.position_reads = 0

    async def get_positions(self):
        self.position_reads += 1
        if self.listed is not None:
            return list(self.listed)
        return await super().get_positions()


@pytest.fixture
async def setup(tmp_path):
    broker = HeldPositions("us", prices={"AAPL": 200}, initial_cash=1_000_000)
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("us", broker, default=True)
    await manager.connect_all()
    await manager.start()
    journal = Journal(tmp_path / "journal.sqlite")
    service = ExecutionService(manager, KillSwitch(tmp_path, journal=journal, env={}), journal=journal)
    await service.start()
    yield service, broker, journal
    await service.stop()
    await manager.stop()
    await manager.disconnect_all()
    journal.close()


def resting(quantity=10):
    return OrderRequest(symbol="AAPL", side="BUY", quantity=quantity, order_type="LIMIT", limit_price=150)


async def test_an_order_modified_at_the_broker_takes_the_new_terms_and_the_book_follows(setup):
    service, _, journal = setup
    order = await service.submit(resting(10))
    assert order.status is OrderStatus.ACCEPTED
    assert service.book.pending("us", "AAPL", Side.BUY) == 10

    snapshot = order.snapshot()
    snapshot.request = order.request.model_copy(update={"quantity": D(20), "limit_price": D("151.5")})
    service.tracker.apply_event(OrderEvent("us", snapshot))

    assert (order.quantity, order.limit_price, order.status) == (20, D("151.5"), OrderStatus.ACCEPTED)
    assert service.book.pending("us", "AAPL", Side.BUY) == 20
    # The journal carries the new terms: a restart reloads the order as the broker holds it.
    reloaded = journal.orders()[order.client_order_id]
    assert (reloaded.quantity, reloaded.limit_price) == (20, D("151.5"))

    # The same terms again are old news.
    assert not service.tracker.absorb(order, order.snapshot(), "update")


async def test_a_modification_that_breaks_the_rules_is_not_taken(setup):
    service, _, _ = setup
    order = await service.submit(resting(10))
    snapshot = order.snapshot()
    snapshot.request = order.request.model_copy(update={"quantity": D(-5)})
    service.tracker.apply_event(OrderEvent("us", snapshot))
    assert order.quantity == 10
    assert service.book.pending("us", "AAPL", Side.BUY) == 10


async def test_filled_without_executions_reads_the_positions_again_and_counts_late_fills_once(setup):
    service, broker, _ = setup
    order = await service.submit(resting(10))
    assert service.book.position("us", "AAPL") == 0
    broker.listed = [Position(symbol="AAPL", quantity=D(10), avg_price=D(150), account="us")]
    reads = broker.position_reads

    snapshot = order.snapshot()
    snapshot.status = OrderStatus.FILLED
    snapshot.filled_quantity = D(10)
    snapshot.avg_fill_price = D(150)
    service.tracker.apply_event(OrderEvent("us", snapshot))
    assert order.status is OrderStatus.FILLED and order.fills == []

    await until(lambda: service.book.position("us", "AAPL") == 10)
    assert broker.position_reads == reads + 1
    assert service.book.pending("us", "AAPL", Side.BUY) == 0

    # Executions that do come after all are the order's, and the position does not move twice.
    def fill(fill_id, quantity):
        return Fill(
            fill_id=fill_id,
            account="us",
            symbol="AAPL",
            side=Side.BUY,
            quantity=D(quantity),
            price=D(150),
            broker_order_id=order.broker_order_id,
            client_order_id=order.client_order_id,
        )

    service.tracker.apply_event(FillEvent("us", fill("late-1", 6)))
    service.tracker.apply_event(FillEvent("us", fill("late-2", 4)))
    assert [f.fill_id for f in order.fills] == ["late-1", "late-2"]
    assert service.book.position("us", "AAPL") == 10
    # ...and a fill beyond what the order reported filled still moves it.
    service.tracker.apply_event(FillEvent("us", fill("late-3", 1)))
    assert service.book.position("us", "AAPL") == 11


async def test_an_order_filled_with_its_executions_needs_no_second_look(setup):
    service, broker, _ = setup
    reads = broker.position_reads
    order = await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=3))
    assert order.status is OrderStatus.FILLED
    await until(lambda: service.book.position("us", "AAPL") == 3)
    assert broker.position_reads == reads and not service.tracker.gaps


async def test_partly_filled_without_executions_then_cancelled_reads_the_positions_again(setup):
    service, broker, _ = setup
    order = await service.submit(resting(10))
    broker.listed = [Position(symbol="AAPL", quantity=D(4), avg_price=D(150), account="us")]

    partial = order.snapshot()
    partial.status = OrderStatus.PARTIALLY_FILLED
    partial.filled_quantity = D(4)
    service.tracker.apply_event(OrderEvent("us", partial))
    assert not service.tracker.gaps  # still working: its executions may yet come
    cancelled = partial.snapshot()
    cancelled.status = OrderStatus.CANCELLED
    service.tracker.apply_event(OrderEvent("us", cancelled))

    assert order.status is OrderStatus.CANCELLED and order.filled_quantity == 4
    await until(lambda: service.book.position("us", "AAPL") == 4)
