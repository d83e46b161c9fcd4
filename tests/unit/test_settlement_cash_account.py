"""A cash account spends settled cash only: the paper broker settles with its clock, and the
execution layer refuses a buy that needs unsettled proceeds before it reaches the broker."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from support import running, until

from brokers.account_state import SettledCashSource
from brokers.cash_check import CashAccountCheck
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass, OrderRequest, OrderStatus, RejectCode
from brokers.risk import RiskEngine
from brokers.settled_cash import CashLedger, pending_from_orders, with_computed
from brokers.sim import ManualClock, SimBroker

D = Decimal
FRIDAY = datetime(2025, 8, 22, 14, 0, tzinfo=UTC)  # 10:00 in New York
MONDAY = datetime(2025, 8, 25, 4, 0, tzinfo=UTC)  # midnight in New York
BEFORE_LABOR_DAY = datetime(2025, 8, 29, 14, 0, tzinfo=UTC)


class Counting(SimBroker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.placed: list[str] = []

    async def place_order(self, request):
        self.placed.append(request.client_order_id)
        return await super().place_order(request)


class Desk:
    def __init__(self, root, start: datetime, **sim):
        self.clock = ManualClock(start)
        options = {
            "account_type": "cash",
            "initial_cash": 1_000,
            "prices": {"AAPL": 100, "BTC/USD": 50_000},
            "initial_positions": {"AAPL": (100, 90), "BTC/USD": (1, 40_000)},
            **sim,
        }
        self.broker = Counting("cash", clock=self.clock, **options)
        self.margin = Counting(
            "margin",
            clock=self.clock,
            initial_cash=1_000,
            prices={"AAPL": 100},
            initial_positions={"AAPL": (100, 90)},
        )
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("cash", self.broker, default=True)
        self.manager.add_broker("margin", self.margin)
        self.ledger = CashLedger(lambda: self.manager.snapshot.balances, clock=self.clock)
        self.manager.add_listener(self.ledger.on_event)
        self.risk = RiskEngine()
        self.risk.guard_cash_accounts(self.ledger)
        self.journal = Journal(root / "journal.sqlite")
        self.service = ExecutionService(
            self.manager, KillSwitch(root, journal=self.journal, env={}), risk=self.risk, journal=self.journal
        )

    async def order(self, side: str, quantity, symbol="AAPL", account="cash", **fields):
        return await self.service.submit(
            OrderRequest(symbol=symbol, side=side, quantity=quantity, account=account, **fields)
        )

    async def settled_events(self):
        """Let the manager hand the broker's updates to its listeners."""
        count = len(self.broker.placed) + len(self.margin.placed)
        await until(lambda: all(o.is_terminal for o in self.service.orders()) or not count)
        for _ in range(3):
            await until(lambda: True)


@pytest.fixture
async def desk(tmp_path):
    made = Desk(tmp_path, FRIDAY)
    async with running(made.manager, made.service):
        await made.manager.refresh()
        yield made
    made.journal.close()


async def sell_then_refresh(desk, quantity=100, **fields):
    sale = await desk.order("SELL", quantity, **fields)
    assert sale.status is OrderStatus.FILLED
    await until(lambda: desk.ledger.rows("cash"))
    await desk.manager.refresh()
    return sale


