"""The watchlist: a row per symbol with last, change, change %, bid / ask, the quote's state and
an intraday sparkline.

Symbols come from ``[ui] watchlist``; ``a`` adds one (typed in the box that opens), ``delete``
removes the selected row, and the pane says so with ``WatchlistPane.Changed``. What the pane
wants quoted goes to the quote board under the owner ``watchlist``; each symbol is quoted from
the account an order for it would reach. Rows repaint only from the app's quote tick
(``show_quotes``, at most ten times a second, for the rows whose quote changed); every quote
that arrives, though, is kept for the sparkline, up to ``history`` prices per symbol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Sparkline, Static

from brokers.instruments import Instrument
from brokers.quotes import Quote, QuoteState
from console import formatting as fmt
from console.tui.market import Market
from console.tui.widgets.ticket_quote import state_text

QUOTE_OWNER = "watchlist"
HISTORY = 240
"""Prices kept per symbol for its sparkline: the newest ones."""

_COLUMNS = (
    ("wl-symbol", "Symbol"),
    ("wl-last", "Last"),
    ("wl-chg", "Chg"),
    ("wl-pct", "Chg %"),
    ("wl-bidask", "Bid / Ask"),
    ("wl-state", "Quote"),
    ("wl-spark", "Today"),
)


@dataclass(slots=True)
class _Row:
    symbol: str
    instrument: Instrument | None
    box: Horizontal
    cells: dict[str, Static]
    spark: Sparkline
    prices: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    shown: tuple[object, ...] | None = None


def _right(value: str | Text) -> Text:
    text = value if isinstance(value, Text) else Text(value)
    text.justify = "right"
    return text


class WatchlistPane(Vertical, can_focus=True):
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("a,plus,insert", "add", "Add symbol"),
        Binding("delete,d,minus", "remove", "Remove symbol"),
    ]

    class Changed(Message):
        """The trader added or removed a symbol: ``symbols`` is the whole list now."""

        def __init__(self, symbols: tuple[str, ...]) -> None:
            super().__init__()
            self.symbols = symbols

    def __init__(
        self,
        symbols: Iterable[str] = (),
        *,
        market: Market | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.market = market
        self._initial = list(dict.fromkeys(symbol.strip().upper() for symbol in symbols))
        self._rows: dict[str, _Row] = {}
        self._by_instrument: dict[Instrument, _Row] = {}
        self.selected = 0

    # -- building ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="watchlist-header", classes="wl-row"):
            for cell, title in _COLUMNS:
                text = _right(title) if cell in {"wl-last", "wl-chg", "wl-pct"} else title
                yield Static(text, classes=f"wl-cell {cell}")
        yield VerticalScroll(id="watchlist-rows", can_focus=False)
        yield Input(placeholder="symbol to add (enter), esc to close", id="watchlist-add", compact=True)
        yield Static("", id="watchlist-empty", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Watchlist"
        self.query_one("#watchlist-add", Input).display = False
        if self.market is not None:
            self.market.board.add_listener(self._on_quote)
        rows = [self._build(symbol) for symbol in self._initial]
        self.query_one("#watchlist-rows", VerticalScroll).mount_all([row.box for row in rows])
        self._want()
        self._select(0)
        self.show_all()

    def on_unmount(self) -> None:
        if self.market is not None:
            self.market.board.remove_listener(self._on_quote)

    def _build(self, symbol: str) -> _Row:
        cells = {cell: Static("", classes=f"wl-cell {cell}") for cell, _ in _COLUMNS[:-1]}
        spark = Sparkline([], classes="wl-cell wl-spark")
        box = Horizontal(*cells.values(), spark, classes="wl-row")
        look = self.market.look_up(symbol) if self.market is not None else None
        row = _Row(symbol, look.instrument if look is not None else None, box, cells, spark)
        self._rows[symbol] = row
        if row.instrument is not None:
            self._by_instrument[row.instrument] = row
        return row

    def _want(self) -> None:
        if self.market is not None:
            self.market.board.want(QUOTE_OWNER, tuple(self._by_instrument))

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._rows)

    # -- quotes ------------------------------------------------------------------------------
    def _on_quote(self, quote: Quote) -> None:
        # Every quote, as it arrives: keep its price for the sparkline when it moved (a quote
        # that changes only the bid or a size would draw a flat run); repainting waits.
        row = self._by_instrument.get(quote.instrument)
        if row is not None:
            price = quote.price
            if price is not None and (not row.prices or row.prices[-1] != float(price)):
                row.prices.append(float(price))

    def show_quotes(self, changed: set[Instrument]) -> None:
        """Repaint the rows whose quote changed (the app calls this from its quote tick)."""
        if not self.is_attached:
            return  # the app is closing: a last tick has nothing to paint
        for instrument in changed:
            row = self._by_instrument.get(instrument)
            if row is not None:
                self._show(row)

    def show_all(self) -> None:
        """Repaint every row that needs it: a quote turns STALE with no new one arriving."""
        if not self.is_attached:
            return
        for row in self._rows.values():
            self._show(row)
        self._show_empty()

    def _show(self, row: _Row) -> None:
        market = self.market
        quote = market.board.quote(row.instrument) if market is not None and row.instrument else None
        narrow = self.screen.has_class("-narrow")
        shown = (quote, len(row.prices), row.prices[-1] if row.prices else None, narrow)
        if shown == row.shown:
            return
        row.shown = shown
        cells = row.cells
        cells["wl-symbol"].update(Text(row.symbol, style="bold"))
        if quote is None:
            # Never a made-up figure: no quote, no numbers.
            cells["wl-last"].update(_right(Text("no price", style="yellow")))
            for name in ("wl-chg", "wl-pct", "wl-bidask", "wl-state"):
                cells[name].update("")
            row.spark.data = []
            row.spark.visible = False
            return
        cells["wl-last"].update(_right(fmt.price(quote.last if quote.last is not None else quote.price)))
        cells["wl-chg"].update(_right(fmt.signed(quote.change)))
        percent = fmt.signed(quote.change_percent)
        if quote.change_percent is not None:
            percent.append("%")
        cells["wl-pct"].update(_right(percent))
        cells["wl-bidask"].update(f"{fmt.price(quote.bid)} / {fmt.price(quote.ask)}")
        state = state_text(quote, short=narrow)
        if quote.state is QuoteState.LIVE:
            state.stylize("dim")
        cells["wl-state"].update(state)
        row.spark.data = list(row.prices)
        row.spark.visible = bool(row.prices)

    def _show_empty(self) -> None:
        empty = self.query_one("#watchlist-empty", Static)
        empty.display = not self._rows
        if not self._rows:
            empty.update(Text("No symbols: press a to add one", style="dim"))

    # -- selection ---------------------------------------------------------------------------
    def _select(self, index: int) -> None:
        rows = list(self._rows.values())
        if not rows:
            self.selected = 0
            return
        self.selected = max(0, min(index, len(rows) - 1))
        for position, row in enumerate(rows):
            row.box.set_class(position == self.selected, "-selected")
        rows[self.selected].box.scroll_visible()

    def selected_symbol(self) -> str | None:
        rows = list(self._rows)
        return rows[self.selected] if rows else None

    def action_move(self, step: int) -> None:
        self._select(self.selected + step)

    # -- adding and removing -----------------------------------------------------------------
    def action_add(self) -> None:
        box = self.query_one("#watchlist-add", Input)
        box.display = True
        box.value = ""
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip().upper()
        if not text:
            self._close_box()
            return
        message = self.add(text)
        if message is not None:
            self.notify(message, severity="warning", timeout=4)
            return
        self._close_box()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape":
            box = self.query_one("#watchlist-add", Input)
            if box.display:
                event.stop()
                self._close_box()

    def _close_box(self) -> None:
        box = self.query_one("#watchlist-add", Input)
        box.display = False
        self.focus()

    def add(self, symbol: str) -> str | None:
        """Add ``symbol``; what is wrong with it instead, when something is."""
        symbol = symbol.strip().upper()
        if symbol in self._rows:
            return f"{symbol} is already in the watchlist"
        if self.market is not None and self.market.look_up(symbol) is None:
            return f"{symbol!r} is not a symbol: letters, digits and . / : - _ ^ = & only"
        row = self._build(symbol)
        self.query_one("#watchlist-rows", VerticalScroll).mount(row.box)
        self._want()
        self._select(len(self._rows) - 1)
        self._show(row)
        self._show_empty()
        self.post_message(self.Changed(self.symbols))
        return None

    def action_remove(self) -> None:
        symbol = self.selected_symbol()
        if symbol is not None:
            self.remove_symbol(symbol)

    def remove_symbol(self, symbol: str) -> None:
        row = self._rows.pop(symbol, None)
        if row is None:
            return
        if row.instrument is not None:
            self._by_instrument.pop(row.instrument, None)
        row.box.remove()
        self._want()
        self._select(self.selected)
        self._show_empty()
        self.post_message(self.Changed(self.symbols))
