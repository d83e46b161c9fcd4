"""Positions and working orders per account, as the execution layer believes them.

Kept in memory from broker reads and fills so that a risk check never waits for a broker; it is
what ``brokers.risk`` checks read (it implements ``RiskContext``). The brokers' word wins: a
reconcile seeds the book from their positions and reports where it differed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal

from .base import FxSource, PriceSource
from .events import PositionDiff
from .models import WORKING_STATUSES, Fill, Order, OrderRequest, Position, Side
from .riskstate import DayBaseline, DayStore

__all__ = ["Book"]

_ZERO = Decimal(0)


class _Holding:
    """One position as the execution layer tracks it. ``basis`` is the average price for the
    day's P&L: positions carried in from before are marked at the price when first seen."""

    __slots__ = ("basis", "quantity", "realized")

    def __init__(self, quantity: Decimal = _ZERO, basis: Decimal = _ZERO) -> None:
        self.quantity = quantity
        self.basis = basis
        self.realized = _ZERO

    def apply(self, signed: Decimal, price: Decimal, commission: Decimal) -> None:
        quantity = self.quantity
        self.realized -= commission
        if quantity == 0 or (quantity > 0) == (signed > 0):
            total = abs(quantity) + abs(signed)
            self.basis = (self.basis * abs(quantity) + price * abs(signed)) / total
            self.quantity = quantity + signed
            return
        closed = min(abs(signed), abs(quantity))
        self.realized += closed * (price - self.basis) * (1 if quantity > 0 else -1)
        self.quantity = quantity + signed
        if self.quantity == 0:
            self.basis = _ZERO
        elif (self.quantity > 0) != (quantity > 0):
            self.basis = price  # flipped: the remainder was opened at this price


def _utc_today() -> date:
    return datetime.now(UTC).date()


