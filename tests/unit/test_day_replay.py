"""Realised today across a restart: today's fills are read back from the journal into the book,
counted once however often a broker reports them again, and a restart on the next day starts
from nothing. On the paper broker, restarted on the same journal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from support import until

from brokers import book as book_module
from brokers.book import Book
from brokers.day_replay import day_start, read_day_fills
from brokers.events import FillEvent
from brokers.execution import ExecutionService
from brokers.instruments import Instrument
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Fill, Order, OrderRequest, OrderStatus, Position, Side
from brokers.pnl import DayActivity, PnlSource, leg_pnl
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal
AAPL = Instrument.stock("AAPL")
MSFT = Instrument.stock("MSFT")


class Run:
    """One start of the execution layer on the journal in ``root``, at the paper account ``broker``."""

    def __init__(self, root, broker: SimBroker, *, loss_limit: bool = False) -> None:
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("paper", broker, default=True)
        self.journal = Journal(root / "journal.sqlite")
        # With a daily loss limit, the day's baselines are kept on disk as well (``DayStore``).
        risk = RiskEngine(RiskLimits(daily_loss_limit=D(1_000_000))) if loss_limit else None
        self.service = ExecutionService(
            self.manager, KillSwitch(root, journal=self.journal, env={}), risk=risk, journal=self.journal
        )

    async def __aenter__(self) -> Run:
        await self.manager.connect_all()
        await self.manager.start()
        await self.service.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stop()
        await self.manager.stop()
        await self.manager.disconnect_all()
        self.journal.close()

    async def trade(self, symbol: str, side: str, quantity: int) -> list[Fill]:
        order = await self.service.submit(
            OrderRequest(symbol=symbol, side=side, quantity=quantity, account="paper")
        )
        assert order.status is OrderStatus.FILLED, order.reject_reason
        return list(order.fills)

    def day(self, instrument: Instrument) -> DayActivity | None:
        return self.service.book.day_activity("paper", instrument)


def paper() -> SimBroker:
    return SimBroker(
        "paper",
        prices={"AAPL": 100, "MSFT": 400},
        initial_positions={"MSFT": (10, 380)},
        commission_per_share="0.01",
    )


async def trade_a_day(
    root, broker: SimBroker, *, loss_limit: bool = False
) -> tuple[DayActivity, DayActivity, list[Fill]]:
    """Buy and sell AAPL (opened and closed today) and part of the MSFT carried in."""
    async with Run(root, broker, loss_limit=loss_limit) as run:
        fills = await run.trade("AAPL", "BUY", 10)
        broker.set_price("AAPL", 105)
        fills += await run.trade("AAPL", "SELL", 10)
        broker.set_price("MSFT", 410)
        fills += await run.trade("MSFT", "SELL", 4)
        aapl, msft = run.day(AAPL), run.day(MSFT)
        assert aapl is not None and msft is not None
        return aapl, msft, fills


@pytest.mark.parametrize("loss_limit", [False, True])
async def test_realised_today_and_the_days_trades_survive_a_restart(tmp_path, loss_limit):
    broker = paper()
    aapl, msft, _ = await trade_a_day(tmp_path, broker, loss_limit=loss_limit)
    # 10 AAPL bought at 100 and sold at 105, 4 MSFT of the 10 at 380 sold at 410, less 0.01 a share.
    assert aapl.realized == D(50) - D("0.20")
    assert msft.realized == D(120) - D("0.04")

    async with Run(tmp_path, broker, loss_limit=loss_limit) as run:
        assert run.day(AAPL) == aapl
        assert run.day(MSFT) == msft
        # The holding closed today still counts, as it did before.
        assert set(run.service.book.closed_today("paper")) == {AAPL}
        assert run.service.book.day_trades().day_activity("paper", MSFT) == msft
        # The day's P&L of what is still held is worked out as before the restart.
        [held] = [p for p in await broker.get_positions() if p.symbol == "MSFT"]
        pnl = leg_pnl(held, run.day(MSFT))
        assert pnl.realized_source is PnlSource.FILLS and pnl.realized_today == msft.realized


async def test_fills_reported_again_after_a_restart_are_not_counted_twice(tmp_path):
    broker = paper()
    aapl, msft, fills = await trade_a_day(tmp_path, broker)
    async with Run(tmp_path, broker) as run:
        for fill in fills:
            run.service.apply_event(FillEvent("paper", fill))
        assert (run.day(AAPL), run.day(MSFT)) == (aapl, msft)
        assert run.service.book.position("paper", "MSFT") == 6
        assert run.service.book.position("paper", "AAPL") == 0
        # A new fill after the restart adds to the day as it would have.
        await run.trade("MSFT", "SELL", 1)
        after = run.day(MSFT)
        assert after is not None and after.realized == msft.realized + D(30) - D("0.01")
        assert after.quantity == msft.quantity - 1


async def test_a_restart_on_the_next_day_starts_from_nothing(tmp_path, monkeypatch):
    broker = paper()
    await trade_a_day(tmp_path, broker)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    monkeypatch.setattr(book_module, "_utc_today", lambda: tomorrow)
    async with Run(tmp_path, broker) as run:
        assert run.service.book.trading_day() == tomorrow
        msft = run.day(MSFT)
        assert msft is not None and replace(msft, previous_close=None) == DayActivity()
        assert run.service.book.closed_today("paper") == {}
        assert run.service.book.day_trades().activity == {}


async def test_the_read_follows_the_rows_of_the_day(tmp_path):
    """Fills written before the day began are not read back; the journal's fill rows name no
    symbol, which comes from each order's intent."""
    broker = paper()
    _, _, fills = await trade_a_day(tmp_path, broker)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        today = day_start(datetime.now(UTC).date())
        read = read_day_fills(journal, today)
        assert [(f.account, f.instrument, f.fill.fill_id) for f in read] == [
            ("paper", f.instrument, f.fill_id) for f in fills
        ]
        assert [f.fill.side for f in read] == [Side.BUY, Side.SELL, Side.SELL]
        assert read_day_fills(journal, today + timedelta(days=1)) == []
    finally:
        journal.close()


