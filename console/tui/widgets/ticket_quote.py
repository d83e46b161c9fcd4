"""The order ticket's market line: bid x size / ask x size, last, spread and the quote's state
for the symbol being typed, then what the order would cost in the account's currency and the
base currency. A quote that is not live says so (DELAYED, SNAPSHOT, STALE) and is never shown
as live."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.widgets import Static

from brokers.quotes import Quote, QuoteState
from console import formatting as fmt
from console.tui.market import UNKNOWN_SYMBOL, Estimate, SymbolLook

STATE_STYLES = {
    QuoteState.LIVE: "green",
    QuoteState.DELAYED: "bold yellow",
    QuoteState.SNAPSHOT: "bold cyan",
    QuoteState.STALE: "bold white on red",
}


SHORT_STATES = {
    QuoteState.LIVE: "LIVE",
    QuoteState.DELAYED: "DELAY",
    QuoteState.SNAPSHOT: "SNAP",
    QuoteState.STALE: "STALE",
}
"""Where a column is narrow: still never a word that reads as live for a quote that is not."""


def state_text(quote: Quote, *, short: bool = False) -> Text:
    word = SHORT_STATES.get(quote.state, quote.state.value) if short else quote.state.value
    return Text(word, style=STATE_STYLES.get(quote.state, ""))


def side_text(price: Decimal | None, size: Decimal | None) -> str:
    if price is None:
        return fmt.DASH
    return f"{fmt.price(price)} × {fmt.quantity(size)}" if size is not None else fmt.price(price)


def book_text(quote: Quote, *, compact: bool = False) -> Text:
    """``bid 227.45 × 300`` and ``ask 227.55 × 200`` on two lines (a ticket pane is narrow); compact, ``227.45×300 / 227.55×200`` (bid first, as
    every quote board writes it)."""
    text = Text()
    if compact:
        for at, (price, size) in enumerate(((quote.bid, quote.bid_size), (quote.ask, quote.ask_size))):
            if at:
                text.append(" / ", style="dim")
            text.append(side_text(price, size).replace(" × ", "×"))
        return text
    text.append("bid ", style="dim")
    text.append(side_text(quote.bid, quote.bid_size))
    text.append("\nask ", style="dim")
    text.append(side_text(quote.ask, quote.ask_size))
    return text


def last_text(quote: Quote) -> Text:
    """``last 227.50  spread 0.10``."""
    text = Text()
    text.append("last ", style="dim")
    text.append(fmt.price(quote.last), style="bold")
    spread = quote.spread
    if spread is not None:
        text.append("  spread ", style="dim")
        text.append(fmt.price(spread))
    return text


def estimate_text(estimate: Estimate, stale: bool) -> Text:
    """``est. 2,275.50 USD at the ask``, then ``≈ 27.06 USD`` when the base currency differs."""
    text = Text()
    text.append("est. ", style="dim")
    text.append(f"{fmt.amount(estimate.amount)} {estimate.currency}", style="bold")
    text.append(f" at {estimate.price_from}", style="dim")
    if stale and estimate.price_from in {"ask", "bid", "last", "mid"}:
        text.append(" (stale)", style="bold yellow")
    base = estimate.base
    if base.currency != estimate.currency:
        text.append("\n≈ ", style="dim")
        text.append_text(fmt.money_text(base))
    return text


class TicketQuote(Static):
    """Under the order form: the symbol's quote and state and where the order would go, then
    the estimate. Narrow terminals get it all on one line."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", markup=False, id=id, classes=classes)

    def show(self, look: SymbolLook | None, estimate: Estimate | None) -> None:
        if look is None:
            self.update("")
            return
        head = Text()
        head.append(look.instrument.label, style="bold")
        quote = look.quote
        parts: list[Text] = []
        one_line = self.screen.has_class("-narrow")
        quoted = quote is not None and look.problem is None
        if quote is not None and quoted:
            head.append("  ")
            head.append_text(state_text(quote))
        else:
            head.append(f"  {look.problem or fmt.DASH}", style="yellow")
        if look.account is not None and look.problem != UNKNOWN_SYMBOL:
            head.append(f"  → {look.account}", style="dim")
        parts.append(head)
        if look.note:
            parts.append(Text(look.note, style="yellow"))
        estimated = (
            [estimate_text(estimate, quote is not None and quote.state is QuoteState.STALE)]
            if estimate is not None
            else []
        )
        book: list[Text] = []
        if quote is not None and quoted:
            # A snapshot of the last price alone has no book to show.
            has_book = quote.bid is not None or quote.ask is not None
            book = (
                [book_text(quote, compact=one_line), last_text(quote)]
                if has_book
                else [Text(), last_text(quote)]
            )
        # One line is cut at the pane's edge: the price and the cost before the book.
        parts += [*book[1:], *estimated, *book[:1]] if one_line else [*book, *estimated]
        text = Text("  " if one_line else "\n").join(part for part in parts if part)
        if one_line:
            text = Text(" ").join(text.split("\n"))
        self.update(text)
