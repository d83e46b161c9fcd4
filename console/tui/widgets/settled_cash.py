"""How an account's settled and pending cash is shown: the cells of one account's split, and the
line naming each account whose broker's settled cash differs from the figure its fills give,
with both figures. Used by the account pane; no widget of its own."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text

from brokers.account_state import SettledCashSource
from brokers.consolidation import CashSettlement, SettlementTotals
from brokers.fx import Money
from console import formatting as fmt

DIFFERS_MARK = "≠"
"""Ends a broker's settled figure that the account's fills do not give."""

SOURCE_LABELS = {
    SettledCashSource.BROKER: "broker",
    SettledCashSource.COMPUTED: "fills",
    SettledCashSource.UNKNOWN: "not known",
}
"""Where the split came from, as the pane words it."""


def settlement_cells(split: CashSettlement) -> dict[str, Text]:
    """One account's ``settled``, ``pending`` and ``source`` cells, in its own currency. A
    disagreement marks the settled figure (the broker's, which the check goes by)."""
    settled = fmt.money_cell(split.settled)
    if split.disagreement is not None:
        # In place of the cell's closing space (or after its stale or partial mark).
        settled = Text(settled.plain.rstrip(), style="bold yellow", justify="right")
        settled.append(DIFFERS_MARK)
    source = SOURCE_LABELS[split.source]
    if split.cash_account:
        source += ", cash account"
    return {
        "settled": settled,
        "pending": fmt.money_cell(split.pending),
        "source": Text(source, style="dim"),
    }


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