class Book:
    """Positions and working orders per account. ``prices`` values positions and names each
    account's currency; ``fx`` turns other currencies into ``base_currency`` (without it only
    amounts already in the base currency can be added up)."""

    def __init__(
        self,
        prices: PriceSource,
        fx: FxSource | None,
        base_currency: str,
        today: Callable[[], date] = _utc_today,
    ) -> None:
        self.prices = prices
        self.fx = fx
        self.base_currency = base_currency
        self._today = today
        self.holdings: dict[tuple[str, str], _Holding] = {}
        # The same holdings by account, then symbol: the daily loss check re-values one
        # account's positions for every order to it, and must not walk everybody's.
        self._by_account: dict[str, dict[str, _Holding]] = {}
        self.open: dict[str, dict[str, Order]] = {}  # account -> working orders by client id
        self._open_by_key: dict[tuple[str, str, Side], dict[str, Order]] = {}
        self._seen_fills: set[tuple[str, str]] = set()
        self._day = self._today()
        # Where the day's baseline is kept across restarts and processes, and the holdings
        # changed since it was last written.
        self.store: DayStore | None = None
        self._dirty: set[tuple[str, str]] = set()

    # -- keeping it ----------------------------------------------------------------------
    def track(self, order: Order) -> None:
        """Index ``order`` as working or not, after any change to it."""
        account = order.account
        if account is None:
            return
        request = order.request
        key = (account, request.symbol, request.side)
        coid = request.client_order_id
        by_account = self.open.get(account)
        by_key = self._open_by_key.get(key)
        if order.status in WORKING_STATUSES:
            if by_account is None:
                by_account = self.open[account] = {}
            by_account[coid] = order
            if by_key is None:
                by_key = self._open_by_key[key] = {}
            by_key[coid] = order
        else:
            if by_account is not None:
                by_account.pop(coid, None)
            if by_key is not None:
                by_key.pop(coid, None)

    def add_fill(self, account: str, fill: Fill) -> bool:
        """Move the position by a fill, once per fill id. Returns whether it was new."""
        key = (account, fill.fill_id)
        if key in self._seen_fills:
            return False
        self._seen_fills.add(key)
        holding = self.holdings.get((account, fill.symbol))
        if holding is None:
            holding = self._add_holding(account, fill.symbol, _Holding())
        quantity = fill.quantity
        holding.apply(quantity if fill.side is Side.BUY else -quantity, fill.price, fill.commission)
        self._dirty.add((account, fill.symbol))
        return True

    def seed(self, account: str, positions: Iterable[Position]) -> list[PositionDiff]:
        """Take the broker's positions as the truth; returns where the book disagreed."""
        diffs: list[PositionDiff] = []
        reported = {position.symbol: position for position in positions}
        for symbol, holding in self._by_account.get(account, {}).items():
            if symbol not in reported and holding.quantity != 0:
                diffs.append(PositionDiff(account, symbol, holding.quantity, _ZERO))
                holding.quantity = _ZERO
        stored = self.store.load(account, self._day) if self.store is not None else {}
        for symbol, closed in stored.items():
            if symbol not in reported and (account, symbol) not in self.holdings:
                # Closed earlier today: its profit or loss still counts.
                self._add_holding(account, symbol, _Holding(_ZERO, closed.basis)).realized = closed.realized
        for symbol, position in reported.items():
            known = self.holdings.get((account, symbol))
            if known is None:
                kept = stored.get(symbol)
                if kept is not None:
                    holding = self._add_holding(account, symbol, _Holding(position.quantity, kept.basis))
                    holding.realized = kept.realized
                    continue
                mark = self.last_price(symbol, account) or position.avg_price or _ZERO
                self._add_holding(account, symbol, _Holding(position.quantity, mark))
                self._dirty.add((account, symbol))
            elif known.quantity != position.quantity:
                diffs.append(PositionDiff(account, symbol, known.quantity, position.quantity))
                known.quantity = position.quantity
        return diffs

    def _add_holding(self, account: str, symbol: str, holding: _Holding) -> _Holding:
        self.holdings[(account, symbol)] = holding
        by_symbol = self._by_account.get(account)
        if by_symbol is None:
            by_symbol = self._by_account[account] = {}
        by_symbol[symbol] = holding
        return holding

    def positions(self) -> dict[tuple[str, str], Decimal]:
        """(account, symbol) -> signed quantity, as the execution layer believes it."""
        return {key: holding.quantity for key, holding in self.holdings.items() if holding.quantity}

    # -- RiskContext ---------------------------------------------------------------------
    def position(self, account: str | None, symbol: str) -> Decimal:
        if account is None:
            return sum((h.quantity for (_, s), h in self.holdings.items() if s == symbol), _ZERO)
        holding = self.holdings.get((account, symbol))
        return holding.quantity if holding is not None else _ZERO

    def pending(self, account: str | None, symbol: str, side: Side) -> Decimal:
        if account is not None:
            working = self._open_by_key.get((account, symbol, side))
            return sum((o.remaining_quantity for o in working.values()), _ZERO) if working else _ZERO
        return sum((self.pending(name, symbol, side) for name in self.open), _ZERO)

    def open_orders(self, account: str | None) -> int:
        if account is not None:
            return len(self.open.get(account, ()))
        return sum(len(orders) for orders in self.open.values())

    def last_price(self, symbol: str, account: str | None) -> Decimal | None:
        try:
            return self.prices.last_price(symbol, account)
        except KeyError:
            return None

    def account_currency(self, account: str | None) -> str:
        if account is None:
            return self.base_currency
        try:
            return self.prices.get(account).currency
        except KeyError:
            return self.base_currency

    def order_currency(self, request: OrderRequest, account: str | None) -> str:
        return request.currency or self.account_currency(account)

    def to_base(self, amount: Decimal, currency: str) -> Decimal | None:
        if currency == self.base_currency:
            return amount
        if self.fx is None:
            return None
        return self.fx.convert(amount, currency).amount

    def is_reducing(self, request: OrderRequest, account: str | None) -> bool:
        """Would this order shrink the position without flipping it, counting the working
        orders already on the same side?"""
        current = self.position(account, request.symbol)
        if current == 0 or (current > 0) == (request.side is Side.BUY):
            return False
        already = self.pending(account, request.symbol, request.side)
        return already + request.quantity <= abs(current)

    def trading_day(self) -> date:
        """The day the daily P&L is counted for."""
        return self._today()

    def daily_pnl(self, account: str | None) -> Decimal | None:
        today = self._today()
        if today != self._day:
            self._new_day(today)
        by_account = self._by_account
        names: Iterable[str] = by_account if account is None else (account,)
        total = _ZERO
        for name in names:
            currency = None
            for symbol, holding in by_account.get(name, {}).items():
                pnl = holding.realized
                if holding.quantity:
                    last = self.last_price(symbol, name)
                    if last is not None:
                        pnl += (last - holding.basis) * holding.quantity
                if pnl:
                    if currency is None:
                        currency = self.account_currency(name)
                    converted = self.to_base(pnl, currency)
                    if converted is None:
                        return None  # cannot add it up honestly
                    total += converted
        return total

    def save_baseline(self) -> None:
        """Write the day's baseline of every holding changed since the last call (see
        ``store``). Call now and then, off the order path."""
        store = self.store
        if store is None or not self._dirty:
            return
        if self._today() != self._day:
            self._new_day(self._today())
        dirty, self._dirty = self._dirty, set()
        rows = [
            (account, symbol, DayBaseline(holding.basis, holding.realized))
            for account, symbol in dirty
            if (holding := self.holdings.get((account, symbol))) is not None
        ]
        if not store.save(self._day, rows):
            self._dirty |= dirty

    def _new_day(self, today: date) -> None:
        self._day = today
        self._dirty.update(self.holdings)
        for (name, symbol), holding in self.holdings.items():
            holding.realized = _ZERO
            last = self.last_price(symbol, name)
            if last is not None:
                holding.basis = last
