"""The order ticket while the trader types: the symbol's quote and its state, where the order
would go and what it would cost in the account's and the base currency; an unknown symbol or
one with no price said by the symbol box, not by a risk code; an INR share sent to the INR
account."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from console_support import console, settled, submit, wait_for
from quote_support import feed
from textual.widgets import Static

from brokers.instruments import Instrument
from brokers.models import OrderRequest, OrderStatus
from brokers.quotes import Quote, QuoteState
from console.tui.market import estimate_price
from console.tui.widgets.order_entry import FieldBox

WIDE = (160, 48)


def ticket_text(app) -> str:
    return str(app.query_one("#order-quote", Static).render())


def symbol_message(app) -> tuple[str, str, bool]:
    """What the symbol box says under the input: its error, its note, and whether it is red."""
    box = app.query_one("#field-symbol", FieldBox)

    def shown(kind: str) -> str:
        message = box.query_one(f".field-{kind}", Static)
        return str(message.render()) if message.has_class("-shown") else ""

    return shown("error"), shown("note"), box.has_class("-invalid")


async def typed(app, pilot, **values: str) -> None:
    app.order_entry.set_values(**values)
    await pilot.pause()
    app.show_quotes()
    await pilot.pause()


async def test_the_ticket_shows_bid_ask_last_spread_and_the_estimate_as_you_type():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        await typed(app, pilot, symbol="AAPL")
        board = app.quotes.board
        # The ticket asks the board for what it shows, under its own name.
        assert Instrument.stock("AAPL") in board.wanted
        feed(app, "AAPL", bid="227.45", ask="227.55", last="227.50", bid_size="300", ask_size="200")
        app.show_quotes()
        await pilot.pause()
        text = ticket_text(app)
        for part in (
            "bid 227.45 × 300",
            "ask 227.55 × 200",
            "last 227.50",
            "spread 0.10",
            "LIVE",
            "paper-us",
        ):
            assert part in text, (part, text)
        # No quantity yet: nothing to estimate.
        assert "est." not in text
        await typed(app, pilot, quantity="10")
        # A market buy pays the ask.
        assert "est. 2,275.50 USD at ask" in ticket_text(app)
        await typed(app, pilot, side="SELL")
        assert "est. 2,274.50 USD at bid" in ticket_text(app)
        await typed(app, pilot, type="LIMIT")
        await typed(app, pilot, limit="220")
        assert "est. 2,200.00 USD at limit" in ticket_text(app)
        # The quote moves: the ticket follows at the next tick.
        feed(app, "AAPL", bid="228.00", ask="228.10", last="228.05")
        app.show_quotes()
        await pilot.pause()
        assert "last 228.05" in ticket_text(app)
        # The summary carries the limit price the trader typed.
        assert "SELL 10 AAPL LIMIT @ 220" in str(app.query_one("#order-status", Static).render())


async def test_a_quote_that_is_not_live_is_never_shown_as_live():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        await typed(app, pilot, symbol="MSFT", quantity="5")
        feed(app, "MSFT", bid="415.10", ask="415.30", last="415.20", state=QuoteState.DELAYED)
        app.show_quotes()
        await pilot.pause()
        text = ticket_text(app)
        assert "DELAYED" in text and "LIVE" not in text
        feed(app, "MSFT", last="415.25", state=QuoteState.SNAPSHOT)
        app.show_quotes()
        await pilot.pause()
        text = ticket_text(app)
        assert "SNAPSHOT" in text and "LIVE" not in text
        # Older than the stale setting: STALE, and an estimate on it says so.
        feed(app, "MSFT", last="415.40", age=3600)
        app.order_entry.show_quote()
        await pilot.pause()
        text = ticket_text(app)
        assert "STALE" in text and "LIVE" not in text
        assert "(stale)" in text


async def test_an_inr_share_is_quoted_estimated_and_sent_at_the_inr_account():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        await typed(app, pilot, symbol="INFY", quantity="10", type="LIMIT")
        await typed(app, pilot, limit="1800")
        feed(app, "INFY", bid="1875.00", ask="1876.00", last="1875.40", source="paper-in", currency="INR")
        app.show_quotes()
        await pilot.pause()
        text = ticket_text(app)
        assert "→ paper-in" in text
        # In the account's currency, and in the base currency at the configured USDINR 84.10.
        assert "est. 18,000.00 INR at limit" in text
        assert "≈ 214.03 USD" in text
        assert "auto-route: paper-in" in str(app.query_one("#order-status", Static).render())
        app.order_entry.action_submit()
        await wait_for(lambda: len(app.runtime.execution.orders()) == 1, pilot)
        order = app.runtime.execution.orders()[0]
        assert order.account == "paper-in"
        assert order.reject_code is None
        assert order.status is not OrderStatus.REJECTED


async def test_an_unknown_symbol_is_said_by_the_symbol_box_and_nothing_is_sent():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        await submit(app, pilot, symbol="ZZZZ", quantity="10")
        await pilot.pause()
        assert symbol_message(app) == ("unknown symbol", "", True)
        assert "unknown symbol" in ticket_text(app)
        assert app.runtime.execution.orders() == []
        assert app.blotter.orders == {}
        assert app.focused is app.query_one("#order-symbol")


async def test_a_listed_symbol_with_no_quote_yet_says_so_without_stopping_a_limit_order():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        # Listed at paper-in, not quoted yet.
        await typed(app, pilot, symbol="HDFCBANK", quantity="2", type="LIMIT")
        await typed(app, pilot, limit="1700")
        assert symbol_message(app) == ("", "no price yet", False)
        assert "no price yet" in ticket_text(app)
        assert "est. 3,400.00 INR at limit" in ticket_text(app)
        assert "MAX_NOTIONAL" not in ticket_text(app)
        # The quote arrives: the note goes.
        feed(app, "HDFCBANK", last="1745.25", source="paper-in", currency="INR")
        app.show_quotes()
        await pilot.pause()
        assert symbol_message(app) == ("", "", False)
        app.order_entry.action_submit()
        await wait_for(lambda: len(app.runtime.execution.orders()) == 1, pilot)
        assert app.runtime.execution.orders()[0].account == "paper-in"


async def test_positions_are_asked_of_the_board_under_their_own_name():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        wanted = app.quotes.board.wanted
        for symbol in ("AAPL", "MSFT", "NVDA", "SPY", "INFY", "RELIANCE"):
            assert Instrument.stock(symbol) in wanted, symbol


def test_the_estimate_prices_an_order_as_it_would_trade():
    def order(**fields):
        return OrderRequest(**{"symbol": "AAPL", "quantity": 1, "side": "BUY", **fields})

    def quote(**prices):
        return Quote(Instrument.stock("AAPL"), "a", datetime.now(UTC), **prices)

    book = quote(bid=Decimal(1), ask=Decimal(2), last=Decimal(3))
    assert estimate_price(order(), book) == (Decimal(2), "ask")
    assert estimate_price(order(side="SELL"), book) == (Decimal(1), "bid")
    assert estimate_price(order(order_type="LIMIT", limit_price=5), book) == (Decimal(5), "limit")
    assert estimate_price(order(order_type="STOP_LIMIT", limit_price=5, stop_price=4), book) == (
        Decimal(5),
        "limit",
    )
    assert estimate_price(order(order_type="STOP", stop_price=4), book) == (Decimal(4), "stop")
    assert estimate_price(order(), quote(last=Decimal(3))) == (Decimal(3), "last")
    # A buy with no ask: the last price, else the mid, never the bid.
    assert estimate_price(order(), quote(bid=Decimal(1), last=Decimal(3))) == (Decimal(3), "last")
    assert estimate_price(order(), quote(bid=Decimal(1))) is None
    assert estimate_price(order(), None) is None