# -- the book's side, without a broker -------------------------------------------------------


class Prices:
    def last_price(self, instrument, account):
        raise KeyError(instrument)

    def get(self, name):
        raise KeyError(name)


DAY = date(2026, 12, 5)


def fill(fill_id: str, side: Side, quantity: str, price: str, commission: str = "0") -> Fill:
    return Fill(
        fill_id=fill_id,
        account="acct",
        symbol="AAPL",
        side=side,
        quantity=D(quantity),
        price=D(price),
        commission=D(commission),
    )


def held(quantity: str, avg: str) -> Position:
    return Position(symbol="AAPL", quantity=D(quantity), avg_price=D(avg), account="acct")


def live_day(opening: tuple[str, str] | None, fills: list[Fill]) -> DayActivity | None:
    """What the book counted from these fills before a restart."""
    b = Book(Prices(), None, "USD", today=lambda: DAY)
    b.seed("acct", [held(*opening)] if opening else [])
    for f in fills:
        b.add_fill("acct", f)
    return b.day_activity("acct", AAPL)


def replayed_day(now: tuple[str, str] | None, fills: list[Fill], *, seed_first: bool) -> DayActivity | None:
    """What a restarted book counts from the broker's position ``now`` and the same fills."""
    b = Book(Prices(), None, "USD", today=lambda: DAY)
    rows = [("acct", AAPL, f) for f in fills]
    if seed_first:
        b.seed("acct", [held(*now)] if now else [])
        assert b.replay_day(DAY, rows) == len(fills)
    else:
        assert b.replay_day(DAY, rows) == len(fills)
        assert b.day_activity("acct", AAPL) is None  # waits for the account's positions
        b.seed("acct", [held(*now)] if now else [])
    return b.day_activity("acct", AAPL)


