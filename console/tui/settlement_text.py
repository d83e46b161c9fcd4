"""The line naming each account whose broker's settled cash differs from the figure its fills
give, with both figures, and the mark on such a settled figure (the account pane uses both)."""

from __future__ import annotations

from decimal import Decimal

from brokers.consolidation import CashSettlement, SettlementTotals
from brokers.fx import Money
from console import formatting as fmt

DIFFERS_MARK = "≠"
"""Ends a broker's settled figure that the account's fills do not give."""


def computed_figure(split: CashSettlement) -> Decimal | None:
    """The settled cash the account's fills give, where it differs from the broker's."""
    if split.disagreement is None or split.settled.amount is None:
        return None
    return split.settled.amount - split.disagreement


def disagreement_text(settlement: SettlementTotals | None) -> str:
    """ "settled cash differs from fills: cash 1,000.00 USD (fills 11,000.00)", one part per
    account whose broker's settled cash is not what its fills give; "" when none."""
    if settlement is None:
        return ""
    parts = []
    for name, split in settlement.per_account.items():
        computed = computed_figure(split)
        if computed is None:
            continue
        broker = fmt.money_text(split.settled).plain.strip()
        fills = fmt.money_text(Money(computed, split.currency), currency=False).plain.strip()
        parts.append(f"{name} {broker} (fills {fills})")
    return "settled cash differs from fills: " + ", ".join(parts) if parts else ""
