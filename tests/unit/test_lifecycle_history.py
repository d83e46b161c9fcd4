"""An order's history and the day's orders, read back from the journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from support import running, until

from brokers.execution import ExecutionService
from brokers.history import order_history, orders_since, start_of_day
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus
from brokers.sim import SimBroker

D = Decimal


@pytest.fixture
async def service(tmp_path):
    broker = SimBroker("paper", prices={"AAPL": 200}, initial_cash=1_000_000, commission_per_share="0.01")
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("paper", broker, default=True)
    journal = Journal(tmp_path / "journal.sqlite")
    switch = KillSwitch(tmp_path, journal=journal, env={})
    service = ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings())
    async with running(manager, service):
        yield service
    journal.close()


async def test_history_tells_every_step_with_times(service):
    order = await service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=10, order_type="LIMIT", limit_price="190")
    )
    await service.modify(order.client_order_id, quantity=D(12), limit_price=D("201"))
    await until(lambda: order.status is OrderStatus.FILLED)
    service.journal.flush()
    steps = order_history(service.journal, order.client_order_id)
    kinds = [step.kind for step in steps]
    assert kinds[0] == "intent" and "modify" in kinds and "modified" in kinds
    assert "BUY 10 AAPL LIMIT @ 190 DAY" in steps[0].detail
    asked = next(step for step in steps if step.kind == "modify")
    assert "quantity 10 -> 12" in asked.detail and "limit price 190 -> 201" in asked.detail
    assert steps[-1].status == "FILLED" and steps[-1].filled_quantity == 12
    assert steps[-1].avg_fill_price == 200
    assert any("12 @ 200" in step.detail and "commission" in step.detail for step in steps)
    assert [step.time for step in steps] == sorted(step.time for step in steps)


async def test_a_refusal_is_in_the_history_with_its_code(service):
    service.kill_switch.halt("test", "test")
    order = await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    service.journal.flush()
    (step,) = order_history(service.journal, order.client_order_id)
    assert step.kind == "risk_reject" and step.status == "REJECTED"
    assert "SYSTEM_HALTED: trading is halted" in step.detail


async def test_orders_since_keeps_the_day_and_prefers_live_orders(service):
    first = await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    resting = await service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price="190")
    )
    service.journal.flush()
    today = start_of_day(datetime.now(UTC))
    found = orders_since(service.journal, today, {resting.client_order_id: resting})
    assert [o.client_order_id for o in found] == [first.client_order_id, resting.client_order_id]
    assert found[1] is resting and found[0].status is OrderStatus.FILLED
    assert orders_since(service.journal, today + timedelta(days=1)) == []


def test_start_of_day_is_utc_midnight():
    moment = datetime(2025, 1, 2, 23, 30, tzinfo=UTC)
    assert start_of_day(moment) == datetime(2025, 1, 2, tzinfo=UTC)