@pytest.mark.parametrize("seed_first", [True, False])
@pytest.mark.parametrize(
    ("opening", "now", "fills"),
    [
        # Opened and closed today.
        (None, None, [fill("a", Side.BUY, "10", "100", "1"), fill("b", Side.SELL, "10", "104", "1")]),
        # Added to a holding carried in, then part sold: the cost at the open is worked back
        # from the broker's average now (10 at 100 and 10 at 110: 105).
        (("10", "100"), ("15", "105"), [fill("a", Side.BUY, "10", "110"), fill("b", Side.SELL, "5", "120")]),
        # Part of a short covered.
        (("-10", "50"), ("-6", "50"), [fill("a", Side.BUY, "4", "45", "0.5")]),
        # Opened today from nothing, then flipped: no cost at the open is needed.
        (None, ("-5", "90"), [fill("a", Side.BUY, "5", "100"), fill("b", Side.SELL, "10", "90")]),
    ],
)
def test_a_restarted_book_counts_the_day_as_the_running_one_did(opening, now, fills, seed_first):
    assert replayed_day(now, fills, seed_first=seed_first) == live_day(opening, fills)


def test_a_holding_carried_in_and_closed_today_has_an_unknown_realised_figure():
    """Its cost at the open went with the position: unknown, never a made-up figure."""
    fills = [fill("a", Side.SELL, "10", "110")]
    assert live_day(("10", "100"), fills) == DayActivity(D(-10), D(-1100), D(0), D(100))
    day = replayed_day(None, fills, seed_first=True)
    assert day == DayActivity(D(-10), D(-1100), D(0), None)
    pnl = leg_pnl(Position(symbol="AAPL", quantity=D(0), account="acct"), day)
    assert pnl.realized_today is None and pnl.realized_source is PnlSource.UNKNOWN


def test_replayed_fill_ids_are_known_and_another_days_fills_are_left_out():
    b = Book(Prices(), None, "USD", today=lambda: DAY)
    b.seed("acct", [held("10", "100")])
    assert b.replay_day(DAY - timedelta(days=1), [("acct", AAPL, fill("old", Side.SELL, "5", "110"))]) == 0
    assert b.replay_day(DAY, [("acct", AAPL, fill("a", Side.SELL, "5", "110"))]) == 1
    assert not b.add_fill("acct", fill("a", Side.SELL, "5", "110"))
    assert b.position("acct", AAPL) == 10  # the broker's quantity, which holds the fill already
    day = b.day_activity("acct", AAPL)
    assert day is not None and day.realized == 50


async def test_a_fill_today_of_an_order_placed_before_the_day_is_read_back(tmp_path):
    """A good-till-cancelled order placed on an earlier day: its intent is found by its id."""
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        order = Order.for_request(
            OrderRequest(symbol="MSFT", side="SELL", quantity=3, account="paper", time_in_force="GTC"),
            "paper",
        )
        journal.record_intent(order)
        [intent] = journal.events(kinds=["intent"])
        day_began = intent.time + timedelta(microseconds=1)
        await until(lambda: datetime.now(UTC) > day_began)
        sold = Fill(
            fill_id="x1",
            account="paper",
            symbol="MSFT",
            side=Side.SELL,
            quantity=D(3),
            price=D(410),
            client_order_id=order.client_order_id,
        )
        order.take_fill(sold)
        journal.record_order("fill", order, fills=[sold])
        [read] = read_day_fills(journal, day_began)
        assert (read.account, read.instrument, read.fill.side, read.fill.quantity) == (
            "paper",
            MSFT,
            Side.SELL,
            3,
        )
        assert read.fill.fill_id == "x1" and read.fill.client_order_id == order.client_order_id
    finally:
        journal.close()
