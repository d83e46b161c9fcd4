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
from brokers.book import Book, DayOpening
from brokers.day_replay import DAY_OPEN, day_start, read_day, read_day_fills
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

    async def trade(self, symbol: str, side: str, quantity: int, account: str = "paper") -> list[Fill]:
        order = await self.service.submit(
            OrderRequest(symbol=symbol, side=side, quantity=quantity, account=account)
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
    """With no opening recorded for the day, its cost at the open went with the position:
    unknown, never a made-up figure."""
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


# -- the holdings at the open, recorded once a day ---------------------------------------------


def openings_in(root) -> list[tuple[str | None, dict[str, object]]]:
    """The ``DAY_OPEN`` rows of the journal in ``root``: account and data, oldest first."""
    journal = Journal(root / "journal.sqlite")
    try:
        return [(event.account, event.data) for event in journal.events(kinds=[DAY_OPEN])]
    finally:
        journal.close()


async def close_a_holding_carried_in(root, broker: SimBroker, sold: int) -> DayActivity:
    """Sell ``sold`` of the 10 MSFT carried in (10: closed; more: turned short)."""
    async with Run(root, broker) as run:
        broker.set_price("MSFT", 410)
        await run.trade("MSFT", "SELL", sold)
        msft = run.day(MSFT)
        assert msft is not None
        return msft


@pytest.mark.parametrize(
    ("sold", "realized"),
    [
        # Closed: 10 of the 10 at 380 sold at 410, less 0.01 a share.
        (10, D(300) - D("0.10")),
        # Turned through nothing: 10 closed against 380, 5 sold short at 410.
        (15, D(300) - D("0.15")),
    ],
)
async def test_a_holding_carried_in_and_closed_today_keeps_its_realised_figure_across_a_restart(
    tmp_path, sold, realized
):
    broker = paper()
    before = await close_a_holding_carried_in(tmp_path, broker, sold)
    assert before.realized == realized
    async with Run(tmp_path, broker) as run:
        assert run.day(MSFT) == before
        assert run.service.book.position("paper", MSFT) == 10 - sold
        if sold == 10:
            assert set(run.service.book.closed_today("paper")) == {MSFT}
        # A trade after the restart adds to it as it would have.
        await run.trade("AAPL", "BUY", 1)
        assert run.day(MSFT) == before
    # And again: the opening recorded at the first start is read back each time.
    async with Run(tmp_path, broker) as run:
        assert run.day(MSFT) == before


async def test_the_opening_is_written_once_per_account_and_day_with_only_what_was_held(tmp_path):
    """Before the first fill of the day at each account: a day without one needs no opening."""
    first = paper()
    second = SimBroker("second", prices={"AAPL": 100}, initial_positions={"AAPL": ("2.5", "90.10")})
    async with Run(tmp_path, first) as run:
        await run.service.reconcile()
    assert openings_in(tmp_path) == []
    for _ in range(3):
        async with Run(tmp_path, first) as run:
            run.manager.add_broker("second", second)
            await run.manager.connect("second")
            # The account connected late: its positions are read at its resync.
            await until(lambda: run.service.book.position("second", AAPL) >= D("2.5"))
            await run.trade("AAPL", "BUY", 3)  # opened today: not in the opening
            await run.trade("MSFT", "SELL", 1)
            await run.trade("AAPL", "BUY", 1, account="second")
            await run.service.reconcile()
    today = datetime.now(UTC).date().isoformat()
    rows = openings_in(tmp_path)
    assert sorted(rows, key=lambda row: str(row[0])) == [
        ("paper", {"day": today, "holdings": {"MSFT": ["10", "380", "400"]}}),
        ("second", {"day": today, "holdings": {"AAPL": ["2.5", "90.10", "100"]}}),
    ]


async def test_a_restart_on_the_next_day_does_not_use_the_days_before_opening(tmp_path, monkeypatch):
    broker = paper()
    await close_a_holding_carried_in(tmp_path, broker, 4)
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)
    monkeypatch.setattr(book_module, "_utc_today", lambda: tomorrow)
    async with Run(tmp_path, broker) as run:
        msft = run.day(MSFT)
        assert msft is not None and replace(msft, previous_close=None) == DayActivity()
        await run.trade("MSFT", "SELL", 1)
        msft = run.day(MSFT)
        assert msft is not None and msft.realized == D(30) - D("0.01")
    # The next day's opening is what was held as it began; the day before's is not read for it.
    assert [data for _, data in openings_in(tmp_path)] == [
        {"day": today.isoformat(), "holdings": {"MSFT": ["10", "380", "400"]}},
        {"day": tomorrow.isoformat(), "holdings": {"MSFT": ["6", "380", "400"]}},
    ]
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        assert read_day(journal, day_start(today), tomorrow).openings == {
            "paper": {MSFT: DayOpening(D(6), D(380), D(400))}
        }
        assert read_day(journal, day_start(today), today).openings == {
            "paper": {MSFT: DayOpening(D(10), D(380), D(400))}
        }
    finally:
        journal.close()


