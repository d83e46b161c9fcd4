"""P&L of a holding: unrealised, realised today and the day's against the previous close; the
book's count of today's fills; the broker's figures beside ours."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from brokers.book import Book
from brokers.fx import FxRates, Money
from brokers.instruments import Instrument
from brokers.models import AssetClass, Fill, Position, Side
from brokers.pnl import DayActivity, PnlSource, cents, leg_pnl

D = Decimal


def position(quantity="10", avg="100", last="110", **extra) -> Position:
    return Position(
        symbol=extra.pop("symbol", "AAPL"),
        quantity=D(quantity),
        avg_price=D(avg),
        last_price=None if last is None else D(last),
        account=extra.pop("account", "acct"),
        **extra,
    )


class Prices:
    """What the book asks of a price source: no prices, every account in USD."""

    def last_price(self, instrument, account):
        raise KeyError(instrument)

    def get(self, name):
        raise KeyError(name)


def fill(fill_id: str, side: Side, quantity: str, price: str, commission: str = "0", **extra) -> Fill:
    return Fill(
        fill_id=fill_id,
        account="acct",
        symbol=extra.pop("symbol", "AAPL"),
        side=side,
        quantity=D(quantity),
        price=D(price),
        commission=D(commission),
        **extra,
    )


def book(today=lambda: date(2026, 12, 5)) -> Book:
    return Book(Prices(), None, "USD", today=today)


# -- one holding --------------------------------------------------------------------------


def test_carried_holding_counts_the_day_from_the_previous_close():
    pnl = leg_pnl(position(previous_close="105"), None)
    assert pnl.unrealized(D(110)) == 100
    assert pnl.day_pnl(D(110)) == 50 and pnl.day_source is PnlSource.FILLS
    assert pnl.realized_today == 0


def test_carried_holding_without_a_previous_close_has_no_day_pnl():
    pnl = leg_pnl(position(), None)
    assert pnl.day_pnl(D(110)) is None and pnl.day_source is PnlSource.UNKNOWN
    figures = pnl.figures(D(110), FxRates("USD").convert, "USD")
    assert figures.day_pnl.amount is None and figures.day_pnl.missing  # shown as unknown, never 0
    assert figures.unrealized == Money(D(100), "USD")


def test_holding_opened_today_needs_no_previous_close():
    # Bought 10 at 100 today, commission 1: the day is what the mark says less what it cost.
    activity = DayActivity(quantity=D(10), cash=D(1000), commission=D(1))
    pnl = leg_pnl(position(), activity)
    assert pnl.day_pnl(D(110)) == 99 and pnl.day_source is PnlSource.FILLS


def test_day_pnl_with_a_carried_part_and_todays_trades():
    # 10 held at the open (close 105), bought 5 more at 108 today: now 15.
    activity = DayActivity(quantity=D(5), cash=D(540))
    pnl = leg_pnl(position("15", previous_close="105"), activity)
    assert pnl.day_pnl(D(110)) == 10 * 5 + 5 * 2


def test_multiplier_counts_in_every_figure():
    activity = DayActivity(quantity=D(1), cash=D("5.5") * 100)
    pnl = leg_pnl(
        position("3", avg="5", last="6", previous_close="5.2", asset_class=AssetClass.FUTURE, multiplier=100),
        activity,
    )
    assert pnl.market_value(D(6)) == 1800 and pnl.unrealized(D(6)) == 300
    # 2 contracts held at the open from 5.2, one bought at 5.5: (0.8 x 2 + 0.5) x 100
    assert pnl.day_pnl(D(6)) == 210


def test_the_brokers_figures_win_and_ours_stay_beside_them():
    activity = DayActivity(realized=D(7))
    pnl = leg_pnl(position(previous_close="105", day_pnl="40", realized_today="12"), activity)
    assert pnl.day_source is PnlSource.BROKER and pnl.day_pnl(D(110)) == 40
    assert pnl.fills_day_pnl(D(110)) == 50  # ours, from the previous close
    assert pnl.realized_source is PnlSource.BROKER and pnl.realized_today == 12
    assert pnl.fills_realized_today == 7
    # The broker's day P&L moves with the mark from the price it was counted at.
    assert pnl.day_pnl(D(111)) == 50


def test_a_holding_closed_today_keeps_its_day():
    sold = DayActivity(quantity=D(-10), cash=D(-1100), realized=D(100))
    closed = leg_pnl(position("0", avg="0", last=None, previous_close="105"), sold)
    assert closed.day_pnl(D(0)) == 50 and closed.realized_today == 100  # sold 10 at 110, closed at 105
    assert leg_pnl(position("0", avg="0", last=None), sold).day_pnl(D(0)) is None


def test_cents_round_half_even_and_keep_marks():
    assert cents(Money(D("1.005"), "USD", stale=True)) == Money(D("1.00"), "USD", stale=True)
    assert cents(Money(D("1.015"), "USD")).amount == D("1.02")
    assert cents(Money(None, "USD", missing=True)).amount is None


# -- the book -----------------------------------------------------------------------------


def test_book_counts_todays_fills_and_realises_against_the_average_price():
    b = book()
    b.seed("acct", [position("10", avg="100", previous_close="105")])
    b.add_fill("acct", fill("f1", Side.BUY, "10", "110", commission="1"))
    b.add_fill("acct", fill("f2", Side.SELL, "5", "120", commission="1"))
    day = b.day_activity("acct", Instrument.stock("AAPL"))
    assert day is not None
    assert (day.quantity, day.cash, day.commission) == (5, 1100 - 600, 2)
    # Average price 105 after the buy: 5 sold at 120 realise 75, less both commissions.
    assert day.realized == 73 and day.previous_close == 105
    pnl = leg_pnl(position("15", avg="105", previous_close="105"), day)
    # 10 from 105 to 120, 10 bought at 110 and 5 sold at 120, at 120: 150 + 100 - 2.
    assert pnl.day_pnl(D(120)) == 10 * 15 + (10 * 10 - 0) - 2


def test_book_fills_are_counted_once_and_a_new_day_starts_from_nothing():
    day = [date(2026, 12, 5)]
    b = book(today=lambda: day[0])
    b.seed("acct", [position("10", avg="100")])
    b.add_fill("acct", fill("f1", Side.SELL, "10", "110"))
    b.add_fill("acct", fill("f1", Side.SELL, "10", "110"))
    closed = b.closed_today("acct")
    assert list(closed) == [Instrument.stock("AAPL")] and closed[Instrument.stock("AAPL")].realized == 100
    assert b.day_trades().closed_today("acct") == closed
    # Next day: nothing traded yet.
    day[0] = date(2026, 12, 6)
    assert b.closed_today("acct") == {}
    assert b.day_activity("acct", Instrument.stock("AAPL")) == DayActivity()


def test_a_short_covered_today_realises_against_its_average():
    b = book()
    b.seed("acct", [position("-10", avg="50", previous_close="48")])
    b.add_fill("acct", fill("f1", Side.BUY, "4", "45"))
    day = b.day_activity("acct", Instrument.stock("AAPL"))
    assert day is not None and day.realized == 20
    pnl = leg_pnl(position("-6", avg="50", previous_close="48"), day)
    # -10 from 48 to 46 is +20; 4 bought at 45 worth 46 is +4.
    assert pnl.day_pnl(D(46)) == 24


def test_a_fill_after_midnight_counts_in_the_new_day_not_the_one_before():
    day = [date(2026, 12, 5)]
    b = book(today=lambda: day[0])
    b.seed("acct", [position("10", avg="100")])
    b.add_fill("acct", fill("f1", Side.SELL, "4", "110"))
    assert b.day_activity("acct", Instrument.stock("AAPL")).realized == 40
    # Past midnight, and the first the book hears of the new day is a fill: it is the new day's.
    day[0] = date(2026, 12, 6)
    b.add_fill("acct", fill("f2", Side.SELL, "6", "120"))
    activity = b.day_activity("acct", Instrument.stock("AAPL"))
    assert activity is not None
    assert (activity.quantity, activity.cash, activity.realized) == (-6, -720, 120)
