"""Fixed quotes for console tests: the screen's quote board (``console_support.console`` gives it
one on the frozen clock that is never started) gets the quotes a test hands it, as a broker's
stream would."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from console_support import FROZEN

from brokers.instruments import Instrument
from brokers.quotes import Quote, QuoteState
from console.tui.app import TradingConsoleApp


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
    """Hand the screen's board one quote, ``age`` seconds old by the frozen clock."""

    def number(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    quote = Quote(
        Instrument.stock(symbol, currency),
        source,
        FROZEN - timedelta(seconds=age),
        bid=number(bid),
        ask=number(ask),
        last=number(last),
        bid_size=number(bid_size),
        ask_size=number(ask_size),
        previous_close=number(previous_close),
        state=state,
    )
    app.quotes.board.pin(quote.instrument, source)
    app.quotes.board.receive(quote)
    return quote
