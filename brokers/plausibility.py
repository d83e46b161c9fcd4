"""Figures a broker reports that cannot be right: not finite, or beyond any real account.

A garbled payload can carry 1e308 where a cash balance belongs; shown or summed, it would swamp
every consolidated figure. The manager refuses such a read, so the account is marked DEGRADED
with a sentence saying what was wrong, and its last good figures stay on screen, flagged stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal

from .models import MAX_PRICE, Balance, Position, shown

# Far above any real account or holding, far below where Decimal arithmetic gets slow or overflows.
MAX_AMOUNT = Decimal("1e15")


def _problem(value: Decimal | None, what: str, ceiling: Decimal) -> str | None:
    if value is None:
        return None
    if not value.is_finite():
        return f"{what} is {value}, not a number"
    if abs(value) > ceiling:
        return f"{what} is {value:.3E}, which cannot be right"
    return None


def _figures(
    balance: Balance, positions: Iterable[Position]
) -> Iterator[tuple[Decimal | None, str, Decimal]]:
    """Each reported figure, what to call it, and the most it can plausibly be."""
    yield balance.cash, "the reported cash", MAX_AMOUNT
    yield balance.equity, "the reported equity", MAX_AMOUNT
    yield balance.buying_power, "the reported buying power", MAX_AMOUNT
    yield balance.realized_pnl, "the reported realized pnl", MAX_AMOUNT
    yield balance.unrealized_pnl, "the reported unrealized pnl", MAX_AMOUNT
    yield balance.margin_used, "the reported margin used", MAX_AMOUNT
    yield balance.settled_cash, "the reported settled cash", MAX_AMOUNT
    yield balance.unsettled_cash, "the reported unsettled cash", MAX_AMOUNT
    for position in positions:
        of = shown(position.symbol)  # a symbol is whatever the broker sent: quote it short
        yield position.quantity, f"the reported quantity of {of}", MAX_AMOUNT
        yield position.avg_price, f"the reported avg price of {of}", MAX_PRICE
        yield position.last_price, f"the reported last price of {of}", MAX_PRICE
        yield position.multiplier, f"the reported multiplier of {of}", MAX_AMOUNT
        yield position.previous_close, f"the reported previous close of {of}", MAX_PRICE
        yield position.day_pnl, f"the reported day pnl of {of}", MAX_AMOUNT
        yield position.realized_today, f"the reported realized pnl today of {of}", MAX_AMOUNT


def implausible(balance: Balance, positions: Iterable[Position]) -> str | None:
    """A sentence naming the first figure that cannot be right, or None when all can be."""
    for value, what, ceiling in _figures(balance, positions):
        problem = _problem(value, what, ceiling)
        if problem is not None:
            return problem
    return None
