"""An order is valued in the currency of the account it goes to; a currency that account cannot
trade is refused before the risk checks, and can never steer the notional limit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import running

from brokers.execution import ExecutionService
from brokers.fx import FxRates
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, RejectCode
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


class CountingSim(SimBroker):
    """A paper broker that remembers every order that reaches it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.placed: list[OrderRequest] = []

    async def place_order(self, request):
        self.placed.append(request)
        return await super().place_order(request)


class Desk:
    def __init__(self, root, brokers):
        self.brokers = brokers
        self.fx = FxRates("USD")
        self.fx.set_rate("USDINR", D(84), source="config")
        self.manager = MultiBrokerManager(fx=self.fx, heartbeat_interval=3600)
        for name, broker in brokers.items():
            self.manager.add_broker(name, broker, default=(name == next(iter(brokers))))
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(
            self.manager,
            self.switch,
            risk=RiskEngine(RiskLimits(max_order_notional=10_000)),
            journal=self.journal,
            fx=self.fx,
            halt_settings=HaltSettings(),
        )

    def placed(self):
        return [request for broker in self.brokers.values() for request in broker.placed]


def usd(name):
    return CountingSim(name, currency="USD", prices={"AAPL": 190}, initial_cash=10_000_000)


@pytest.fixture
async def one_usd(tmp_path):
    desk = Desk(tmp_path / "state", {"us": usd("us")})
    async with running(desk.manager, desk.service):
        yield desk
    desk.journal.close()


@pytest.fixture
async def two_usd(tmp_path):
    desk = Desk(tmp_path / "state", {"us": usd("us"), "us2": usd("us2")})
    async with running(desk.manager, desk.service):
        yield desk
    desk.journal.close()


def buy(currency=None, quantity=500, **fields):
    return OrderRequest(
        symbol="AAPL",
        side="BUY",
        quantity=quantity,
        order_type="LIMIT",
        limit_price=190,
        currency=currency,
        **fields,
    )


async def test_a_currency_the_account_does_not_trade_is_refused_before_risk(one_usd):
    order = await one_usd.service.submit(buy("INR"))
    assert order.status is OrderStatus.REJECTED
    assert order.reject_code == RejectCode.CURRENCY_MISMATCH
    assert "INR" in order.reject_reason and "USD" in order.reject_reason
    assert "us" in order.reject_reason
    assert one_usd.placed() == []
    journaled = one_usd.journal.orders()[order.client_order_id]
    assert journaled.reject_code == "CURRENCY_MISMATCH"


async def test_without_the_currency_the_same_order_is_valued_in_the_accounts_currency(one_usd):
    for currency in (None, "USD"):
        order = await one_usd.service.submit(buy(currency))
        assert order.reject_code == RejectCode.MAX_NOTIONAL, order  # 95,000 USD
        assert "95,000.00 USD" in order.reject_reason
    small = await one_usd.service.submit(buy("USD", quantity=50))
    assert small.status is not OrderStatus.REJECTED, small
    assert [request.currency for request in one_usd.placed()] == ["USD"]


async def test_a_currency_the_account_lists_in_its_capabilities_is_accepted(tmp_path):
    class MultiCurrencySim(CountingSim):
        @property
        def capabilities(self):
            return super().capabilities.model_copy(update={"currencies": frozenset({"USD", "INR"})})

    desk = Desk(tmp_path / "state", {"multi": MultiCurrencySim("multi", prices={"AAPL": 190})})
    async with running(desk.manager, desk.service):
        # 500 x 190 INR = 95,000 INR, about 1,131 USD: under the limit, and sent as INR.
        order = await desk.service.submit(buy("INR"))
        assert order.reject_code != RejectCode.CURRENCY_MISMATCH, order
        assert order.reject_code != RejectCode.MAX_NOTIONAL, order
        assert [request.currency for request in desk.placed()] == ["INR"]
    desk.journal.close()


async def test_a_split_order_is_refused_when_no_account_trades_its_currency(two_usd):
    orders = await two_usd.service.submit_distributed(buy("INR"))
    assert [order.reject_code for order in orders] == [RejectCode.CURRENCY_MISMATCH]
    assert "INR" in orders[0].reject_reason and "USD" in orders[0].reject_reason
    assert two_usd.placed() == []
    # Without it each child is valued at its own account in USD: 250 x 190 = 47,500 USD each.
    plain = await two_usd.service.submit_distributed(buy())
    assert {order.reject_code for order in plain} == {RejectCode.MAX_NOTIONAL}
    assert two_usd.placed() == []


async def test_a_split_child_at_an_account_of_another_currency_is_refused_there(tmp_path):
    brokers = {
        "us": usd("us"),
        "in": CountingSim("in", currency="INR", prices={"AAPL": 16_000}, initial_cash=100_000_000),
    }
    desk = Desk(tmp_path / "state", brokers)
    async with running(desk.manager, desk.service):
        # 2 x 190 INR at "in" is within every limit; the USD account cannot take an INR order.
        orders = await desk.service.submit_distributed(buy("INR", quantity=2, time_in_force="DAY"))
        by_account = {order.account: order for order in orders}
        assert by_account["us"].reject_code == RejectCode.CURRENCY_MISMATCH
        assert by_account["in"].reject_code != RejectCode.CURRENCY_MISMATCH
        assert [(r.currency, r.quantity) for r in desk.placed()] == [("INR", D(1))]
    desk.journal.close()


async def test_preview_says_the_account_cannot_trade_the_currency_and_gives_no_notional(one_usd):
    preview = one_usd.service.preview(buy("INR"))
    assert preview.problem is not None
    assert "INR" in preview.problem and "USD" in preview.problem
    assert preview.notional is None and preview.targets == {}
    assert "INR" in (preview.notional_note or "")
    valued = one_usd.service.preview(buy())
    assert valued.problem is None and valued.notional == D(95_000)


async def test_preview_of_a_split_order_values_each_part_at_its_account(two_usd):
    preview = two_usd.service.preview(buy("INR"), distributed=True)
    assert preview.problem is not None and "INR" in preview.problem
    assert preview.notional is None and preview.targets == {}
    split = two_usd.service.preview(buy(), distributed=True)
    assert split.problem is None and split.notional == D(95_000)
    assert split.targets == {"us": D(250), "us2": D(250)}


async def test_preview_of_a_partly_refused_split_asks_first_and_values_only_what_goes(tmp_path):
    brokers = {
        "us": usd("us"),
        "in": CountingSim("in", currency="INR", prices={"AAPL": 16_000}, initial_cash=100_000_000),
    }
    desk = Desk(tmp_path / "state", brokers)
    async with running(desk.manager, desk.service):
        preview = desk.service.preview(buy("INR", quantity=2), distributed=True)
        # The INR part goes; the USD account's part would be refused, so the trader is asked.
        assert preview.problem is None and preview.targets == {"in": D(1)}
        assert preview.notional == D(190) / 84
        assert preview.needs_confirmation
        assert any("INR" in reason and "USD" in reason for reason in preview.reasons)
    desk.journal.close()
