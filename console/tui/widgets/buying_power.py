"""Buying power per account and in total, in the base currency; a figure on a stale FX rate is marked."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from brokers.consolidation import BuyingPower
from console import formatting as fmt

from .keyed_table import KeyedTable

TOTAL_KEY = "\u0000total"


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
        if self.compact:
            # Narrow terminals: the total rides in the title and saves a row.
            self.drop(TOTAL_KEY)
            self.border_title = f"Buying power: {total_cell.plain.strip()} {self.base_currency}"
            self.keep_only(per_account)
        else:
            # The total stays the last row: drop and re-add it when accounts appear.
            if self.has_row(TOTAL_KEY) and self.row_keys[-1] != TOTAL_KEY:
                self.drop(TOTAL_KEY)
            self.upsert(TOTAL_KEY, {"account": Text("TOTAL", style="bold"), "value": total_cell})
            self.border_title = title
            self.keep_only([*per_account, TOTAL_KEY])
        self.border_subtitle = fmt.marks_legend([*per_account_base.values(), total])

    def set_compact(self, compact: bool) -> None:
        if compact == self.compact:
            return
        self.compact = compact
        if self._last is not None:
            self.show_buying_power(self._last)
