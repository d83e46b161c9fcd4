"""Buying power per account and in total, in the base currency; a figure on a stale FX rate is marked.

Below the total, the accounts' cash split into settled and pending (still to settle), summed in
the base currency; an account whose broker's settled cash differs from the figure worked out
from its fills is named under the table.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from brokers.consolidation import BuyingPower, SettlementTotals
from console import formatting as fmt

from .keyed_table import KeyedTable
from .settled_cash import disagreement_text

TOTAL_KEY = "\u0000total"
SETTLED_KEY = "\u0000settled"
PENDING_KEY = "\u0000pending"
CASH_KEYS = (SETTLED_KEY, PENDING_KEY)
FOOTER_KEYS = frozenset({TOTAL_KEY, *CASH_KEYS})


class BuyingPowerTable(KeyedTable):
    COLUMNS = (
        ("account", "Account", 13),
        ("value", "Buying power", 14),
    )

    def __init__(self, *, base_currency: str = "USD", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_currency = base_currency
        self.compact = False
        self._last: BuyingPower | None = None

    def on_mount(self) -> None:
        self.border_title = f"Buying power ({self.base_currency})"

    def show_buying_power(self, buying_power: BuyingPower) -> None:
        """``buying_power`` is the manager's ``BuyingPower``: ``per_account_base`` and ``total``
        are in the base currency (``per_account``, in each account's own currency, decides
        which accounts are listed)."""
        self._last = buying_power
        per_account = buying_power.per_account
        per_account_base = buying_power.per_account_base
        for name in per_account:
            self.upsert(name, {"account": name, "value": fmt.money_cell(per_account_base.get(name))})
        total = buying_power.total
        total_cell = fmt.money_cell(total)
        total_cell.stylize("bold")
        title = f"Buying power ({self.base_currency})"
        settlement = buying_power.settlement
        below = list(CASH_KEYS) if settlement is not None else []
        if self.compact and below:
            # Narrow terminals keep one row for it: cash still to settle, the part not to spend.
            below = [PENDING_KEY]
        if self.compact:
            # Narrow terminals: the total rides in the title and saves a row.
            self.drop(TOTAL_KEY)
            self.border_title = f"Buying power: {total_cell.plain.strip()} {self.base_currency}"
            footer = below
        else:
            footer = [TOTAL_KEY, *below]
            self.border_title = title
        # The total and the cash rows stay the last rows: drop and re-add them when accounts appear.
        shown = [key for key in self.row_keys if key in FOOTER_KEYS]
        if shown and (shown != footer[: len(shown)] or self.row_keys[-len(shown) :] != shown):
            for key in shown:
                self.drop(key)
        if not self.compact:
            self.upsert(TOTAL_KEY, {"account": Text("TOTAL", style="bold"), "value": total_cell})
        marked = [*per_account_base.values(), total]
        if settlement is not None:
            self._show_settlement(settlement, with_settled=not self.compact)
            marked += [settlement.settled, settlement.pending]
        self.keep_only([*per_account, *footer])
        self.border_subtitle = " · ".join(
            part for part in (fmt.marks_legend(marked), disagreement_text(settlement)) if part
        )

    def _show_settlement(self, settlement: SettlementTotals, *, with_settled: bool) -> None:
        if with_settled:
            self.upsert(
                SETTLED_KEY,
                {"account": Text("settled cash", style="dim"), "value": fmt.money_cell(settlement.settled)},
            )
        self.upsert(
            PENDING_KEY,
            {"account": Text("pending", style="dim"), "value": fmt.money_cell(settlement.pending)},
        )

    def set_compact(self, compact: bool) -> None:
        if compact == self.compact:
            return
        self.compact = compact
        if self._last is not None:
            self.show_buying_power(self._last)