class Openings:
    """The openings a book writes, as a list."""

    def __init__(self) -> None:
        self.written: list[tuple[str, date, dict[Instrument, DayOpening]]] = []

    def record_opening(self, account, day, holdings) -> None:
        self.written.append((account, day, dict(holdings)))


def restarted_book(day: date = DAY) -> tuple[Book, Openings]:
    b = Book(Prices(), None, "USD", today=lambda: day)
    b.openings = Openings()
    return b, b.openings


def test_a_book_running_as_the_day_begins_writes_what_it_holds():
    days = [DAY]
    b = Book(Prices(), None, "USD", today=lambda: days[0])
    b.openings = written = Openings()
    assert b.replay_day(DAY, []) == 0
    b.seed("acct", [held("10", "100")])
    assert written.written == []  # no fill yet
    b.add_fill("acct", fill("a", Side.BUY, "10", "110"))
    b.add_fill("acct", fill("b", Side.BUY, "5", "110"))
    assert written.written == [("acct", DAY, {AAPL: DayOpening(D(10), D(100))})]
    days[0] = DAY + timedelta(days=1)
    assert b.day_activity("acct", AAPL) == DayActivity()
    # Sold the next day: 15 of the 20 at 100 and 10 at 110, held through the change of day.
    b.add_fill("acct", fill("c", Side.SELL, "25", "120"))
    assert written.written[1:] == [("acct", days[0], {AAPL: DayOpening(D(25), D(106))})]
    day = b.day_activity("acct", AAPL)
    assert day is not None and day.realized == 350


def test_a_restart_before_the_first_read_of_the_day_works_the_opening_back():
    """Today's fills came before this start's first read of the account: the opening is what is
    held now less them, at the cost worked back, and unknown where it cannot be."""
    b, written = restarted_book()
    fills = [fill("a", Side.BUY, "10", "110"), fill("b", Side.SELL, "5", "120")]
    b.replay_day(DAY, [("acct", AAPL, f) for f in fills])
    b.seed("acct", [held("15", "105")])
    b.add_fill("acct", fill("c", Side.SELL, "15", "100"))
    assert written.written == [("acct", DAY, {AAPL: DayOpening(D(10), D(100))})]

    b, written = restarted_book()
    b.seed("acct", [])
    b.replay_day(DAY, [("acct", AAPL, fill("a", Side.SELL, "10", "110"))])
    b.add_fill("acct", fill("b", Side.BUY, "1", "100"))
    assert written.written == [("acct", DAY, {AAPL: DayOpening(D(10), None)})]


def test_no_opening_is_written_while_the_days_fills_are_not_known():
    """Today's fills could not be read back: the broker's quantity may hold some of them."""
    b, written = restarted_book()
    b.seed("acct", [held("10", "100")])
    b.add_fill("acct", fill("a", Side.SELL, "5", "110"))
    assert written.written == []


