"""Every account's money on one line, in the base currency, and a total row that is the sum of
the rows below it, to the cent (each figure converted once and rounded to the cent before
anything adds it up: ``brokers.consolidation``).

Equity, the day's P&L against the previous close, buying power, cash, the cash split into
settled and pending (still to settle), and the margin open positions use. A figure built on a
stale FX rate or missing a part is marked; a day's P&L that cannot be known (a holding carried
in without a previous close) reads as incomplete, never as 0. An account whose broker's settled
cash differs from the figure worked out from its fills is named under the table.

The pane shows the widest set of columns its width holds whole (``COLUMN_SETS``), each column
as wide as its widest cell: every column on a wide terminal; on an 80-column one what a trader
reads before an order, the account, its equity, the day's P&L and the buying power left, then
cash and the margin used as the width allows. Every set keeps the total row, and the total row is
the first, pinned under the header: with more accounts than the pane has lines, they scroll
beneath it and the total stays in view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from brokers.consolidation import CashSettlement, Figures, SettlementTotals, Totals
from brokers.fx import Money
from brokers.pnl import cents
from console import formatting as fmt

from ..column_fit import Columns, keys, table_width, widest_fitting
from ..settlement_text import DIFFERS_MARK, disagreement_text
from .keyed_table import KeyedTable

TOTAL_KEY = "\u0000total"

SettlementCells = Callable[[CashSettlement | SettlementTotals | None], dict[str, Text]]
"""The settled and pending cells of one account's row (a ``CashSettlement``) or of the total
row (the ``SettlementTotals``); None: the split is not known."""


def settlement_cells(split: CashSettlement | SettlementTotals | None) -> dict[str, Text]:
    """Settled and pending cash in the base currency, each account's rounded to the cent and
    the total the sum of those cents."""
    if split is None:
        return {"settled": fmt.money_cell(None), "pending": fmt.money_cell(None)}
    if isinstance(split, CashSettlement):
        settled_cell = fmt.money_cell(cents(split.settled_base))
        if split.disagreement is not None:
            # The broker's figure, which the cash check goes by, marked: the fills give another.
            settled_cell = Text(settled_cell.plain.rstrip(), style="bold yellow", justify="right")
            settled_cell.append(DIFFERS_MARK)
        return {"settled": settled_cell, "pending": fmt.money_cell(cents(split.pending_base))}
    else:
        accounts = split.per_account.values()
        settled = Money.total((cents(a.settled_base) for a in accounts), split.currency)
        pending = Money.total((cents(a.pending_base) for a in accounts), split.currency)
    return {"settled": fmt.money_cell(settled), "pending": fmt.money_cell(pending)}


LABELS = {
    "account": "Account",
    "equity": "Equity",
    "day": "Day P&L",
    "buying_power": "Buying pwr",
    "cash": "Cash",
    "settled": "Settled",
    "pending": "Pending",
    "margin": "Margin used",
}
ALL_COLUMNS = tuple(LABELS)
# What a trader reads before an order: what the account is worth, how the day is going and
# what it can still buy. Cash and margin used are what buying power is made of; settled and
# pending split the cash, so they come last and together.
FIRST_COLUMNS = ("account", "equity", "day", "buying_power")
COLUMN_SETS: tuple[tuple[str, ...], ...] = (
    ALL_COLUMNS,
    (*FIRST_COLUMNS, "cash", "margin"),
    (*FIRST_COLUMNS, "cash"),
    FIRST_COLUMNS,
    # A long account name or a large figure in a narrow pane: buying power goes before any
    # figure is cut.
    FIRST_COLUMNS[:-1],
)
"""Widest first: the pane shows the first set its width holds whole, else the last."""


class AccountPane(KeyedTable):
    COLUMNS: Columns = tuple((key, label, len(label)) for key, label in LABELS.items())

    def __init__(
        self,
        *,
        base_currency: str = "USD",
        render_settlement: SettlementCells = settlement_cells,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_currency = base_currency
        self.render_settlement = render_settlement
        self._last: Totals | None = None
        # Every cell of every row, for any set of columns, in the order the rows are shown.
        self._cells: dict[str, dict[str, Text]] = {}

    def on_mount(self) -> None:
        self.border_title = f"Accounts ({self.base_currency})"

    def on_resize(self) -> None:
        self._fit()

    def watch_show_vertical_scrollbar(self) -> None:
        # More accounts than rows on screen: the scrollbar takes columns from the figures.
        self.call_later(self._fit)

    @property
    def column_set(self) -> tuple[str, ...]:
        """The keys of the columns shown, left to right."""
        return keys(self.COLUMNS)

    def widths(self) -> dict[str, int]:
        """How wide each column must be to show its label and every cell whole."""
        return {
            key: max([len(label), *(cells[key].cell_len for cells in self._cells.values())])
            for key, label in LABELS.items()
        }

    def _fit(self) -> None:
        """The widest column set the pane holds whole, each column as wide as its widest cell;
        the rows are shown again if that changed."""
        width = self.scrollable_content_region.width
        if not width:
            return
        widths = self.widths()
        wanted = widest_fitting(
            COLUMN_SETS, width, lambda names: table_width(self, [widths[n] for n in names], scrollbar=False)
        )
        columns = tuple((key, LABELS[key], widths[key]) for key in wanted)
        if columns == tuple(self.COLUMNS):
            return
        selected = self.selected_key()
        self.set_columns(columns)
        for key, cells in self._cells.items():
            self._put(key, cells)
        if selected is not None and self.has_row(selected):
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _put(self, key: str, cells: dict[str, Text]) -> None:
        self._cells[key] = cells
        shown = self.column_set
        self.upsert(key, {column: cell for column, cell in cells.items() if column in shown})

    @property
    def totals(self) -> Totals | None:
        """What the pane shows, as last given."""
        return self._last

    def show_accounts(self, totals: Totals) -> None:
        """The total row, then one row per account from its base-currency figures."""
        self._last = totals
        settlement = totals.settlement
        total = {
            "account": Text("TOTAL", style="bold"),
            **_cells(totals.total),
            **self.render_settlement(settlement),
        }
        for cell in total.values():
            cell.stylize("bold")
        # Put first, the total takes the first row when the table is first filled, and keeps it.
        self._put(TOTAL_KEY, total)
        # Pinned only once it exists: the table cannot lay out a fixed row it does not have.
        self.fixed_rows = 1
        for name, account in totals.per_account.items():
            split = settlement.per_account.get(name) if settlement is not None else None
            self._put(name, {"account": Text(name), **_cells(account.base), **self.render_settlement(split)})
        self.keep_only([TOTAL_KEY, *totals.per_account])
        self._cells = {key: self._cells[key] for key in self.row_keys}
        self._fit()  # a figure may have grown past its column, or shrunk to let another in
        self.border_subtitle = " · ".join(
            part for part in (fmt.marks_legend(_shown_money(totals)), disagreement_text(settlement)) if part
        )


def _cells(figures: Figures) -> dict[str, Text]:
    return {
        "equity": fmt.money_cell(figures.equity),
        "day": fmt.money_cell(figures.day_pnl, signed=True),
        "buying_power": fmt.money_cell(figures.buying_power),
        "cash": fmt.money_cell(figures.cash),
        "margin": fmt.money_cell(figures.margin_used),
    }


def _shown_money(totals: Totals) -> list[Money]:
    money: list[Money] = []
    for figures in [*(account.base for account in totals.per_account.values()), totals.total]:
        money += [figures.equity, figures.day_pnl, figures.buying_power, figures.cash, figures.margin_used]
    if totals.settlement is not None:
        money += [totals.settlement.settled, totals.settlement.pending]
    return money