async def test_a_friday_sale_settles_monday_and_its_proceeds_wait_until_then(desk):
    sale = await sell_then_refresh(desk)
    fill = sale.fills[0]
    assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 22), date(2025, 8, 25))

    balance = await desk.broker.get_balance()
    assert balance.cash_account and balance.settled_source is SettledCashSource.BROKER
    assert (balance.cash, balance.settled_cash, balance.unsettled_cash) == (D(11_000), D(1_000), D(10_000))
    assert balance.buying_power == D(1_000)
    [pending] = desk.broker.pending_settlements()
    assert (pending.credits, pending.debits, pending.settlement_date) == (D(10_000), 0, date(2025, 8, 25))

    placed = len(desk.broker.placed)
    refused = await desk.order("BUY", 50)
    assert refused.status is OrderStatus.REJECTED
    assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
    assert "5,000.00 USD" in refused.reject_reason and "1,000.00 USD of settled cash" in refused.reject_reason
    assert "10,000.00 USD on Mon 25 Aug 2025" in refused.reject_reason
    assert len(desk.broker.placed) == placed  # refused before the broker

    # What settled cash covers is bought at once.
    small = await desk.order("BUY", 5)
    assert small.status is OrderStatus.FILLED

    desk.clock.set(datetime(2025, 8, 25, 3, 59, tzinfo=UTC))  # still Sunday night in New York
    await desk.manager.refresh()
    assert (await desk.order("BUY", 50)).reject_code == RejectCode.UNSETTLED_FUNDS

    desk.clock.set(MONDAY)
    await desk.manager.refresh()
    balance = await desk.broker.get_balance()
    assert balance.settled_cash == balance.cash == D(10_500) and balance.unsettled_cash == 0
    bought = await desk.order("BUY", 50)
    assert bought.status is OrderStatus.FILLED


async def test_a_sale_before_a_monday_holiday_settles_tuesday(tmp_path):
    desk = Desk(tmp_path, BEFORE_LABOR_DAY)
    async with running(desk.manager, desk.service):
        await desk.manager.refresh()
        sale = await sell_then_refresh(desk)
        assert sale.fills[0].settlement_date == date(2025, 9, 2)
        desk.clock.set(datetime(2025, 9, 1, 15, tzinfo=UTC))  # Labor Day
        await desk.manager.refresh()
        refused = await desk.order("BUY", 50)
        assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
        assert "on Tue 02 Sep 2025" in refused.reject_reason
        desk.clock.set(datetime(2025, 9, 2, 4, tzinfo=UTC))
        await desk.manager.refresh()
        assert (await desk.order("BUY", 50)).status is OrderStatus.FILLED
    desk.journal.close()


async def test_the_broker_itself_refuses_unsettled_spending_too(desk):
    await sell_then_refresh(desk)
    # Straight to the paper broker, past the execution layer: it keeps the same rule.
    from brokers.errors import InsufficientFundsError

    with pytest.raises(InsufficientFundsError, match="settled cash"):
        await desk.broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=50))


async def test_a_crypto_sale_is_spendable_at_once(desk):
    desk.clock.advance(1)  # after the balance was read
    sale = await desk.order("SELL", 1, symbol="BTC/USD", asset_class=AssetClass.CRYPTO)
    assert sale.status is OrderStatus.FILLED
    fill = sale.fills[0]
    assert fill.trade_date == fill.settlement_date == date(2025, 8, 22)
    await until(lambda: desk.ledger.rows("cash"))
    balance = await desk.broker.get_balance()
    assert balance.settled_cash == balance.cash == D(51_000) and balance.unsettled_cash == 0
    # Even before the balance is read again, the ledger counts the proceeds as settled.
    bought = await desk.order("BUY", 400)
    assert bought.status is OrderStatus.FILLED


async def test_working_buys_count_against_settled_cash(desk):
    await sell_then_refresh(desk)
    first = await desk.order("BUY", 6, order_type="LIMIT", limit_price=D(99))
    assert first.status is OrderStatus.ACCEPTED  # rests below the market
    second = await desk.order("BUY", 6, order_type="LIMIT", limit_price=D(99))
    assert second.reject_code == RejectCode.UNSETTLED_FUNDS
    assert "working buys 594.00 USD" in second.reject_reason


async def test_with_nothing_unsettled_a_lack_of_cash_is_the_brokers_to_refuse(desk):
    # 5,000 of AAPL against 1,000 of settled cash and no sale pending: not a question of
    # unsettled money, so the check lets it through and the broker refuses it for want of cash.
    order = await desk.order("BUY", 50)
    assert order.status is OrderStatus.REJECTED and order.reject_code == RejectCode.INSUFFICIENT_FUNDS
    assert len(desk.broker.placed) == 1 and "settled cash is available" in order.reject_reason


