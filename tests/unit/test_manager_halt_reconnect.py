"""An account that was down when trading was halted has its working orders cancelled when it
comes back, before it is marked usable."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from brokers.base import BrokerEvent
from brokers.config import parse_config
from brokers.events import ConnectionEvent, HaltCancelEvent, ManagerEvent
from brokers.health import Backoff
from brokers.manager import MultiBrokerManager
from brokers.models import ConnectionState, Order, OrderRequest, OrderStatus
from brokers.runtime import build_runtime
from brokers.sim import SimBroker

CS = ConnectionState


async def wait_for_state(
    m: MultiBrokerManager, name: str, state: ConnectionState, limit: float = 5.0
) -> None:
    deadline = time.perf_counter() + limit
    while m.state(name) is not state:
        assert time.perf_counter() < deadline, f"{name} is {m.state(name)}, expected {state}"
        await asyncio.sleep(0.005)


class Timeline:
    """What the broker reported about one order and what the manager said about the account,
    in the order it happened."""

    def __init__(self, broker: SimBroker, manager: MultiBrokerManager, account: str) -> None:
        self.entries: list[tuple[str, object]] = []
        self.events: list[ManagerEvent] = []
        self.account = account
        broker.add_listener(self.on_broker)
        manager.add_listener(self.on_manager)

    def on_broker(self, event: BrokerEvent) -> None:
        if isinstance(event, Order):
            self.entries.append(("order", event.status))

    def on_manager(self, event: ManagerEvent) -> None:
        self.events.append(event)
        if isinstance(event, ConnectionEvent) and event.account == self.account:
            self.entries.append(("state", event.state))

    def index(self, entry: tuple[str, object]) -> int:
        return self.entries.index(entry)

    def halt_events(self) -> list[HaltCancelEvent]:
        return [e for e in self.events if isinstance(e, HaltCancelEvent)]


def resting_limit() -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="BUY", quantity=5, order_type="LIMIT", limit_price="150")


async def test_runtime_cancels_a_working_order_at_an_account_reconnecting_while_halted(tmp_path: Path):
    config = parse_config(
        {"accounts": [{"name": "paper", "type": "sim", "prices": {"AAPL": "200"}, "seed": 1}]},
        base_dir=tmp_path,
    )
    runtime = build_runtime(config, state_dir=tmp_path / "state")
    broker = runtime.manager.get("paper")
    assert isinstance(broker, SimBroker)
    await runtime.start()
    try:
        order = await runtime.execution.submit(resting_limit().model_copy(update={"account": "paper"}))
        assert order.status in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)
        timeline = Timeline(broker, runtime.manager, "paper")

        # The connection drops; the halt comes while the account is down, so cancel-all skips it.
        broker.faults.disconnect_after = 0
        await runtime.manager.refresh()
        assert runtime.manager.state("paper") is CS.DISCONNECTED
        outcome = await runtime.execution.halt("test", source="test")
        assert not outcome["paper"].ok
        assert outcome["paper"].error == "not connected; its working orders are cancelled when it reconnects"

        await wait_for_state(runtime.manager, "paper", CS.CONNECTED)
        assert ("order", OrderStatus.CANCELLED) in timeline.entries
        assert timeline.index(("order", OrderStatus.CANCELLED)) < timeline.index(("state", CS.CONNECTED))
        assert timeline.index(("state", CS.RESYNCING)) < timeline.index(("order", OrderStatus.CANCELLED))
        [event] = timeline.halt_events()
        assert event.account == "paper" and event.ok
        assert event.cancelled == (order.broker_order_id,)
        assert (await broker.get_order(str(order.broker_order_id))).status is OrderStatus.CANCELLED
        assert await broker.get_open_orders() == []
        assert runtime.kill_switch.is_halted
        # The execution layer heard of the cancel too: the journal no longer counts it working.
        deadline = time.perf_counter() + 2
        while runtime.journal.orders()[order.client_order_id].status is not OrderStatus.CANCELLED:
            assert time.perf_counter() < deadline
            await asyncio.sleep(0.01)
    finally:
        await runtime.stop()


def manager_with(broker: SimBroker, halted: list[bool]) -> MultiBrokerManager:
    m = MultiBrokerManager(
        timeout=0.5,
        heartbeat_interval=60,
        backoff=Backoff(initial=0.01, jitter=0),
        halted=lambda: halted[0],
    )
    m.add_broker(broker.name, broker)
    return m


async def test_an_order_the_cancel_cannot_reach_is_reported_and_the_account_is_not_connected():
    broker = SimBroker("paper", prices={"AAPL": 200}, seed=1)
    halted = [False]
    m = manager_with(broker, halted)
    await m.connect_all()
    await m.start()
    timeline = Timeline(broker, m, "paper")
    try:
        order = await broker.place_order(resting_limit())
        broker.faults.disconnect_after = 0
        halted[0] = True
        broker.faults.timeout_next = 1
        broker.faults.timeout_methods = frozenset({"cancel_all_orders"})
        await m.refresh()
        await wait_for_state(m, "paper", CS.DEGRADED)

        [event] = timeline.halt_events()
        assert not event.ok and event.cancelled == ()
        [left] = event.not_cancelled
        assert left.order.broker_order_id == order.broker_order_id
        assert "cancel-all failed" in left.reason
        status = m.status("paper")
        assert "could not be cancelled" in (status.last_error or "")
        assert ("state", CS.CONNECTED) not in timeline.entries
        assert [o.broker_order_id for o in await broker.get_open_orders()] == [order.broker_order_id]
        assert m.halt_cancels() == {"paper": event}

        # Cancelled meanwhile by other means: the next reconnect while halted finds nothing
        # working, becomes CONNECTED and no longer reports the order.
        await broker.cancel_order(str(order.broker_order_id))
        broker.faults.disconnect_after = 0
        await m.refresh()
        await wait_for_state(m, "paper", CS.CONNECTED)
        assert len(timeline.halt_events()) == 1
        assert m.halt_cancels()["paper"].ok and m.halt_cancels()["paper"].not_cancelled == ()
    finally:
        await m.stop()


async def test_reconnecting_while_trading_goes_on_leaves_working_orders_alone():
    broker = SimBroker("paper", prices={"AAPL": 200}, seed=1)
    m = manager_with(broker, [False])
    await m.connect_all()
    await m.start()
    timeline = Timeline(broker, m, "paper")
    try:
        order = await broker.place_order(resting_limit())
        broker.faults.disconnect_after = 0
        await m.refresh()
        await wait_for_state(m, "paper", CS.CONNECTED)
        assert timeline.halt_events() == [] and m.halt_cancels() == {}
        assert [o.broker_order_id for o in await broker.get_open_orders()] == [order.broker_order_id]
    finally:
        await m.stop()


async def test_a_first_connect_while_halted_cancels_too_and_a_broken_check_counts_as_halted():
    broker = SimBroker("paper", prices={"AAPL": 200}, seed=1)
    await broker.connect()
    order = await broker.place_order(resting_limit())
    await broker.disconnect()

    def broken() -> bool:
        raise OSError("state folder unreadable")

    m = MultiBrokerManager(timeout=0.5, heartbeat_interval=60, halted=broken)
    m.add_broker("paper", broker)
    statuses = await m.connect_all()
    assert statuses["paper"].state is CS.CONNECTED
    assert (await broker.get_order(str(order.broker_order_id))).status is OrderStatus.CANCELLED
    assert order.quantity == Decimal(5)
    await m.stop()


async def test_the_halted_check_can_be_given_after_the_manager_is_built():
    broker = SimBroker("paper", prices={"AAPL": 200}, seed=1)
    await broker.connect()
    order = await broker.place_order(resting_limit())
    await broker.disconnect()
    m = MultiBrokerManager(timeout=0.5, heartbeat_interval=60)
    m.add_broker("paper", broker)
    m.set_halted_check(lambda: True)
    await m.connect_all()
    assert (await broker.get_order(str(order.broker_order_id))).status is OrderStatus.CANCELLED
    assert m.halt_cancels()["paper"].cancelled == (order.broker_order_id,)
    await m.stop()
