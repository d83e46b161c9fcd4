"""Every account's money on one line, in the base currency, and a total row that is the sum of
the rows above it, to the cent (each figure converted once and rounded to the cent before
anything adds it up: ``brokers.consolidation``).

Equity, the day's P&L against the previous close, buying power, cash, the cash split into
settled and pending (still to settle), and the margin open positions use. A figure built on a
stale FX rate or missing a part is marked; a day's P&L that cannot be known (a holding carried
in without a previous close) reads as incomplete, never as 0. An account whose broker's settled
cash differs from the figure worked out from its fills is named under the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from brokers.consolidation import CashSettlement, Figures, SettlementTotals, Totals
from brokers.fx import Money
from brokers.pnl import cents
from console import formatting as fmt

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


class AccountPane(KeyedTable):
    COLUMNS = (
        ("account", "Account", 13),
        ("equity", "Equity", 12),
        ("day", "Day P&L", 11),
        ("buying_power", "Buying pwr", 12),
        ("cash", "Cash", 12),
        ("settled", "Settled", 12),
        ("pending", "Pending", 10),
        ("margin", "Margin used", 11),
    )

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

    def on_mount(self) -> None:
        self.border_title = f"Accounts ({self.base_currency})"

    @property
    def totals(self) -> Totals | None:
        """What the pane shows, as last given."""
        return self._last

    def show_accounts(self, totals: Totals) -> None:
        """One row per account from its base-currency figures, then the total row."""
        self._last = totals
        settlement = totals.settlement
        for name, account in totals.per_account.items():
            split = settlement.per_account.get(name) if settlement is not None else None
            self.upsert(name, {"account": name, **_cells(account.base), **self.render_settlement(split)})
        if self.row_keys and self.row_keys[-1] != TOTAL_KEY:
            self.drop(TOTAL_KEY)  # an account appeared: the total goes back to the bottom
        total = {
            "account": Text("TOTAL", style="bold"),
            **_cells(totals.total),
            **self.render_settlement(settlement),
        }
        for cell in total.values():
            cell.stylize("bold")
        self.upsert(TOTAL_KEY, total)
        self.keep_only([*totals.per_account, TOTAL_KEY])
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
