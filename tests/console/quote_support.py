"""Frozen quotes for console tests: the quote board's own loop is stopped (no snapshots from the
paper accounts) and the tests hand it the quotes it shows, as a broker's stream would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brokers.instruments import Instrument
from brokers.quotes import Quote, QuoteState
from console.tui.app import TradingConsoleApp


async def freeze_quotes(app: TradingConsoleApp) -> None:
    """Stop the board asking the accounts for quotes: only what the test feeds is shown."""
    await app.runtime.manager.quotes.stop()


def feed(
    app: TradingConsoleApp,
    symbol: str,
    *,
    bid: str | None = None,
    ask: str | None = None,
    last: str | None = None,
    bid_size: str | None = None,
    ask_size: str | None = None,
    previous_close: str | None = None,
    state: QuoteState = QuoteState.LIVE,
    age: float = 0.0,
    source: str = "paper-us",
    currency: str | None = None,
) -> Quote:
    """Hand the board one quote, ``age`` seconds old (made now: fresh until the stale setting)."""

    def number(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    quote = Quote(
        Instrument.stock(symbol, currency),
        source,
        datetime.now(UTC) - timedelta(seconds=age),
        bid=number(bid),
        ask=number(ask),
        last=number(last),
        bid_size=number(bid_size),
        ask_size=number(ask_size),
        previous_close=number(previous_close),
        state=state,
    )
    app.runtime.manager.quotes.receive(quote)
    return quote