def test_a_recorded_opening_is_used_only_where_the_fills_account_for_the_change():
    """A holding the opening does not name opened at nothing; one whose quantity the day's fills
    do not lead from the opening to now keeps an unknown figure."""
    sold = [("acct", AAPL, fill("a", Side.SELL, "10", "110"))]
    b, written = restarted_book()
    b.seed("acct", [])
    b.replay_day(DAY, sold, {"acct": {AAPL: DayOpening(D(10), D(100))}})
    b.add_fill("acct", fill("b", Side.BUY, "1", "100"))
    assert written.written == []  # read back: not written again
    day = b.day_activity("acct", AAPL)
    assert day is not None and day.realized == 100

    b, _ = restarted_book()
    b.seed("acct", [])
    b.replay_day(DAY, sold, {"acct": {AAPL: DayOpening(D(8), D(100))}})
    day = b.day_activity("acct", AAPL)
    assert day is not None and day.realized is None

    b, _ = restarted_book()
    b.seed("acct", [])
    b.replay_day(DAY, sold, {"acct": {}})
    day = b.day_activity("acct", AAPL)
    assert day is not None and day.realized is None


def test_an_opening_row_that_cannot_be_read_is_left_out(tmp_path, caplog):
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        today = datetime.now(UTC).date()
        journal.record(DAY_OPEN, account="a", data={"day": today.isoformat(), "holdings": {"AAPL": "10"}})
        journal.record(
            DAY_OPEN, account="b", data={"day": today.isoformat(), "holdings": {"AAPL": ["x", None, None]}}
        )
        journal.record(
            DAY_OPEN, account="c", data={"day": today.isoformat(), "holdings": {"AAPL": ["3", None, "9.5"]}}
        )
        journal.record(DAY_OPEN, account="c", data={"day": today.isoformat(), "holdings": {}})
        read = read_day(journal, day_start(today), today)
        # The first row of an account stands; a cost not known stays unknown.
        assert read.openings == {"c": {AAPL: DayOpening(D(3), None, D("9.5"))}}
        assert caplog.text.count("the holdings at the open could not be read back") == 2
    finally:
        journal.close()


async def test_a_paper_account_started_afresh_holds_nothing_from_before_it(tmp_path):
    """The paper broker keeps its orders and fills in one process only: a new one (the demo run
    again) starts from its own positions, its venue's ids start over, and what was journaled
    before it is neither counted nor shown as working."""
    first = paper()
    async with Run(tmp_path, first) as run:
        await run.trade("MSFT", "SELL", 4)
        resting = await run.service.submit(
            OrderRequest(symbol="AAPL", side="BUY", quantity=5, order_type="LIMIT", limit_price=90)
        )
        assert resting.status is OrderStatus.ACCEPTED

    afresh = paper()
    async with Run(tmp_path, afresh) as run:
        # Nothing of the day before this account began: its MSFT is the 10 it starts with.
        assert run.day(MSFT) is None or run.day(MSFT).realized == 0
        # The new venue's first fill has the id the old one's had: it still moves the position.
        [fill] = await run.trade("MSFT", "SELL", 1)
        assert fill.fill_id == "SIM-000001-1"
        assert run.service.book.position("paper", "MSFT") == 9
        assert run.day(MSFT).realized == D(20) - D("0.01")
        # Its second order takes the broker id the resting one had: never taken for it.
        await run.trade("AAPL", "BUY", 1)
        assert run.service.orders()[-1].broker_order_id == resting.broker_order_id
        report = await run.service.reconcile()  # as the runtime does once connected
        gone = run.service.get_order(resting.client_order_id)
        assert gone is not None and gone.status is OrderStatus.CANCELLED and not gone.fills
        assert gone in report.resolved and report.unresolved == {}
        assert "started afresh" in (gone.reject_reason or "")
        assert run.service.book.open_orders("paper") == 0
    with Journal(tmp_path / "journal.sqlite") as journal:
        assert journal.orders()[resting.client_order_id].status is OrderStatus.CANCELLED
