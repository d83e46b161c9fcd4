"""Consolidated positions across accounts, in the base currency, with the per-account legs of the
selected row shown under the table.

Money columns (value, unrealised, realised today, day P&L) are in the base currency, each row the
sum of its legs' cents (``brokers.pnl``). The totals under the table are the sums of the rows'
figures as the table holds them, kept up as rows are repriced: a total is always the sum of its
column, to the cent.

The pane shows the widest set of columns its width holds (``COLUMN_SETS``): every column with
the account; every column, the accounts then being in the line under the table; or, in a narrow
pane (an 80-column terminal), what a trader reads first: symbol, account, quantity, last,
unrealised and day P&L, with realised today where there is room for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from brokers.consolidation import ConsolidatedPosition
from brokers.fx import Money
from brokers.instruments import Instrument
from brokers.models import Position
from brokers.pnl import LegFigures, LegPnl, PnlSource
from console import formatting as fmt

from ..column_fit import Columns, keys, table_width, widest_fitting
from .keyed_table import KeyedTable

PriceLookup = Callable[[Instrument, str | None], Decimal | None]
"""(instrument, account or None) -> last price of that very instrument, without I/O."""
Converter = Callable[[Decimal, str], Money]
"""(amount, currency) -> Money in the base currency."""


def _marked(money: Money, stale: bool) -> Money:
    # A repriced figure keeps the staleness of the account data it was built on.
    return money.marked(stale=True) if stale else money


def position_key(position: ConsolidatedPosition) -> str:
    """One row per instrument (a CFD and the stock of its symbol are two)."""
    return position.label


_UNSHOWN = object()


@dataclass
class _Row:
    """One consolidated position, and what of it the table currently shows."""

    instrument: Instrument
    currency: str
    quantity: Decimal
    avg_price: Decimal | None
    multiplier: Decimal
    last_price: Decimal | None
    market_value: Money
    pnl: Money
    legs: list[Position] = field(default_factory=list)
    stale: bool = False
    realized: Money = Money(None, "", missing=True)
    day_pnl: Money = Money(None, "", missing=True)
    leg_pnl: tuple[LegPnl, ...] = ()
    # The account holding it, or how many do (``_accounts``).
    accounts: str = ""
    # Several currencies: each leg keeps its own price, and a tick (one price) does not move it.
    one_price: bool = True
    shown_static: tuple[Decimal, Decimal | None, str] | None = None
    # What the price and money cells show (``_priced``): repainted when any of it changes.
    shown_price: tuple[Decimal | None, Money, Money, Money, Money] | object = _UNSHOWN


# Every column; the account's width follows the names shown.
ALL_COLUMNS: Columns = (
    ("symbol", "Symbol", 9),
    ("account", "Account", None),
    ("kind", "Type", 6),
    ("currency", "Ccy", 3),
    ("quantity", "Qty", 8),
    ("avg", "Avg price", 9),
    ("last", "Last", 9),
    ("value", "Mkt value", 13),
    ("pnl", "Unrl P&L", 12),
    ("realized", "Real today", 11),
    ("day", "Day P&L", 11),
)
# Every column but the account: the accounts of the selected row are in the line under the table.
FULL_COLUMNS: Columns = tuple(column for column in ALL_COLUMNS if column[0] != "account")
# For a narrow pane: what a trader reads first. Type, currency and average price are in the
# line under the table; the account's name is cut to its column.
ACCOUNT_WIDTH = 12
COMPACT_COLUMNS: Columns = (
    ("symbol", "Symbol", 9),
    ("account", "Account", ACCOUNT_WIDTH),
    ("quantity", "Qty", 8),
    ("last", "Last", 9),
    ("pnl", "Unrl P&L", 12),
    ("day", "Day P&L", 11),
)
# Between the two (a 100-column terminal): realised today too.
MEDIUM_COLUMNS: Columns = (*COMPACT_COLUMNS[:-1], ("realized", "Real today", 11), COMPACT_COLUMNS[-1])
# Widest first: the pane shows the first set that fits it, else the last.
COLUMN_SETS: tuple[Columns, ...] = (ALL_COLUMNS, FULL_COLUMNS, MEDIUM_COLUMNS, COMPACT_COLUMNS)


class PositionsTable(KeyedTable):
    COLUMNS = FULL_COLUMNS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns: Columns = FULL_COLUMNS
        self._keys = frozenset(keys(self._columns))

    @property
    def column_set(self) -> Columns:
        return self._columns

    @property
    def compact(self) -> bool:
        """Whether the narrow columns are shown (type, currency and average price are not)."""
        return self._columns in (MEDIUM_COLUMNS, COMPACT_COLUMNS)

    def width_needed(self, columns: Columns, account_width: int) -> int:
        """How wide the table must be to show ``columns`` uncut, with account names up to
        ``account_width`` long."""
        return table_width(
            self, [width if width is not None else account_width for _key, _label, width in columns]
        )

    def use_columns(self, columns: Columns) -> bool:
        """Show ``columns``; returns whether that changed (the rows are then gone, to be shown
        again by the pane)."""
        if columns == self._columns:
            return False
        self._columns = columns
        self._keys = frozenset(keys(columns))
        self.set_columns(columns)
        return True

    def upsert(self, key: str, cells: Mapping[str, Any]) -> bool:
        """As ``KeyedTable.upsert``, for the cells of the columns shown."""
        keys = self._keys
        return super().upsert(key, {column: value for column, value in cells.items() if column in keys})


MONEY_COLUMNS = ("value", "pnl", "realized", "day")


class _Total:
    """A running sum of one money column, with ``Money.total``'s marks: rows come and go and
    change one at a time, and the sum follows without adding up every row again."""

    __slots__ = ("amount", "known", "missing", "stale", "unknown")

    def __init__(self) -> None:
        self.amount = Decimal(0)
        self.known = self.unknown = self.missing = self.stale = 0

    def add(self, money: Money, sign: int = 1) -> None:
        if money.amount is None:
            self.unknown += sign
        else:
            self.known += sign
            self.amount += sign * money.amount
        self.missing += sign * money.missing
        self.stale += sign * money.stale

    def money(self, currency: str) -> Money:
        amount = None if self.known == 0 and self.unknown else self.amount
        return Money(amount, currency, self.stale > 0, self.missing > 0 or self.unknown > 0)


def _priced(row: _Row) -> tuple[Decimal | None, Money, Money, Money, Money]:
    return (row.last_price, row.market_value, row.pnl, row.realized, row.day_pnl)


def _row_money(row: _Row) -> tuple[Money, Money, Money, Money]:
    return (row.market_value, row.pnl, row.realized, row.day_pnl)


def _sum_legs(figures: list[LegFigures], base: str) -> tuple[Money, Money, Money, Money]:
    return (
        Money.total((f.market_value for f in figures), base),
        Money.total((f.unrealized for f in figures), base),
        Money.total((f.realized_today for f in figures), base),
        Money.total((f.day_pnl for f in figures), base),
    )


class PositionsPane(Vertical):
    """Quantities and averages change on fills; prices change all the time. A snapshot updates
    the quantity columns of every row but the price columns only of rows on screen; ``tick``
    keeps repricing what is on screen, so thousands of positions cost a few hundred cell
    updates a second, not tens of thousands. A row scrolled into view is repriced on the next
    tick."""

    def __init__(self, *, base_currency: str = "USD", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_currency = base_currency
        self._rows: dict[str, _Row] = {}
        self._sweep = 0
        self._totals = {column: _Total() for column in MONEY_COLUMNS}
        # The longest account cell shown, for the width of the set with the account column.
        self._account_width = len("Account")
        self._wider = False

    def compose(self) -> ComposeResult:
        yield PositionsTable(id="positions-table")
        yield Static("", id="position-legs", markup=False)

    def on_mount(self) -> None:
        self.border_title = f"Positions ({self.base_currency})"
        self.query_one("#position-legs", Static).update(
            Text("Select a row for the per-account breakdown", style="dim")
        )

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The widest column set the pane's width holds, the rows shown again if it changed."""
        width = self.size.width
        if not width:
            return
        table = self.table
        wanted = widest_fitting(
            COLUMN_SETS, width, lambda columns: table.width_needed(columns, self._account_width)
        )
        selected = table.selected_key()
        if not table.use_columns(wanted):
            return
        with self.app.batch_update():
            for key, row in self._rows.items():
                table.upsert(key, {**self._static_cells(row), **self._price_cells(row)})
                row.shown_static, row.shown_price = self._static_of(row), _priced(row)
        if selected is not None and table.has_row(selected):
            table.move_cursor(row=table.get_row_index(selected), animate=False)

    @property
    def table(self) -> PositionsTable:
        return self.query_one(PositionsTable)

    @property
    def rows(self) -> dict[str, _Row]:
        return self._rows

    def _visible_keys(self) -> set[str]:
        table = self.table
        keys = table.row_keys
        return {keys[index] for index in table.visible_row_range()}

    async def show_positions(self, positions: Iterable[ConsolidatedPosition], *, chunk: int = 500) -> None:
        """Apply a fresh snapshot of ``ConsolidatedPosition``s: add, update and drop rows,
        ``chunk`` rows per turn of the event loop so thousands of rows never stall it."""
        # Every row: a net of 0 across accounts (long here, short there) and a holding closed
        # today still have money to show, and the totals count them.
        rows = list(positions)
        visible = self._visible_keys()
        for start in range(0, len(rows), chunk):
            if start:
                await asyncio.sleep(0)
                visible = self._visible_keys()
            with self.app.batch_update():
                for position in rows[start : start + chunk]:
                    self._show_position(position, visible)
        seen = [position_key(position) for position in rows]
        wanted = set(seen)
        with self.app.batch_update():
            for key in [k for k in self._rows if k not in wanted]:
                self._count(self._rows.pop(key), -1)
            self.table.keep_only(seen)
            self._show_legs()
            self.show_totals()
        if self._wider:
            self._wider = False
            self._fit()  # a longer account name may no longer fit the widest set

    def _count(self, row: _Row, sign: int) -> None:
        for column, money in zip(MONEY_COLUMNS, _row_money(row), strict=True):
            self._totals[column].add(money, sign)

    def totals(self) -> dict[str, Money]:
        """Each money column's total: the sum of its rows, to the cent."""
        return {column: total.money(self.base_currency) for column, total in self._totals.items()}

    def _show_position(self, position: ConsolidatedPosition, visible: set[str]) -> None:
        key = position_key(position)
        legs = list(position.legs)
        market_value, pnl = position.market_value_base, position.unrealized_pnl_base
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row(
                instrument=position.instrument,
                currency=position.currency,
                quantity=position.quantity,
                avg_price=position.avg_price,
                multiplier=legs[0].multiplier if legs else Decimal(1),
                last_price=position.last_price,
                market_value=market_value,
                pnl=pnl,
                legs=legs,
            )
        else:
            self._count(row, -1)
            row.quantity, row.avg_price, row.legs = position.quantity, position.avg_price, legs
            row.last_price, row.market_value, row.pnl = position.last_price, market_value, pnl
        row.realized, row.day_pnl = position.realized_today_base, position.day_pnl_base
        row.leg_pnl = position.pnl
        row.accounts = _accounts(legs)
        if len(row.accounts) > self._account_width:
            self._account_width, self._wider = len(row.accounts), True
        row.one_price = position.avg_price is not None
        self._count(row, 1)
        row.stale = market_value.stale
        table = self.table
        if not table.has_row(key):
            table.upsert(key, {**self._static_cells(row), **self._price_cells(row)})
            row.shown_static, row.shown_price = self._static_of(row), _priced(row)
            return
        static = self._static_of(row)
        if static != row.shown_static:
            table.upsert(key, self._static_cells(row))
            row.shown_static = static
        if key in visible and row.shown_price != _priced(row):
            table.upsert(key, self._price_cells(row))
            row.shown_price = _priced(row)
        elif key not in visible:
            # Off screen: repainted by the tick sweep or when it scrolls into view.
            row.shown_price = _UNSHOWN

    def tick(self, last_price: PriceLookup, convert: Converter, *, sweep: int = 0) -> int:
        """Reprice from in-memory last prices every row on screen (plus ``sweep`` rows further
        down in turn, if asked: any cell change makes the table re-render every visible line,
        so repainting rows nobody sees costs as much as repainting the ones they do).
        Returns how many rows were repainted."""
        table = self.table
        keys = table.row_keys
        if not keys:
            return 0
        indexes = set(table.visible_row_range())
        if sweep:
            start = self._sweep % len(keys)
            indexes.update((start + step) % len(keys) for step in range(min(sweep, len(keys))))
            self._sweep = start + sweep
        changed = 0
        repriced = False
        for index in sorted(indexes):
            key = keys[index]
            row = self._rows.get(key)
            if row is None:
                continue
            account = row.legs[0].account if len(row.legs) == 1 else None
            price = last_price(row.instrument, account)
            if price is not None and price != row.last_price and row.one_price:
                row.last_price = price
                self._reprice(row, price, convert)
                repriced = True
            priced = _priced(row)
            if row.shown_price != priced:
                table.upsert(key, self._price_cells(row))
                row.shown_price = priced
                changed += 1
        if repriced:
            self.show_totals()
        return changed

    def _reprice(self, row: _Row, price: Decimal, convert: Converter) -> None:
        """Every leg at ``price`` (a row in one currency shows one), in the base currency."""
        self._count(row, -1)
        if row.leg_pnl:
            figures = [
                pnl.figures(price, convert, self.base_currency, stale=row.stale) for pnl in row.leg_pnl
            ]
            row.market_value, row.pnl, row.realized, row.day_pnl = _sum_legs(figures, self.base_currency)
        elif row.avg_price is not None:
            row.market_value = _marked(
                convert(row.quantity * price * row.multiplier, row.currency), row.stale
            )
            row.pnl = _marked(
                convert((price - row.avg_price) * row.quantity * row.multiplier, row.currency), row.stale
            )
        self._count(row, 1)

    @staticmethod
    def _static_of(row: _Row) -> tuple[Decimal, Decimal | None, str]:
        return (row.quantity, row.avg_price, row.accounts)

    def _static_cells(self, row: _Row) -> dict[str, Text | str]:
        instrument = row.instrument
        accounts = row.accounts
        if self.table.compact and len(accounts) > ACCOUNT_WIDTH:
            accounts = accounts[: ACCOUNT_WIDTH - 1] + "…"
        return {
            # The contract's name; its asset class has a column of its own, so an AAPL CFD and
            # AAPL shares read as two different things.
            "symbol": Text(instrument.name, style="bold"),
            "account": Text(accounts, style="cyan"),
            "kind": fmt.asset_class(instrument.asset_class),
            "currency": row.currency,
            "quantity": fmt.right(fmt.quantity(row.quantity), "red" if row.quantity < 0 else ""),
            "avg": fmt.right(fmt.average(row.avg_price)),
        }

    @staticmethod
    def _price_cells(row: _Row) -> dict[str, Text | str]:
        return {
            "last": fmt.right(fmt.price(row.last_price)),
            "value": fmt.money_cell(row.market_value),
            "pnl": fmt.money_cell(row.pnl, signed=True),
            "realized": fmt.money_cell(row.realized, signed=True),
            "day": fmt.money_cell(row.day_pnl, signed=True),
        }

    def show_totals(self) -> None:
        """The columns' totals in the base currency: the sums of the rows (``totals``)."""
        totals = self.totals()

        def shown(column: str) -> str:
            return fmt.money_cell(totals[column]).plain.strip()

        self.border_subtitle = (
            f"{len(self._rows)} pos · value {shown('value')} · unrl {shown('pnl')}"
            f" · real {shown('realized')} · day {shown('day')}"
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_legs()

    def _show_legs(self) -> None:
        box = self.query_one("#position-legs", Static)
        key = self.table.selected_key()
        row = self._rows.get(key) if key else None
        if row is None:
            box.update(Text("Select a row for the per-account breakdown", style="dim"))
            return
        text = Text()
        text.append(f"{row.instrument.label}: ", style="bold")
        if self.table.compact:
            # What the narrow columns leave out.
            text.append(f"{fmt.asset_class(row.instrument.asset_class)} {row.currency} · ")
        pnls = row.leg_pnl if len(row.leg_pnl) == len(row.legs) else (None,) * len(row.legs)
        for index, (leg, pnl) in enumerate(zip(row.legs, pnls, strict=True)):
            if index:
                text.append(" · ")
            text.append(f"{leg.account} ", style="cyan")
            text.append(f"{fmt.quantity(leg.quantity)} @ {fmt.average(leg.avg_price)}")
            if pnl is not None:
                text.append(_sources(pnl, row.last_price if row.one_price else leg.last_price), style="dim")
        box.update(text)


def _accounts(legs: list[Position]) -> str:
    """The account of a row held at one, else how many hold it (the line under the table names
    them)."""
    names = {leg.account for leg in legs}
    if len(names) == 1:
        return next(iter(names))
    return f"{len(names)} accounts" if names else ""


def _sources(pnl: LegPnl, mark: Decimal | None) -> str:
    """Where a leg's day and realised figures come from, and the fills' figure beside a
    broker's that differs from it (in the leg's own currency)."""
    parts = []
    if pnl.day_source is PnlSource.BROKER:
        ours = pnl.fills_day_pnl(mark)
        theirs = pnl.day_pnl(mark)
        beside = f", fills {fmt.amount(ours)} {pnl.currency}" if ours is not None and ours != theirs else ""
        parts.append(f"day: broker{beside}")
    elif pnl.day_source is PnlSource.UNKNOWN:
        parts.append("day: no previous close")
    if pnl.realized_source is PnlSource.BROKER:
        ours, theirs = pnl.fills_realized_today, pnl.realized_today
        beside = f", fills {fmt.amount(ours)} {pnl.currency}" if ours is not None and ours != theirs else ""
        parts.append(f"realised: broker{beside}")
    return f" ({'; '.join(parts)})" if parts else ""
