"""Figures a broker reports that cannot be right: not finite, or beyond any real account.

A garbled payload can carry 1e308 where a cash balance belongs; shown or summed, it would swamp
every consolidated figure. The manager refuses such a read, so the account is marked DEGRADED
with a sentence saying what was wrong, and its last good figures stay on screen, flagged stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from .models import MAX_PRICE, Balance, Position

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


def implausible(balance: Balance, positions: Iterable[Position]) -> str | None:
    """A sentence naming the first figure that cannot be right, or None when all can be."""
    for name in ("cash", "equity", "buying_power", "realized_pnl", "unrealized_pnl"):
        problem = _problem(getattr(balance, name), f"the reported {name.replace('_', ' ')}", MAX_AMOUNT)
        if problem is not None:
            return problem
    for position in positions:
        for name, ceiling in (
            ("quantity", MAX_AMOUNT),
            ("avg_price", MAX_PRICE),
            ("last_price", MAX_PRICE),
            ("multiplier", MAX_AMOUNT),
        ):
            what = f"the reported {name.replace('_', ' ')} of {position.symbol}"
            problem = _problem(getattr(position, name), what, ceiling)
            if problem is not None:
                return problem
    return None
