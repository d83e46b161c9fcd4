"""Consolidated positions across accounts, in the base currency, with the per-account legs of the
selected row shown under the table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
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
from console import formatting as fmt

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
    shown_static: tuple[Decimal, Decimal | None] | None = None
    shown_price: Decimal | None | object = _UNSHOWN


class PositionsTable(KeyedTable):
    COLUMNS = (
        ("symbol", "Symbol", 9),
        ("kind", "Type", 6),
        ("currency", "Ccy", 3),
        ("quantity", "Qty", 8),
        ("avg", "Avg price", 9),
        ("last", "Last", 9),
        ("value", "Mkt value", 13),
        ("pnl", "Unrl P&L", 12),
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

    def compose(self) -> ComposeResult:
        yield PositionsTable(id="positions-table")
        yield Static("", id="position-legs", markup=False)

    def on_mount(self) -> None:
        self.border_title = f"Positions ({self.base_currency})"
        self.query_one("#position-legs", Static).update(
            Text("Select a row for the per-account breakdown", style="dim")
        )

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
        rows = [p for p in positions if p.quantity != 0]
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
                del self._rows[key]
            self.table.keep_only(seen)
            self._show_legs()

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
            row.quantity, row.avg_price, row.legs = position.quantity, position.avg_price, legs
            row.last_price, row.market_value, row.pnl = position.last_price, market_value, pnl
        row.stale = market_value.stale
        table = self.table
        if not table.has_row(key):
            table.upsert(key, {**self._static_cells(row), **self._price_cells(row)})
            row.shown_static, row.shown_price = self._static_of(row), row.last_price
            return
        static = self._static_of(row)
        if static != row.shown_static:
            table.upsert(key, self._static_cells(row))
            row.shown_static = static
        if key in visible and row.shown_price != row.last_price:
            table.upsert(key, self._price_cells(row))
            row.shown_price = row.last_price
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
        for index in sorted(indexes):
            key = keys[index]
            row = self._rows.get(key)
            if row is None:
                continue
            account = row.legs[0].account if len(row.legs) == 1 else None
            price = last_price(row.instrument, account)
            if price is not None and price != row.last_price and row.avg_price is not None:
                row.last_price = price
                row.market_value = _marked(
                    convert(row.quantity * price * row.multiplier, row.currency), row.stale
                )
                row.pnl = _marked(
                    convert((price - row.avg_price) * row.quantity * row.multiplier, row.currency), row.stale
                )
            if row.shown_price != row.last_price:
                table.upsert(key, self._price_cells(row))
                row.shown_price = row.last_price
                changed += 1
        return changed

    @staticmethod
    def _static_of(row: _Row) -> tuple[Decimal, Decimal | None]:
        return (row.quantity, row.avg_price)

    @staticmethod
    def _static_cells(row: _Row) -> dict[str, Text | str]:
        instrument = row.instrument
        return {
            # The contract's name; its asset class has a column of its own, so an AAPL CFD and
            # AAPL shares read as two different things.
            "symbol": Text(instrument.name, style="bold"),
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
        }

    def show_totals(self, market_value: Money, pnl: Money) -> None:
        """Totals in the base currency, from the manager (which prices every row, not only
        the ones on screen)."""
        self.border_subtitle = (
            f"{len(self._rows)} pos · value {fmt.money_cell(market_value).plain.strip()}"
            f" · P&L {fmt.money_cell(pnl).plain.strip()}"
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
        for index, leg in enumerate(row.legs):
            if index:
                text.append(" · ")
            text.append(f"{leg.account} ", style="cyan")
            text.append(f"{fmt.quantity(leg.quantity)} @ {fmt.average(leg.avg_price)}")
        box.update(text)
