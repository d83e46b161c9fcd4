"""Settlement across a restart: the journal keeps each fill's trade and settlement dates, and a
cash account whose broker does not split its cash is worked out from the journal's recent fills
after a restart instead of refusing every buy. Where the fills cannot be read it still refuses,
and says why. On the paper broker with a manual clock."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from support import until

from brokers import settled_cash, settlement
from brokers.account_state import SettledCashSource
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.journal_rows import fill_data, order_row
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Fill, OrderRequest, OrderStatus, RejectCode
from brokers.risk import RiskEngine
from brokers.settled_cash import CashLedger, FillHistory
from brokers.sim import ManualClock, SimBroker

D = Decimal
FRIDAY = datetime(2025, 8, 22, 14, 0, tzinfo=UTC)  # 10:00 in New York
MONDAY = datetime(2025, 8, 25, 14, 0, tzinfo=UTC)


class Unreporting(SimBroker):
    """A cash account at a broker that does not split its cash into settled and unsettled."""

    async def get_balance(self):
        balance = await super().get_balance()
        return balance.model_copy(
            update={"settled_cash": None, "unsettled_cash": None, "settled_source": SettledCashSource.UNKNOWN}
        )


class Run:
    """One start of the console: a cash account, the ledger fed from ``history``, the journal."""

    def __init__(self, root, clock: ManualClock, broker: SimBroker, history: FillHistory | None = None):
        self.clock = clock
        self.broker = broker
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("cash", broker, default=True)
        self.journal = Journal(root / "journal.sqlite")
        self.ledger = CashLedger(
            lambda: self.manager.snapshot.balances,
            clock=clock,
            history=self.journal if history is None else history,
        )
        self.manager.add_listener(self.ledger.on_event)
        risk = RiskEngine()
        risk.guard_cash_accounts(self.ledger)
        self.service = ExecutionService(
            self.manager, KillSwitch(root, journal=self.journal, env={}), risk=risk, journal=self.journal
        )

    async def __aenter__(self) -> Run:
        await self.manager.connect_all()
        await self.manager.start()
        await self.service.start()
        await self.manager.refresh()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.service.stop()
        await self.manager.stop()
        await self.manager.disconnect_all()
        self.journal.close()

    async def order(self, side: str, quantity) -> object:
        return await self.service.submit(
            OrderRequest(symbol="AAPL", side=side, quantity=quantity, account="cash")
        )


def cash_account(clock: ManualClock, **options) -> Unreporting:
    return Unreporting(
        "cash", clock=clock, account_type="cash", prices={"AAPL": 100}, **{"initial_cash": 1_000, **options}
    )


async def sell_on_friday(root) -> ManualClock:
    """The first run: 100 AAPL sold on Friday for 10,000 USD, settling Monday."""
    clock = ManualClock(FRIDAY)
    async with Run(root, clock, cash_account(clock, initial_positions={"AAPL": (100, 90)})) as run:
        sale = await run.order("SELL", 100)
        assert sale.status is OrderStatus.FILLED
        await until(lambda: run.ledger.rows("cash"))
    return clock


async def test_the_journal_keeps_each_fills_trade_and_settlement_dates(tmp_path):
    await sell_on_friday(tmp_path)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        [order] = journal.orders().values()
        [fill] = order.fills
        assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 22), date(2025, 8, 25))
        [recent] = journal.orders_since(FRIDAY)
        assert recent.fills[0].settlement_date == date(2025, 8, 25)
    finally:
        journal.close()
    # Both encodings of a fill say the same; a fill without dates says nothing of them.
    row = json.loads(order_row(order, order.fills))["fills"][0]
    assert (row["trade_date"], row["settlement_date"]) == ("2025-08-22", "2025-08-25")
    assert {k: fill_data(fill)[k] for k in ("trade_date", "settlement_date")} == {
        "trade_date": "2025-08-22",
        "settlement_date": "2025-08-25",
    }
    undated = fill.model_copy(update={"trade_date": None, "settlement_date": None})
    assert "trade_date" not in json.loads(order_row(order, [undated]))["fills"][0]
    assert "trade_date" not in fill_data(undated)


async def test_after_a_restart_the_split_is_worked_out_from_the_journals_fills(tmp_path):
    clock = await sell_on_friday(tmp_path)
    clock.advance(hours=1)
    # Started again on Friday: the broker says 11,000 USD of cash and nothing of what is settled.
    async with Run(tmp_path, clock, cash_account(clock, initial_cash=11_000)) as run:
        funds = run.ledger.spendable("cash")
        assert funds is not None and funds.source is SettledCashSource.COMPUTED
        assert (funds.settled, funds.incoming) == (D(1_000), ((date(2025, 8, 25), D(10_000)),))

        refused = await run.order("BUY", 50)
        assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
        assert "10,000.00 USD on Mon 25 Aug 2025" in refused.reject_reason
        bought = await run.order("BUY", 5)  # what settled cash covers
        assert bought.status is OrderStatus.FILLED

        clock.set(MONDAY)
        await run.manager.refresh()
        assert (await run.order("BUY", 50)).status is OrderStatus.FILLED


async def test_fills_that_cannot_be_read_still_refuse_and_say_why(tmp_path):
    clock = await sell_on_friday(tmp_path)
    unreadable = Journal(tmp_path / "other.sqlite")
    unreadable.close()
    async with Run(tmp_path, clock, cash_account(clock, initial_cash=11_000), history=unreadable) as run:
        refused = await run.order("BUY", 1)
        assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
        assert "settled cash is not known" in refused.reject_reason
        assert "the journal's recent fills could not be read" in refused.reject_reason


async def test_more_recent_orders_than_can_be_read_back_still_refuse(tmp_path, monkeypatch):
    clock = await sell_on_friday(tmp_path)
    monkeypatch.setattr(settled_cash, "HISTORY_ORDERS", 0)
    async with Run(tmp_path, clock, cash_account(clock, initial_cash=11_000)) as run:
        refused = await run.order("BUY", 1)
        assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
        assert "too many orders of the last 14 days" in refused.reject_reason


@pytest.mark.parametrize("history", [False, True])
async def test_a_margin_account_never_reads_the_journal(tmp_path, history):
    clock = ManualClock(FRIDAY)
    broker = SimBroker("margin", clock=clock, prices={"AAPL": 100})
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("margin", broker, default=True)
    unreadable = Journal(tmp_path / "other.sqlite")
    unreadable.close()
    ledger = CashLedger(
        lambda: manager.snapshot.balances, clock=clock, history=unreadable if history else None
    )
    await manager.connect_all()
    try:
        await manager.refresh()
        assert not ledger.is_cash_account("margin")
        assert ledger.history_gap is None and not ledger.has_history
    finally:
        await manager.disconnect_all()


async def test_while_the_calendars_still_load_the_journal_waits_and_the_refusal_says_so(
    tmp_path, monkeypatch
):
    clock = await sell_on_friday(tmp_path)
    release, loaded = threading.Event(), threading.Event()

    def load() -> None:
        release.wait(10)
        loaded.set()

    monkeypatch.setattr(settlement, "_LOADED", loaded)
    monkeypatch.setattr(settlement, "_load_calendars", load)
    settlement.warm_up.cache_clear()
    try:
        async with Run(tmp_path, clock, cash_account(clock, initial_cash=11_000)) as run:
            assert not run.ledger.has_history  # not read on the event loop while they load
            refused = await run.order("BUY", 5)
            assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
            assert (
                "settlement calendars that date its earlier fills are still loading" in refused.reject_reason
            )

            release.set()
            await asyncio.to_thread(settlement.warm_up().join)
            assert (await run.order("BUY", 5)).status is OrderStatus.FILLED
            assert run.ledger.has_history
    finally:
        release.set()
        settlement.warm_up.cache_clear()


async def test_a_fill_that_comes_while_the_calendars_load_is_dated_once_they_have(tmp_path, monkeypatch):
    clock = ManualClock(FRIDAY)
    async with Run(tmp_path, clock, cash_account(clock, initial_positions={"AAPL": (100, 90)})) as run:
        assert run.ledger.spendable("cash") is not None
        release, loaded = threading.Event(), threading.Event()

        def load() -> None:
            release.wait(10)
            loaded.set()

        monkeypatch.setattr(settlement, "_LOADED", loaded)
        monkeypatch.setattr(settlement, "_load_calendars", load)
        settlement.warm_up.cache_clear()
        try:
            # As an adapter reports a sale made at the broker: undated, the calendars not in yet.
            sale = Fill(
                fill_id="X-1",
                account="cash",
                symbol="AAPL",
                side="SELL",
                quantity=100,
                price=100,
                timestamp=FRIDAY,
            )
            run.ledger.add_fill("cash", sale)
            assert run.ledger.spendable("cash") is None
            refused = await run.order("BUY", 1)
            assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
            assert "the settlement calendars that date its fills are still loading" in refused.reject_reason

            release.set()
            await asyncio.to_thread(settlement.warm_up().join)
            funds = run.ledger.spendable("cash")
            assert funds is not None and funds.incoming == ((date(2025, 8, 25), D(10_000)),)
        finally:
            release.set()
            settlement.warm_up.cache_clear()
