"""Execution monitoring: silent orders, slippage, reject bursts, stalled partial fills, and the
day's commission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from support import running, until

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Fill, Order, OrderRequest, OrderStatus, TradingState
from brokers.monitoring import AlertKind, ExecutionMonitor, MonitorSettings, commission_by_account
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bare_monitor(clock: Clock, **settings) -> tuple[ExecutionMonitor, list]:
    seen: list = []
    monitor = ExecutionMonitor(
        subscribe=lambda _listener: None,
        unsubscribe=lambda _listener: None,
        last_price=lambda symbol, account: D(100),
        settings=MonitorSettings(**settings),
        clock=clock,
    )
    monitor.add_listener(seen.append)
    return monitor, seen


def order(status: OrderStatus = OrderStatus.SUBMITTED, **fields) -> Order:
    placed = Order.for_request(
        OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 10, **fields}), "paper"
    )
    placed.broker_order_id = "B1"
    placed.transition(status)
    return placed


def fill(placed: Order, quantity: str, price: str, n: int) -> Fill:
    return Fill(
        fill_id=f"F{n}",
        account="paper",
        symbol="AAPL",
        side=placed.side,
        quantity=D(quantity),
        price=D(price),
        commission=D("0.5"),
        currency="USD",
        broker_order_id="B1",
        client_order_id=placed.client_order_id,
        timestamp=datetime.now(UTC),
    )


def test_an_order_left_unanswered_is_reported_once():
    clock = Clock()
    monitor, seen = bare_monitor(clock, stale_after_seconds=30)
    sent = order(OrderStatus.SUBMITTED)
    monitor.on_order(sent)
    clock.now += 29
    assert monitor.check() == []
    clock.now += 2
    (alert,) = monitor.check()
    assert alert.kind is AlertKind.STALE_ORDER and alert.client_order_id == sent.client_order_id
    assert "no answer from the broker for 31s" in alert.message
    clock.now += 100
    assert monitor.check() == [] and seen == [alert]


def test_a_resting_acknowledged_order_is_not_stale():
    clock = Clock()
    monitor, _ = bare_monitor(clock, stale_after_seconds=30)
    monitor.on_order(order(OrderStatus.ACCEPTED, order_type="LIMIT", limit_price="90"))
    clock.now += 3600
    assert monitor.check() == []


def test_a_stalled_partial_fill_is_reported():
    clock = Clock()
    monitor, _ = bare_monitor(clock, partial_stall_seconds=60)
    working = order(OrderStatus.ACCEPTED, order_type="LIMIT", limit_price="100")
    monitor.on_order(working)
    working.apply_fill(fill(working, "4", "100", 1))
    monitor.on_order(working)
    clock.now += 59
    assert monitor.check() == []
    working.apply_fill(fill(working, "1", "100", 2))  # a fill restarts the wait
    monitor.on_order(working)
    clock.now += 59
    assert monitor.check() == []
    clock.now += 2
    (alert,) = monitor.check()
    assert alert.kind is AlertKind.PARTIAL_STALL and "5 of 10" in alert.message


def test_slippage_beyond_the_limit_against_the_price_at_submit():
    clock = Clock()
    monitor, seen = bare_monitor(clock, slippage_bps=50)
    market = order(OrderStatus.ACCEPTED)  # last price 100 at submit
    monitor.on_order(market)
    market.apply_fill(fill(market, "5", "100.4", 1))  # 40 bps: within
    monitor.on_order(market)
    assert seen == []
    market.apply_fill(fill(market, "5", "100.6", 2))  # 60 bps worse
    monitor.on_order(market)
    (alert,) = seen
    assert alert.kind is AlertKind.SLIPPAGE and "60 bps worse than 100" in alert.message


def test_a_better_price_is_never_slippage():
    clock = Clock()
    monitor, seen = bare_monitor(clock, slippage_bps=10)
    sell = order(OrderStatus.ACCEPTED, side="SELL")
    monitor.on_order(sell)
    sell.apply_fill(fill(sell, "10", "105", 1))
    monitor.on_order(sell)
    assert seen == []


def test_commission_by_account_and_day():
    placed = order(OrderStatus.ACCEPTED)
    placed.apply_fill(fill(placed, "5", "100", 1))
    placed.apply_fill(fill(placed, "5", "100", 2))
    today = datetime.now(UTC) - timedelta(hours=1)
    assert commission_by_account([placed], today) == {("paper", "USD"): D("1.0")}
    assert commission_by_account([placed], today + timedelta(days=1)) == {}


# -- against the execution service and a paper broker -----------------------------------------


@pytest.fixture
async def rig(tmp_path):
    broker = SimBroker("paper", prices={"AAPL": 200}, initial_cash=1_000_000, slippage_bps="80")
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("paper", broker, default=True)
    journal = Journal(tmp_path / "journal.sqlite")
    switch = KillSwitch(tmp_path, journal=journal, env={})
    service = ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings())
    async with running(manager, service):
        yield service
    journal.close()


def service_monitor(service: ExecutionService, **settings) -> ExecutionMonitor:
    monitor = ExecutionMonitor(
        subscribe=service.subscribe,
        unsubscribe=service.unsubscribe,
        last_price=service.book.last_price,
        kill_switch=service.kill_switch,
        journal=service.journal,
        settings=MonitorSettings(**settings),
    )
    monitor.start(periodic=False)
    return monitor


async def test_slippage_of_a_market_order_at_the_paper_broker(rig):
    monitor = service_monitor(rig, slippage_bps=50)
    placed = await rig.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    assert placed.status is OrderStatus.FILLED
    await until(lambda: monitor.count == 1)
    assert monitor.alerts[0].kind is AlertKind.SLIPPAGE
    rig.journal.flush()
    rows = rig.journal.events(order=placed.client_order_id, kinds=["alert"])
    assert rows and rows[0].data["alert"] == "SLIPPAGE"
    await monitor.stop()


async def test_a_reject_storm_alerts_and_can_move_trading_to_reducing(rig):
    rig.risk = RiskEngine(RiskLimits(max_order_quantity=5))
    monitor = service_monitor(rig, reject_burst=3, reject_window_seconds=60, reduce_on_reject_storm=True)
    for _ in range(3):
        refused = await rig.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=10))
        assert refused.reject_code == "MAX_QUANTITY"
    assert [a.kind for a in monitor.alerts] == [AlertKind.REJECT_BURST]
    assert "3 orders rejected" in monitor.alerts[0].message
    assert rig.kill_switch.state is TradingState.REDUCING
    await monitor.stop()


async def test_refusals_while_halted_are_not_a_storm(rig):
    monitor = service_monitor(rig, reject_burst=2)
    rig.kill_switch.halt("test", "test")
    for _ in range(3):
        await rig.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    assert monitor.alerts == []
    await monitor.stop()


def test_monitoring_is_set_in_the_config_file(tmp_path):
    from brokers.config import load_config

    path = tmp_path / "config.toml"
    path.write_text(
        "[monitoring]\nreduce_on_reject_storm = true\nreject_burst = 3\nslippage_bps = 25\n"
        "stale_after_seconds = 5\npartial_stall_seconds = 60\nreject_window_seconds = 20\n"
    )
    settings = load_config(path).monitoring
    assert settings == MonitorSettings(
        reduce_on_reject_storm=True,
        reject_burst=3,
        slippage_bps=Decimal(25),
        stale_after_seconds=5,
        partial_stall_seconds=60,
        reject_window_seconds=20,
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("reject_burst = 1", "monitoring.reject_burst"),
        ('slippage_bps = "lots"', "monitoring.slippage_bps"),
        ("stale_after_seconds = -1", "monitoring.stale_after_seconds"),
        ("reduce_on_reject_strom = true", "monitoring.reduce_on_reject_strom: unknown key"),
    ],
)
def test_bad_monitoring_settings_name_the_key(tmp_path, text, named):
    from brokers.config import load_config
    from brokers.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(f"[monitoring]\n{text}\n")
    with pytest.raises(ConfigError, match=named):
        load_config(path)


def test_the_example_config_holds_the_defaults():
    from pathlib import Path

    from brokers.config import load_config

    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    assert load_config(example).monitoring == MonitorSettings()
