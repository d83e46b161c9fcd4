"""Cash, positions and profit and loss of one paper account.

Realised P&L is trading P&L: price difference times quantity closed, before commissions.
Commissions come straight out of cash, so they show in equity but not in realised P&L.

Cash moves on the trade date; what has not settled yet is kept as pending settlements
(``brokers.settlement`` gives each fill its date) until the clock passes their settlement
moment. A cash account spends only settled cash: sale proceeds still pending are not available.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from ..models import AssetClass, Side

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")

CASH = "cash"
MARGIN = "margin"


@dataclass(frozen=True, slots=True)
class CommissionSchedule:
    """Per share plus percent of notional, with a minimum per order.

    The minimum applies to the whole order, not to each partial fill (as at Interactive
    Brokers): the first fill pays at least the minimum, later fills only what the order's total
    grows by. A minimum with no other rate is a flat fee per order.
    """

    per_share: Decimal = _ZERO
    minimum: Decimal = _ZERO
    percent: Decimal = _ZERO

    @property
    def is_free(self) -> bool:
        return not (self.per_share or self.minimum or self.percent)

    def total(self, quantity: Decimal, notional: Decimal) -> Decimal:
        """What an order that has filled ``quantity`` for ``notional`` costs in all."""
        if self.is_free:
            return _ZERO
        raw = self.per_share * quantity + notional * self.percent / _HUNDRED
        return max(raw, self.minimum).quantize(_CENT, ROUND_HALF_UP)


@dataclass(slots=True)
class Holding:
    """One symbol's position. ``quantity`` is signed: negative is short."""

    quantity: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    asset_class: AssetClass = AssetClass.STOCK

    def apply(self, signed_quantity: Decimal, price: Decimal) -> Decimal:
        """Add a trade; returns the P&L it realised."""
        held = self.quantity
        if held == 0 or (held > 0) == (signed_quantity > 0):
            total = held + signed_quantity
            self.avg_price = (self.avg_price * held + price * signed_quantity) / total
            self.quantity = total
            return _ZERO
        closed = min(abs(signed_quantity), abs(held))
        realized = (price - self.avg_price) * closed * (1 if held > 0 else -1)
        remaining = held + signed_quantity
        if remaining == 0:
            self.avg_price = _ZERO
        elif (remaining > 0) != (held > 0):
            # Through zero: what is left is a new position opened at this trade's price.
            self.avg_price = price
        self.quantity = remaining
        self.realized_pnl += realized
        return realized


@dataclass(frozen=True, slots=True)
class PendingCash:
    """Cash of the fills that settle at one moment and have not yet: sale proceeds still to come
    in (``credits``) and the cost of purchases still to be paid (``debits``), commissions
    included."""

    settles_at: datetime
    settlement_date: date
    credits: Decimal
    debits: Decimal

    @property
    def net(self) -> Decimal:
        return self.credits - self.debits


@dataclass(slots=True)
class _Due:
    settlement_date: date
    credits: Decimal = _ZERO
    debits: Decimal = _ZERO


