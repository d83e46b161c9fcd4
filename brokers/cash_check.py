"""The cash-account check: a cash account spends settled cash only.

Not a limit of ``RiskLimits``: whether an account may spend unsettled money is a fact about the
account (its balance says ``cash_account``), so the check joins the plans of cash accounts alone
(``RiskEngine.guard_cash_accounts``) and a margin account's orders never meet it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from .models import OrderRequest, RejectCode, Side
from .risk import Check, RiskContext, RiskLimits, notional_price, size_at
from .riskstate import TokenBuckets
from .settled_cash import Spendable

__all__ = ["CashAccountCheck", "SettledFunds"]


class SettledFunds(Protocol):
    """What the cash-account check reads (``brokers.settled_cash.CashLedger``). No I/O."""

    @property
    def generation(self) -> int:
        """Changes whenever the set of cash accounts does."""

    def is_cash_account(self, account: str) -> bool: ...

    def spendable(self, account: str) -> Spendable | None: ...

    def unknown_reason(self, account: str) -> str:
        """Why ``spendable(account)`` is None."""

    def reserve(self, account: str, client_order_id: str, unit_cost: Decimal, quantity: Decimal) -> None: ...


class CashAccountCheck(Check):
    """A cash account buys with settled cash only: while sale proceeds there have not settled,
    settled cash, less purchases not yet paid for, less working buys, must cover the order.
    Sales always pass, and so does a buy when nothing is unsettled (the broker checks its own
    cash then)."""

    code = RejectCode.UNSETTLED_FUNDS
    limit = ""
    stateful = True

    def __init__(
        self, clock: Callable[[], float], buckets: TokenBuckets | None = None, *, funds: SettledFunds
    ) -> None:
        super().__init__(clock, buckets)
        self.funds = funds
        # client_order_id -> (cost per unit, quantity) of the buy being checked, for accept()
        self._last: tuple[str, Decimal, Decimal] | None = None

    def enabled(self, limits: RiskLimits) -> bool:
        return False  # joins the plans of cash accounts by name (RiskEngine._plan)

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        self._last = None
        if request.side is not Side.BUY or account is None:
            return None
        funds = self.funds.spendable(account)
        if funds is None:
            return (
                f"{account} is a cash account and its settled cash is not known: "
                f"{self.funds.unknown_reason(account)}, so no buy is sent until it is"
            )
        price = notional_price(request, account, ctx)
        if price is None:
            if not funds.incoming:
                return None  # nothing unsettled that it could spend: the broker checks its cash
            return (
                f"no price for {request.symbol} to weigh the order against the settled cash of "
                f"{account}, and sale proceeds there have not settled yet{funds.incoming_text()}; "
                "send a limit order"
            )
        instrument = request.instrument
        unit = price * instrument.multiplier
        currency = ctx.order_currency(request, account)
        if currency != funds.currency:
            in_base = ctx.to_base(unit, currency)
            one = ctx.to_base(Decimal(1), funds.currency)
            if in_base is None or one is None or one <= 0:
                return (
                    f"cannot value the order in {funds.currency}: no exchange rate for {currency}, "
                    f"so the settled cash of {account} cannot be checked"
                )
            unit = in_base / one
        quantity = size_at(request, price)  # a notional order spends its money
        cost = unit * quantity
        # More than settled cash covers and nothing unsettled to spend: a plain lack of funds,
        # which the broker refuses itself.
        if cost > funds.amount and funds.incoming:
            return funds.shortfall(f"buying {request.size_text} {request.symbol}", cost)
        self._last = (request.client_order_id, unit, quantity)
        return None

    def accept(self, request: OrderRequest, account: str | None, limits: RiskLimits) -> None:
        last, self._last = self._last, None
        if last is not None and account is not None and last[0] == request.client_order_id:
            self.funds.reserve(account, last[0], last[1], last[2])