async def test_a_margin_account_is_unaffected(desk):
    sale = await desk.order("SELL", 100, account="margin")
    assert sale.status is OrderStatus.FILLED
    await desk.manager.refresh()
    assert not (await desk.margin.get_balance()).cash_account
    assert desk.ledger.cash_accounts == {"cash"}
    bought = await desk.order("BUY", 100, account="margin")
    assert bought.status is OrderStatus.FILLED
    # The margin account's plan has no cash check at all: its orders never meet it.
    assert not any(isinstance(check, CashAccountCheck) for check in desk.risk._plan("margin")[1])
    assert any(isinstance(check, CashAccountCheck) for check in desk.risk._plan("cash")[1])


async def test_broker_reported_settled_cash_wins_and_a_disagreement_is_shown(desk):
    # A sale the journal never saw (made at the broker directly, as from another terminal).
    await desk.broker.place_order(OrderRequest(symbol="AAPL", side="SELL", quantity=100))
    await desk.manager.refresh()
    balance = desk.manager.snapshot.balances["cash"]
    rows = pending_from_orders(desk.journal.orders().values(), {"cash": "USD"})
    shown = with_computed(balance, rows)
    assert shown.settled_source is SettledCashSource.BROKER
    assert shown.settled_cash == D(1_000)  # the broker's word
    assert shown.computed_settled_cash == D(11_000)  # the journal knows no unsettled sale
    assert shown.settlement_disagreement == D(-10_000)
    # The check goes by the broker's figure too.
    assert (await desk.order("BUY", 50)).reject_code == RejectCode.UNSETTLED_FUNDS


async def test_computed_from_fills_where_the_broker_reports_nothing(desk):
    await sell_then_refresh(desk)
    balance = desk.manager.snapshot.balances["cash"].model_copy(
        update={"settled_cash": None, "unsettled_cash": None, "settled_source": SettledCashSource.UNKNOWN}
    )
    rows = pending_from_orders(desk.journal.orders().values(), {"cash": "USD"})
    shown = with_computed(balance, rows)
    assert shown.settled_source is SettledCashSource.COMPUTED
    assert (shown.settled_cash, shown.unsettled_cash) == (D(1_000), D(10_000))
    assert shown.settlement_disagreement is None
    # Agreeing figures show no disagreement either.
    reported = desk.manager.snapshot.balances["cash"]
    assert with_computed(reported, rows).settlement_disagreement is None


class Unreporting(Counting):
    """A cash account at a broker that does not split its cash."""

    async def get_balance(self):
        balance = await super().get_balance()
        return balance.model_copy(
            update={"settled_cash": None, "unsettled_cash": None, "settled_source": SettledCashSource.UNKNOWN}
        )


async def test_a_cash_account_whose_split_cannot_be_known_buys_nothing(tmp_path):
    desk = Desk(tmp_path, FRIDAY)
    unreporting = Unreporting(
        "quiet",
        clock=desk.clock,
        account_type="cash",
        initial_cash=1_000,
        prices={"AAPL": 100},
        initial_positions={"AAPL": (100, 90)},
    )
    desk.manager.add_broker("quiet", unreporting)
    async with running(desk.manager, desk.service):
        await desk.manager.refresh()
        refused = await desk.order("BUY", 1, account="quiet")
        assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
        assert "settled cash is not known" in refused.reject_reason
        assert unreporting.placed == []

        # With the journal's fills from before, the split is worked out from them.
        desk.ledger.add_rows(pending_from_orders(desk.journal.orders().values(), {"quiet": "USD"}))
        desk.clock.advance(1)
        sale = await desk.order("SELL", 100, account="quiet")
        assert sale.status is OrderStatus.FILLED
        await until(lambda: desk.ledger.rows("quiet"))
        await desk.manager.refresh()
        funds = desk.ledger.spendable("quiet")
        assert funds is not None and funds.source is SettledCashSource.COMPUTED
        assert (funds.settled, funds.incoming) == (D(1_000), ((date(2025, 8, 25), D(10_000)),))
        assert (await desk.order("BUY", 50, account="quiet")).reject_code == RejectCode.UNSETTLED_FUNDS
        assert (await desk.order("BUY", 5, account="quiet")).status is OrderStatus.FILLED
    desk.journal.close()
