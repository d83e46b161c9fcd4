"""Brackets, OTO and OCO through the execution layer: the request is checked field by field, a
broker that cannot hold exits refuses them with LEGS_UNSUPPORTED, the exits the broker sends are
followed and journaled beside their parent, and a halt cancels every leg."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError
from support import running, until

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX, leg_parent_id
from brokers.manager import MultiBrokerManager
from brokers.models import BrokerCapabilities, OrderClass, OrderRequest, OrderStatus, RejectCode
from brokers.sim import SimBroker

D = Decimal


class NoExitsBroker(SimBroker):
    @property
    def capabilities(self) -> BrokerCapabilities:
        return super().capabilities.model_copy(
            update={"bracket_orders": False, "oto_orders": False, "oco_orders": False}
        )


class Rig:
    def __init__(self, root, broker_type=SimBroker):
        self.root = root
        self.broker = broker_type(
            "paper", prices={"AAPL": 100}, initial_cash=1_000_000, initial_positions={"AAPL": ("10", "90")}
        )
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("paper", self.broker, default=True)
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(
            self.manager, self.switch, journal=self.journal, halt_settings=HaltSettings()
        )


@pytest.fixture
async def rig(tmp_path):
    setup = Rig(tmp_path / "state")
    async with running(setup.manager, setup.service):
        yield setup
    setup.journal.close()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"side": "BUY", "order_type": "LIMIT", "limit_price": 100, "take_profit": 99, "stop_loss": 90},
            "take_profit 99 must be above the entry price 100",
        ),
        (
            {"side": "BUY", "order_type": "LIMIT", "limit_price": 100, "take_profit": 110, "stop_loss": 100},
            "stop_loss 100 must be below the entry price 100",
        ),
        (
            {"side": "SELL", "order_type": "LIMIT", "limit_price": 100, "take_profit": 101, "stop_loss": 110},
            "take_profit 101 must be below the entry price 100",
        ),
        ({"side": "SELL", "take_profit": 110, "stop_loss": 90}, "take_profit 110 must be below stop_loss 90"),
        ({"side": "BUY", "take_profit": "-1", "stop_loss": 90}, "take_profit"),
        ({"side": "BUY", "take_profit": "abc", "stop_loss": 90}, "take_profit"),
        ({"side": "BUY", "stop_loss": "NaN"}, "stop_loss"),
        (
            {"side": "BUY", "order_class": "BRACKET", "take_profit": 110},
            "needs both take_profit and stop_loss",
        ),
        ({"side": "BUY", "order_class": "OTO"}, "exactly one of take_profit or stop_loss"),
        ({"side": "SELL", "order_class": "OCO", "stop_loss": 90}, "OCO order needs both"),
        (
            {"side": "SELL", "order_class": "OCO", "take_profit": 90, "stop_loss": 110},
            "must be above stop_loss",
        ),
        (
            {
                "side": "SELL",
                "order_class": "OCO",
                "order_type": "LIMIT",
                "limit_price": 120,
                "take_profit": 110,
                "stop_loss": 90,
            },
            "OCO order is a LIMIT order at its take_profit",
        ),
        ({"side": "BUY", "order_class": "SPREAD"}, "order_class must be one of"),
        (
            {"side": "BUY", "order_type": "TRAILING_STOP", "trail_percent": 1, "stop_loss": 90},
            "not TRAILING_STOP",
        ),
    ],
)
def test_bad_exits_are_refused_naming_the_field(fields, words):
    with pytest.raises(ValidationError, match=words):
        OrderRequest(symbol="AAPL", quantity=1, **fields)


def test_notional_orders_take_no_exits():
    with pytest.raises(ValidationError, match="need a quantity"):
        OrderRequest(symbol="AAPL", side="BUY", notional=500, take_profit=110, stop_loss=90)


def test_the_kind_of_legs_follows_the_fields():
    bracket = OrderRequest(symbol="AAPL", side="BUY", quantity=1, take_profit=110, stop_loss=90)
    oto = OrderRequest(symbol="AAPL", side="BUY", quantity=1, take_profit=110)
    oco = OrderRequest(
        symbol="AAPL", side="SELL", quantity=1, order_class="oco", take_profit=110, stop_loss=90
    )
    plain = OrderRequest(symbol="AAPL", side="BUY", quantity=1)
    assert [r.legs for r in (bracket, oto, oco, plain)] == [
        OrderClass.BRACKET,
        OrderClass.OTO,
        OrderClass.OCO,
        OrderClass.SIMPLE,
    ]
    assert (oco.order_type.value, oco.limit_price) == ("LIMIT", 110)


async def test_a_bracket_is_followed_leg_by_leg_and_journaled(rig):
    order = await rig.service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=5, take_profit=110, stop_loss=95)
    )
    assert order.status is OrderStatus.FILLED
    coid = order.client_order_id
    tp_id, sl_id = coid + TAKE_PROFIT_SUFFIX, coid + STOP_LOSS_SUFFIX
    await until(lambda: {tp_id, sl_id} <= set(rig.service.tracker.orders))
    tp, sl = rig.service.tracker.get(tp_id), rig.service.tracker.get(sl_id)
    assert tp.is_working and sl.is_working and tp.quantity == sl.quantity == 5
    assert {o.client_order_id for o in rig.service.working_orders()} == {tp_id, sl_id}
    rig.broker.set_price("AAPL", 111)
    await until(lambda: tp.status is OrderStatus.FILLED and sl.status is OrderStatus.CANCELLED)
    assert rig.service.book.positions()[("paper", "AAPL")] == 10
    # The journal knows each leg and, through its id, the parent whose request names the exits.
    restored = {o.client_order_id: o for o in rig.journal.orders().values()}
    assert restored[tp_id].status is OrderStatus.FILLED
    assert leg_parent_id(tp_id) == coid and restored[coid].request.take_profit == 110


async def test_working_legs_come_back_after_a_restart(rig, tmp_path):
    order = await rig.service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=2, take_profit=120, stop_loss=80)
    )
    coid = order.client_order_id
    await until(lambda: coid + STOP_LOSS_SUFFIX in rig.service.tracker.orders)
    rig.journal.flush()
    again = Journal(rig.root / "journal.sqlite")
    try:
        working = {o.client_order_id for o in again.open_orders()}
    finally:
        again.close()
    assert working == {coid + TAKE_PROFIT_SUFFIX, coid + STOP_LOSS_SUFFIX}


async def test_a_halt_cancels_every_leg(rig):
    order = await rig.service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=2, take_profit=120, stop_loss=80)
    )
    coid = order.client_order_id
    await until(lambda: coid + STOP_LOSS_SUFFIX in rig.service.tracker.orders)
    await rig.service.halt("test", "test")
    await until(lambda: not rig.service.working_orders())
    assert await rig.broker.get_open_orders() == []
    refused = await rig.service.submit(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=10, order_class="OCO", take_profit=120, stop_loss=80
        )
    )
    assert refused.reject_code == RejectCode.SYSTEM_HALTED


async def test_an_oco_pair_closes_a_position_while_reducing(rig):
    await rig.service.reduce_only("test", "test")
    pair = await rig.service.submit(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=10, order_class="OCO", take_profit=105, stop_loss=95
        )
    )
    assert pair.status is OrderStatus.ACCEPTED, pair.reject_reason
    stop_id = pair.client_order_id + STOP_LOSS_SUFFIX
    await until(lambda: stop_id in rig.service.tracker.orders)
    rig.broker.set_price("AAPL", 94)
    stop = rig.service.tracker.get(stop_id)
    await until(lambda: stop.status is OrderStatus.FILLED and pair.status is OrderStatus.CANCELLED)
    assert ("paper", "AAPL") not in rig.service.book.positions() or rig.service.book.positions()[
        ("paper", "AAPL")
    ] == 0


async def test_a_broker_that_cannot_hold_exits_refuses_them_with_a_code(tmp_path):
    setup = Rig(tmp_path / "state", NoExitsBroker)
    async with running(setup.manager, setup.service):
        refused = await setup.service.submit(
            OrderRequest(symbol="AAPL", side="BUY", quantity=1, take_profit=110, stop_loss=90)
        )
        assert refused.reject_code == RejectCode.LEGS_UNSUPPORTED
        assert "cannot hold BRACKET exits" in (refused.reject_reason or "")
        assert await setup.broker.get_open_orders() == []
        plain = await setup.service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
        assert plain.status is OrderStatus.FILLED
    setup.journal.close()
