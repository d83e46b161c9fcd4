"""Cancel-all short of a halt, by account and by symbol, and flatten, against paper brokers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import running, until

from brokers.errors import UnknownAccountError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, RejectCode, Side, TradingState
from brokers.sim import SimBroker

D = Decimal


class Rig:
    def __init__(self, root):
        prices = {"AAPL": 200, "MSFT": 400, "SPY": 500}
        self.a = SimBroker(
            "a",
            prices=prices,
            initial_cash=1_000_000,
            initial_positions={"AAPL": ("50", "190"), "MSFT": ("-5", "410")},
        )
        self.b = SimBroker(
            "b", prices=prices, initial_cash=1_000_000, initial_positions={"AAPL": ("10", "195")}
        )
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("a", self.a, default=True)
        self.manager.add_broker("b", self.b)
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(
            self.manager, self.switch, journal=self.journal, halt_settings=HaltSettings()
        )

    async def rest(self, symbol="AAPL", side="BUY", account="a", limit=None):
        limit = limit or {"AAPL": "150", "MSFT": "300", "SPY": "450"}[symbol]
        if side == "SELL":
            limit = str(D(limit) * 2)
        order = await self.service.submit(
            OrderRequest(
                symbol=symbol, side=side, quantity=1, order_type="LIMIT", limit_price=limit, account=account
            )
        )
        assert order.status is OrderStatus.ACCEPTED, order.reject_reason
        return order


@pytest.fixture
async def rig(tmp_path):
    setup = Rig(tmp_path / "state")
    async with running(setup.manager, setup.service):
        yield setup
    setup.journal.close()


# -- cancel-all -----------------------------------------------------------------------------


async def test_cancel_all_by_account_leaves_other_accounts_and_trading_alone(rig):
    at_a = await rig.rest(account="a")
    at_b = await rig.rest(account="b")
    assert rig.service.cancel_all_plan(account="a") == [at_a]
    outcome = await rig.service.cancel_all(account="a")
    assert set(outcome) == {"a"} and outcome["a"].ok and outcome["a"].cancelled == 1
    await until(lambda: at_a.status is OrderStatus.CANCELLED)
    assert at_b.status is OrderStatus.ACCEPTED
    assert rig.switch.state is TradingState.ACTIVE


async def test_cancel_all_by_symbol_cancels_only_that_symbol(rig):
    apple_a = await rig.rest("AAPL", account="a")
    apple_b = await rig.rest("AAPL", account="b")
    spy = await rig.rest("SPY", account="a")
    assert {o.client_order_id for o in rig.service.cancel_all_plan(symbol="aapl")} == {
        apple_a.client_order_id,
        apple_b.client_order_id,
    }
    outcome = await rig.service.cancel_all(symbol="aapl")
    assert outcome["a"].cancelled == 1 and outcome["b"].cancelled == 1
    assert apple_a.status is OrderStatus.CANCELLED and apple_b.status is OrderStatus.CANCELLED
    assert spy.status is OrderStatus.ACCEPTED
    rows = [e for e in rig.journal.events(kinds=["cancel"]) if "cancel_all" in e.data]
    assert rows[-1].data["symbol"] == "aapl"


async def test_cancel_all_by_account_and_symbol(rig):
    apple_a = await rig.rest("AAPL", account="a")
    apple_b = await rig.rest("AAPL", account="b")
    outcome = await rig.service.cancel_all(account="b", symbol="AAPL")
    assert set(outcome) == {"b"} and outcome["b"].cancelled == 1
    assert apple_b.status is OrderStatus.CANCELLED and apple_a.status is OrderStatus.ACCEPTED


async def test_cancel_all_with_no_filters_is_the_bulk_cancel_everywhere(rig):
    first, second = await rig.rest(account="a"), await rig.rest("SPY", account="b")
    outcome = await rig.service.cancel_all()
    assert set(outcome) == {"a", "b"} and all(r.ok for r in outcome.values())
    await until(lambda: first.status is second.status is OrderStatus.CANCELLED)


async def test_cancel_all_at_an_unknown_account_raises(rig):
    with pytest.raises(UnknownAccountError, match="nobody"):
        await rig.service.cancel_all(account="nobody")


# -- flatten --------------------------------------------------------------------------------


async def test_flatten_plan_lists_every_close_and_cancel(rig):
    buy = await rig.rest("AAPL", account="a")
    spy = await rig.rest("SPY", account="a")
    plan = rig.service.flatten_plan()
    closes = {(r.account, r.symbol, r.side, r.quantity) for r in plan.closes}
    assert closes == {("a", "AAPL", Side.SELL, 50), ("a", "MSFT", Side.BUY, 5), ("b", "AAPL", Side.SELL, 10)}
    # Only orders in instruments being closed are cancelled: SPY has no position.
    assert plan.cancels == [buy]
    assert spy not in plan.cancels


async def test_flatten_one_symbol_at_one_account(rig):
    working = await rig.rest("AAPL", account="a")
    orders = await rig.service.flatten("AAPL", account="a")
    assert [(o.account, o.side, o.quantity, o.status) for o in orders] == [
        ("a", Side.SELL, 50, OrderStatus.FILLED)
    ]
    assert working.status is OrderStatus.CANCELLED
    await until(lambda: rig.service.book.position("a", "AAPL") == 0)
    assert rig.service.book.position("b", "AAPL") == 10
    assert rig.service.book.position("a", "MSFT") == -5


async def test_flatten_everything(rig):
    orders = await rig.service.flatten()
    assert len(orders) == 3 and all(o.status is OrderStatus.FILLED for o in orders)
    await until(lambda: not rig.service.book.instrument_positions())


async def test_flatten_is_allowed_while_reducing(rig):
    await rig.rest("MSFT", side="SELL", account="a")  # a working sell beside the short
    rig.switch.reduce_only("test", "test")
    orders = await rig.service.flatten("MSFT")
    assert [(o.side, o.quantity, o.status) for o in orders] == [(Side.BUY, 5, OrderStatus.FILLED)]


async def test_flatten_is_refused_while_halted(rig):
    rig.service.halt_settings = HaltSettings(cancel_open_orders=False)
    working = await rig.rest("AAPL", account="a")
    rig.switch.halt("test", "test")
    orders = await rig.service.flatten("AAPL")
    assert orders and all(o.reject_code == RejectCode.SYSTEM_HALTED for o in orders)
    assert working.status is OrderStatus.ACCEPTED  # nothing was touched
    assert rig.service.book.position("a", "AAPL") == 50


async def test_flatten_with_nothing_to_close(rig):
    assert await rig.service.flatten("SPY") == []
    assert rig.service.flatten_plan("SPY").empty
