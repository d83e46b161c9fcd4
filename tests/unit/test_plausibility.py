"""Every figure a broker reports that the screens add up is checked before it is used: one
beyond reason (a garbled payload) is named, never summed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.account_state import Balance, Position
from brokers.plausibility import implausible

D = Decimal


def balance(**fields: object) -> Balance:
    return Balance(account="ib", cash=D(1000), equity=D(1000), buying_power=D(2000), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "named"),
    [
        ("margin_used", "margin used"),
        ("settled_cash", "settled cash"),
        ("unsettled_cash", "unsettled cash"),
    ],
)
def test_a_balance_figure_beyond_reason_is_named(field: str, named: str) -> None:
    problem = implausible(balance(**{field: D("-1E+400")}), [])
    assert problem is not None and named in problem
    assert implausible(balance(**{field: D(500)}), []) is None


@pytest.mark.parametrize(
    ("field", "named"),
    [("previous_close", "previous close"), ("day_pnl", "day pnl"), ("realized_today", "realized pnl today")],
)
def test_a_position_figure_beyond_reason_is_named(field: str, named: str) -> None:
    position = Position(account="ib", symbol="AAPL", quantity=D(10), avg_price=D(150), **{field: D("1E+300")})
    problem = implausible(balance(), [position])
    assert problem is not None and named in problem and "AAPL" in problem
