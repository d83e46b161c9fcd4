"""A position export read into positions and cash. Each malformed row is reported with its line
number and the rest are kept; quirks of the brokers' files are read as they come: a byte-order
mark, disclaimer lines after the table, money written "$1,234.56" or "(12.50)", "--" for none,
and a trailing "**" on core cash positions."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .layouts import Layout


@dataclass(frozen=True, slots=True)
class Holding:
    symbol: str
    quantity: Decimal
    price: Decimal | None
    average_cost: Decimal


@dataclass(slots=True)
class Export:
    holdings: list[Holding] = field(default_factory=list)
    cash: Decimal = Decimal(0)
    problems: list[str] = field(default_factory=list)


def money(text: str | None) -> Decimal | None:
    """A number as the exports write it; None for an empty cell or "--"."""
    if text is None:
        return None
    value = text.strip().replace("$", "").replace(",", "").replace("+", "")
    negative = value.startswith("(") and value.endswith(")")
    value = value.strip("()")
    if value in ("", "--", "n/a", "N/A"):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{text.strip()!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{text.strip()!r} is not a number")
    return -number if negative else number


def read_export(text: str, layout: Layout) -> Export:
    """The holdings and cash in ``text``, a CSV export in ``layout``."""
    export = Export()
    lines = text.lstrip("\ufeff").splitlines()
    header_at = next(
        (i for i, line in enumerate(lines) if layout.symbol in next(csv.reader([line]), [])),
        None,
    )
    if header_at is None:
        export.problems.append(f"no header row naming a {layout.symbol!r} column")
        return export
    header = [cell.strip() for cell in next(csv.reader([lines[header_at]]))]
    missing = [name for name in (layout.symbol, layout.quantity) if name not in header]
    if missing or (layout.price not in header and layout.value not in header):
        wanted = missing or [f"{layout.price} or {layout.value}"]
        export.problems.append(f"line {header_at + 1}: the header has no {wanted[0]!r} column")
        return export
    for number, row in enumerate(
        csv.reader(io.StringIO("\n".join(lines[header_at + 1 :]))), start=header_at + 2
    ):
        if not any(cell.strip() for cell in row):
            if export.holdings or export.cash:
                break  # the table ends at the first blank line; what follows is not positions
            continue
        if len(row) < len(header) and len(row) <= 2:
            continue  # a disclaimer or "Date downloaded" line below the table
        cells = {name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(header)}
        try:
            _take(cells, layout, export)
        except ValueError as exc:
            export.problems.append(f"line {number}: {exc}")
    return export


def _take(cells: dict[str, str], layout: Layout, export: Export) -> None:
    symbol = cells.get(layout.symbol, "").rstrip("*").strip().upper()
    description = cells.get(layout.description or "", "").upper()
    value = money(cells.get(layout.value)) if layout.value else None
    if any(mark in symbol or mark in description for mark in layout.pending_marks):
        export.cash += value or Decimal(0)
        return
    if not symbol:
        raise ValueError("no symbol")
    quantity = money(cells.get(layout.quantity))
    if symbol in layout.cash_symbols:
        amount = value if value is not None else quantity
        if amount is None:
            raise ValueError(f"cash row {symbol} has no amount")
        export.cash += amount
        return
    if quantity is None:
        raise ValueError(f"{symbol}: no {layout.quantity!r}")
    price = money(cells.get(layout.price)) if layout.price else None
    if price is None and value is not None and quantity:
        price = value / quantity
    if price is not None and price < 0:
        raise ValueError(f"{symbol}: a negative price {price}")
    average = money(cells.get(layout.average_cost)) if layout.average_cost else None
    export.holdings.append(Holding(symbol, quantity, price, average or Decimal(0)))