class SimAccount:
    def __init__(
        self,
        initial_cash: Decimal,
        *,
        account_type: str = MARGIN,
        leverage: Decimal = Decimal(2),
        allow_short: bool = True,
    ) -> None:
        self.initial_cash = initial_cash
        self.account_type = account_type
        self.leverage = leverage if account_type == MARGIN else Decimal(1)
        # A cash account cannot borrow shares, whatever the broker's short-selling switch says.
        self.allow_short = allow_short and account_type == MARGIN
        self.cash = initial_cash
        self.realized_pnl = _ZERO
        self.commissions = _ZERO
        self.holdings: dict[str, Holding] = {}
        # Pending settlements by settlement moment, and the moments in a heap. Fills of one
        # trade date share a moment, so this stays small however many fills there are.
        self._pending: dict[datetime, _Due] = {}
        self._moments: list[datetime] = []
        self.pending_credits = _ZERO
        self.pending_debits = _ZERO

    def reset(self) -> None:
        self.cash = self.initial_cash
        self.realized_pnl = _ZERO
        self.commissions = _ZERO
        self.holdings.clear()
        self._pending.clear()
        self._moments.clear()
        self.pending_credits = self.pending_debits = _ZERO

    # -- settlement -----------------------------------------------------------------------
    @property
    def is_cash(self) -> bool:
        return self.account_type == CASH

    def add_pending(self, settles_at: datetime, settlement_date: date, amount: Decimal) -> None:
        """``amount`` (signed: a sale's proceeds positive) settles at ``settles_at``."""
        due = self._pending.get(settles_at)
        if due is None:
            due = self._pending[settles_at] = _Due(settlement_date)
            heapq.heappush(self._moments, settles_at)
        if amount > 0:
            due.credits += amount
            self.pending_credits += amount
        else:
            due.debits -= amount
            self.pending_debits -= amount

    def settle(self, now: datetime) -> None:
        """Count as settled whatever settles at or before ``now``."""
        moments = self._moments
        while moments and moments[0] <= now:
            due = self._pending.pop(heapq.heappop(moments))
            self.pending_credits -= due.credits
            self.pending_debits -= due.debits

    def pending(self) -> list[PendingCash]:
        """What has not settled yet, soonest first."""
        return [
            PendingCash(moment, due.settlement_date, due.credits, due.debits)
            for moment, due in sorted(self._pending.items())
        ]

    @property
    def settled_cash(self) -> Decimal:
        return self.cash - self.pending_credits + self.pending_debits

    @property
    def unsettled_cash(self) -> Decimal:
        return self.pending_credits - self.pending_debits

    @property
    def spendable_cash(self) -> Decimal:
        """Settled cash not already owed for purchases that have not settled."""
        return self.cash - self.pending_credits

    def incoming(self) -> list[tuple[date, Decimal]]:
        """Sale proceeds still to settle, summed by settlement date, soonest first."""
        by_day: dict[date, Decimal] = {}
        for entry in self.pending():
            if entry.credits:
                by_day[entry.settlement_date] = by_day.get(entry.settlement_date, _ZERO) + entry.credits
        return sorted(by_day.items())

    def position(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol)
        return holding.quantity if holding is not None else _ZERO

    def seed(
        self, symbol: str, quantity: Decimal, avg_price: Decimal, asset_class: AssetClass = AssetClass.STOCK
    ) -> None:
        """Start with a position that cost nothing from this account's cash (a demo's holdings)."""
        self.holdings[symbol] = Holding(quantity, avg_price if quantity else _ZERO, _ZERO, asset_class)

    def apply_fill(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        commission: Decimal,
        asset_class: AssetClass = AssetClass.STOCK,
    ) -> Decimal:
        signed = quantity if side is Side.BUY else -quantity
        holding = self.holdings.get(symbol)
        if holding is None:
            holding = self.holdings[symbol] = Holding(asset_class=asset_class)
        realized = holding.apply(signed, price)
        self.cash -= signed * price + commission
        self.commissions += commission
        self.realized_pnl += realized
        return realized

    # -- valuation ------------------------------------------------------------------------
    def gross_exposure(self, prices: Mapping[str, Decimal]) -> Decimal:
        total = _ZERO
        for symbol, holding in self.holdings.items():
            if holding.quantity:
                total += abs(holding.quantity) * prices.get(symbol, holding.avg_price)
        return total

    def market_value(self, prices: Mapping[str, Decimal]) -> Decimal:
        total = _ZERO
        for symbol, holding in self.holdings.items():
            if holding.quantity:
                total += holding.quantity * prices.get(symbol, holding.avg_price)
        return total

    def unrealized_pnl(self, prices: Mapping[str, Decimal]) -> Decimal:
        total = _ZERO
        for symbol, holding in self.holdings.items():
            if holding.quantity:
                total += (prices.get(symbol, holding.avg_price) - holding.avg_price) * holding.quantity
        return total

    def equity(self, prices: Mapping[str, Decimal]) -> Decimal:
        return self.cash + self.market_value(prices)

    def buying_power(self, prices: Mapping[str, Decimal]) -> Decimal:
        if self.account_type == CASH:
            return max(self.spendable_cash, _ZERO)
        # equity() and gross_exposure() in one pass: this runs for every order that adds exposure.
        value = gross = _ZERO
        for symbol, holding in self.holdings.items():
            quantity = holding.quantity
            if quantity:
                worth = quantity * prices.get(symbol, holding.avg_price)
                value += worth
                gross += abs(worth)
        return max(self.leverage * (self.cash + value) - gross, _ZERO)

    # -- pre-trade checks -----------------------------------------------------------------
    def refusal(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        commission: Decimal,
        prices: Mapping[str, Decimal],
    ) -> tuple[str, str] | None:
        """(code, reason) if a trade of ``quantity`` at ``price`` is not allowed now, else None."""
        held = self.position(symbol)
        after = held + (quantity if side is Side.BUY else -quantity)
        if after < 0 and after < held and not self.allow_short:
            why = "this is a cash account" if self.account_type == CASH else "short selling is switched off"
            return "SHORT_NOT_ALLOWED", (
                f"selling {quantity} {symbol} would leave a short position of {after} and {why}"
            )
        if self.account_type == CASH:
            if side is Side.SELL:
                return None
            cost = quantity * price + commission
            spendable = self.spendable_cash
            if cost > spendable:
                return "INSUFFICIENT_FUNDS", (
                    f"buying {quantity} {symbol} needs about {cost:,.2f} and only {max(spendable, _ZERO):,.2f} "
                    f"settled cash is available{_incoming_text(self.incoming())}"
                )
            return None
        added = (abs(after) - abs(held)) * price
        if added <= 0:
            return None  # reduces exposure: always allowed
        power = self.buying_power(prices)
        if added + commission > power:
            return "INSUFFICIENT_FUNDS", (
                f"{side.value.lower()}ing {quantity} {symbol} needs about {added + commission:,.2f} "
                f"of buying power and {power:,.2f} is available"
            )
        return None


def _incoming_text(incoming: list[tuple[date, Decimal]]) -> str:
    if not incoming:
        return ""
    parts = [f"{amount:,.2f} on {day:%a %Y-%m-%d}" for day, amount in incoming[:3]]
    return "; sale proceeds settle " + ", ".join(parts)
