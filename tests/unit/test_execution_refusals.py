"""Validation that cannot be skipped, and refusals that all reach the audit trail."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from support import running

from brokers.execution import DAILY_LOSS_SOURCE, ExecutionService
from brokers.instruments import Instrument
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, TradingState
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


class CountingSim(SimBroker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.placed: list[str] = []

    async def place_order(self, request):
        self.placed.append(request.client_order_id)
        return await super().place_order(request)


class Rig:
    def __init__(self, root):
        self.root = root
        self.broker = CountingSim(
            "us", prices={"AAPL": 200}, initial_cash=10**7, initial_positions={"AAPL": ("50", "190")}
        )
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("us", self.broker, default=True)
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(self.manager, self.switch, journal=self.journal)

    def rows(self, order):
        return [(e.kind, e.data) for e in self.journal.events(order=order.client_order_id)]


@pytest.fixture
async def rig(tmp_path):
    setup = Rig(tmp_path / "state")
    async with running(setup.manager, setup.service):
        yield setup
    setup.journal.close()


def _base(**fields):
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 1, **fields})


@pytest.mark.parametrize(
    "update",
    [
        {"quantity": D("5e9")},
        {"quantity": D(0)},
        {"quantity": D("NaN")},
        {"limit_price": D("100")},  # a MARKET order with a limit price
        {"symbol": "bad symbol!"},
    ],
    ids=["huge", "zero", "nan", "market-with-limit", "symbol"],
)
async def test_model_copy_cannot_skip_validation(rig, update):
    request = _base().model_copy(update=update)
    order = await rig.service.submit(request)
    assert order.status is OrderStatus.REJECTED
    assert order.reject_code == "INVALID_ORDER"
    assert rig.broker.placed == []
    # Bad input is refused before the journal, like any other.
    assert rig.rows(order) == []
    assert request.client_order_id not in rig.journal.orders()


async def test_model_construct_and_split_children_are_validated(rig):
    bad = OrderRequest.model_construct(symbol="AAPL", side="BUY", quantity=D(1), order_type="LIMIT")
    order = await rig.service.submit(bad)
    assert order.reject_code == "INVALID_ORDER"
    assert rig.broker.placed == []
    [order] = await rig.service.submit_distributed(_base().model_copy(update={"quantity": D("5e9")}))
    assert order.reject_code == "INVALID_ORDER"


async def test_a_valid_copy_is_sent_in_its_validated_form(rig):
    request = OrderRequest.model_construct(
        **{**_base().model_dump(), "symbol": " aapl ", "client_order_id": "abc-1"}
    )
    order = await rig.service.submit(request)
    assert order.status is not OrderStatus.REJECTED, order.reject_reason
    assert order.request.symbol == "AAPL"


async def test_halted_and_reduce_only_refusals_are_journaled(rig):
    rig.switch.reduce_only("careful", source="test")
    buy = await rig.service.submit(_base(quantity=10))
    assert buy.reject_code == "REDUCE_ONLY"
    [(kind, data)] = rig.rows(buy)
    assert kind == "risk_reject"
    assert data["state"]["reject_code"] == "REDUCE_ONLY"
    assert data["request"]["quantity"] == "10"
    rig.switch.halt("stop", source="test")
    halted = await rig.service.submit(_base(side="SELL"))
    [(kind, data)] = rig.rows(halted)
    assert (kind, data["state"]["reject_code"]) == ("risk_reject", "SYSTEM_HALTED")
    [parent] = await rig.service.submit_distributed(_base())
    [(kind, data)] = rig.rows(parent)
    assert (kind, data["state"]["reject_code"]) == ("risk_reject", "SYSTEM_HALTED")


async def test_every_early_refusal_is_journaled(rig):
    no_account = await rig.service.submit(_base(account="nowhere"))
    assert no_account.reject_code is not None
    assert [k for k, _ in rig.rows(no_account)] == ["risk_reject"]
    await rig.manager.disconnect_all()
    down = await rig.service.submit(_base())
    assert down.reject_code == "BROKER_UNAVAILABLE"
    assert [k for k, _ in rig.rows(down)] == ["risk_reject"]


async def test_a_refused_resend_leaves_the_original_alone(rig):
    first = await rig.service.submit(_base(client_order_id="same-1"))
    assert first.status is not OrderStatus.REJECTED
    again = await rig.service.submit(_base(client_order_id="same-1"))
    assert again.reject_code == "DUPLICATE_ORDER"
    refusals = [
        e for e in rig.journal.events(kinds=["risk_reject"]) if e.data.get("client_order_id") == "same-1"
    ]
    assert len(refusals) == 1 and refusals[0].client_order_id is None
    assert rig.journal.orders()["same-1"].status is not OrderStatus.REJECTED


def test_a_daily_loss_trip_survives_a_restart_the_same_day_only(tmp_path):
    folder = tmp_path / "state"
    today = date(2026, 3, 2)
    KillSwitch(folder, env={}, today=lambda: today).reduce_only(
        "daily loss", source=DAILY_LOSS_SOURCE, day=today
    )
    restarted = KillSwitch(folder, env={}, today=lambda: today)
    assert restarted.state is TradingState.REDUCING
    assert restarted.info.source == DAILY_LOSS_SOURCE
    tomorrow = KillSwitch(folder, env={}, today=lambda: today + timedelta(days=1))
    assert tomorrow.state is TradingState.ACTIVE


def test_manual_reduce_only_is_shared_and_lifted_by_a_resume(tmp_path):
    folder = tmp_path / "state"
    here = KillSwitch(folder, env={})
    there = KillSwitch(folder, env={})
    here.reduce_only("careful", source="console")
    assert KillSwitch(folder, env={}).state is TradingState.REDUCING
    there.poll()
    assert there.state is TradingState.REDUCING
    there.resume("fine", source="cli")
    here.poll()
    assert here.state is TradingState.ACTIVE


async def test_the_service_trips_reduce_only_for_every_process(rig):
    rig.service.risk = RiskEngine(RiskLimits(daily_loss_limit=D(1)))
    rig.service.book.holdings[("us", Instrument.stock("AAPL"))].realized = D(-10)
    message = rig.service.check_daily_loss()
    assert message is not None
    other = KillSwitch(rig.root, env={})
    assert other.state is TradingState.REDUCING
    assert other.info.source == DAILY_LOSS_SOURCE
