"""Pre-trade risk checks.

Each check is one small class: it says which limit turns it on and, given an order, returns
``None`` or a sentence a trader understands. ``CHECKS`` lists them in the order they run;
adding a check means writing a class and naming it there.

``RiskContext`` is what the checks read (``brokers.book.Book`` in the service): positions and
working orders per account, kept in memory so that a check never waits for a broker.

Limits are per account. The global ``[risk]`` table is the default every account inherits; an
account's own ``risk`` table replaces those values field by field (so a larger account can be
given a larger limit). A check whose limit is unset is not run at all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .enums import OrderType
from .exit_risk import bracket_refusal, leg_refusal
from .instruments import Instrument
from .models import OrderRequest, RejectCode, Side
from .order_request import OrderClass
from .riskstate import LocalBuckets, SharedBuckets, TokenBuckets, bucket_folder

if TYPE_CHECKING:
    from .cash_check import SettledFunds

_ZERO = Decimal(0)
_STOP = OrderType.STOP


class Rejection(NamedTuple):
    code: str
    reason: str


class RiskLimits(BaseModel):
    """Limits for one scope (global, or one account). Every limit is off when unset."""

    model_config = ConfigDict(extra="forbid")

    max_order_quantity: Decimal | None = Field(default=None, gt=0)
    max_order_notional: Decimal | None = Field(default=None, gt=0)  # in the base currency
    max_position: Decimal | None = Field(default=None, gt=0)  # absolute, per symbol
    price_band_percent: Decimal | None = Field(default=None, gt=0, le=100)
    max_orders_per_second: Decimal | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)
    max_open_orders: int | None = Field(default=None, gt=0)
    daily_loss_limit: Decimal | None = Field(default=None, gt=0)  # in the base currency
    # Shell-style patterns, e.g. "AAPL", "*.NS", "AAPL CFD", "* OPTION". A pattern is matched
    # against the instrument's label (``Instrument.label``: a stock's is its symbol, a CFD's
    # "AAPL CFD"), so allowing "AAPL" allows the shares, not a CFD or an option on them.
    # Denying also matches the symbol as typed and the underlying's root: denying "AAPL" denies
    # its CFD and its options too.
    allowed_symbols: list[str] | None = None
    denied_symbols: list[str] | None = None
    duplicate_window_seconds: Decimal | None = Field(default=None, gt=0)

    @field_validator("allowed_symbols", "denied_symbols")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [pattern.strip().upper() for pattern in value if pattern.strip()]

    def merged(self, override: RiskLimits | None) -> RiskLimits:
        """These limits with every value ``override`` sets replacing ours."""
        if override is None:
            return self
        values = self.model_dump()
        values.update({key: value for key, value in override.model_dump().items() if value is not None})
        return RiskLimits.model_validate(values)


class RiskContext(Protocol):
    """What the checks may ask about the world. Must not do I/O: it runs on the order path."""

    base_currency: str

    def position(self, account: str | None, instrument: Instrument) -> Decimal: ...

    def pending(self, account: str | None, instrument: Instrument, side: Side) -> Decimal:
        """Remaining quantity of working orders on that side, not counting this one."""

    def pending_notional(self, account: str | None, instrument: Instrument, side: Side) -> Decimal:
        """Money that working notional orders on that side have still to spend."""

    def open_orders(self, account: str | None) -> int: ...

    def last_price(self, instrument: Instrument, account: str | None) -> Decimal | None: ...

    def order_currency(self, request: OrderRequest, account: str | None) -> str: ...

    def to_base(self, amount: Decimal, currency: str) -> Decimal | None: ...

    def daily_pnl(self, account: str | None) -> Decimal | None:
        """Realised plus unrealised profit since the start of the day, in the base currency."""

    def is_reducing(self, request: OrderRequest, account: str | None) -> bool: ...


def _num(value: Decimal | float) -> str:
    return f"{Decimal(value).normalize():,f}" if isinstance(value, Decimal) else f"{value:,}"


def _scope(account: str | None) -> str:
    return account if account is not None else "all accounts together"


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def notional_price(request: OrderRequest, account: str | None, ctx: RiskContext) -> Decimal | None:
    """The price an order is valued at: the one the trader named, else the last price."""
    price = request.limit_price if request.limit_price is not None else request.stop_price
    return price if price is not None else ctx.last_price(request.instrument, account)


def size_at(request: OrderRequest, price: Decimal) -> Decimal:
    """The order's quantity; a notional order's, its amount at ``price`` (positive)."""
    if request.quantity is not None:
        return request.quantity
    return (request.notional or _ZERO) / price


def order_quantity(request: OrderRequest, account: str | None, ctx: RiskContext) -> Decimal | None:
    """The order's quantity; for a notional order, its amount at the last price (None without
    one, and the check that needs it refuses the order rather than guess)."""
    if request.quantity is not None:
        return request.quantity
    price = notional_price(request, account, ctx)
    if price is None or price <= 0:
        return None
    return size_at(request, price)


class Check:
    """One pre-trade check. ``limit`` names the field of ``RiskLimits`` that switches it on.

    ``about_the_order`` checks judge the order alone (size, price, symbol) and also apply to a
    parent order before it is split; the others judge an account's state (position, working
    orders, rate, losses) and only make sense for the child that goes to that account.
    """

    code: ClassVar[RejectCode]
    limit: ClassVar[str]
    about_the_order: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    # Whether checking spends something (a rate token): such a check runs after the exits'.
    spends: ClassVar[bool] = False

    def __init__(self, clock: Callable[[], float], buckets: TokenBuckets | None = None) -> None:
        self.clock = clock
        self.buckets: TokenBuckets = buckets if buckets is not None else LocalBuckets()

    def enabled(self, limits: RiskLimits) -> bool:
        """Whether ``limits`` switch this check on: by default, when its ``limit`` is set."""
        return limits.model_dump(include={self.limit})[self.limit] is not None

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        raise NotImplementedError

    def accept(self, request: OrderRequest, account: str | None, limits: RiskLimits) -> None:
        """The order passed every check: remember it (rate and duplicate checks do)."""


class SymbolListCheck(Check):
    code = RejectCode.SYMBOL_NOT_ALLOWED
    limit = "allowed_symbols"
    about_the_order = True

    def enabled(self, limits: RiskLimits) -> bool:
        return limits.allowed_symbols is not None or bool(limits.denied_symbols)

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        instrument = request.instrument
        label = instrument.label
        names = {request.symbol, instrument.symbol, label}
        for pattern in limits.denied_symbols or ():
            if any(fnmatchcase(name, pattern) for name in names):
                return f"{label} is on the deny list for {_scope(account)} ({pattern})"
        allowed = limits.allowed_symbols
        if allowed is not None and not any(fnmatchcase(label, pattern) for pattern in allowed):
            return f"{label} is not on the allow list for {_scope(account)}"
        return None


class MaxQuantityCheck(Check):
    code = RejectCode.MAX_QUANTITY
    limit = "max_order_quantity"
    about_the_order = True

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        cap = limits.max_order_quantity
        if cap is None:
            return None
        quantity = order_quantity(request, account, ctx)
        if quantity is None:
            return f"no price for {request.symbol} to size the notional order against the quantity limit"
        if quantity > cap:
            estimated = "" if request.quantity is not None else " (its notional at the last price)"
            return (
                f"quantity {_num(quantity)}{estimated} is above the limit of {_num(cap)} per order "
                f"for {_scope(account)}"
            )
        return None


class PriceBandCheck(Check):
    """Fat-finger guard: a limit or stop price far from the last price is almost always a typo."""

    code = RejectCode.PRICE_BAND
    limit = "price_band_percent"
    about_the_order = True

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        band = limits.price_band_percent
        if band is None or (request.limit_price is None and request.stop_price is None):
            return None
        last = ctx.last_price(request.instrument, account)
        if last is None or last <= 0:
            return (
                f"no last price for {request.symbol} to check the order price against, "
                f"so it is refused (price band {_num(band)}%)"
            )
        for name, price in (("limit price", request.limit_price), ("stop price", request.stop_price)):
            if price is None:
                continue
            off = abs(price - last) * 100 / last
            if off > band:
                return (
                    f"{name} {_num(price)} is {off:.1f}% away from the last price {_num(last)} of "
                    f"{request.symbol}; the band is {_num(band)}%"
                )
        return None


class MaxNotionalCheck(Check):
    code = RejectCode.MAX_NOTIONAL
    limit = "max_order_notional"
    about_the_order = True

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        cap = limits.max_order_notional
        if cap is None:
            return None
        currency = ctx.order_currency(request, account)
        if request.quantity is None:
            notional = request.notional or Decimal(0)
        else:
            price = notional_price(request, account, ctx)
            if price is None:
                return f"no price for {request.symbol} to value the order against the notional limit"
            notional = request.quantity * price
        base = ctx.to_base(notional, currency)
        if base is None:
            return (
                f"cannot value the order in {ctx.base_currency}: no exchange rate for {currency}, "
                f"so the notional limit cannot be checked"
            )
        if base > cap:
            shown = _money(base, ctx.base_currency)
            if currency != ctx.base_currency:
                shown = f"{_money(notional, currency)} ({shown})"
            return (
                f"order value {shown} is above the limit of {_money(cap, ctx.base_currency)} "
                f"per order for {_scope(account)}"
            )
        return None


class MaxPositionCheck(Check):
    code = RejectCode.MAX_POSITION
    limit = "max_position"

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        instrument, side = request.instrument, request.side
        current = ctx.position(account, instrument)
        pending = ctx.pending(account, instrument, side)
        quantity = order_quantity(request, account, ctx)
        money = ctx.pending_notional(account, instrument, side)
        price = ctx.last_price(instrument, account) if money else None
        if money and price:
            # Working notional orders count at what their money buys at the last price.
            pending += money / price
        if quantity is None or (money and not price):
            return (
                f"no price for {instrument.label} to size notional orders against the position "
                f"limit at {_scope(account)}"
            )
        if side is not Side.BUY:
            pending, quantity = -pending, -quantity
        projected = current + pending + quantity
        cap = limits.max_position
        # An order that brings an oversized position back towards the limit is always welcome.
        if cap is not None and abs(projected) > cap and abs(projected) > abs(current):
            return (
                f"the position in {instrument.label} at {_scope(account)} would reach {_num(projected)} "
                f"(now {_num(current)}, working {_num(pending)}); the limit is {_num(cap)}"
            )
        return None


class MaxOpenOrdersCheck(Check):
    code = RejectCode.MAX_OPEN_ORDERS
    limit = "max_open_orders"

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        cap = limits.max_open_orders
        count = ctx.open_orders(account)
        if cap is not None and count >= cap:
            return f"{_scope(account)} already has {count} working orders; the limit is {cap}"
        return None


class DailyLossCheck(Check):
    """Past the daily loss limit only reducing orders pass. The service also moves the kill
    switch to REDUCING when this fires (see ``RiskEngine.daily_loss_breach``)."""

    code = RejectCode.DAILY_LOSS
    limit = "daily_loss_limit"

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        message = daily_loss_message(account, limits, ctx)
        if message is None or ctx.is_reducing(request, account):
            return None
        return f"{message}; only orders that reduce a position are accepted"


def daily_loss_message(account: str | None, limits: RiskLimits, ctx: RiskContext) -> str | None:
    cap = limits.daily_loss_limit
    if cap is None:
        return None
    pnl = ctx.daily_pnl(account)
    if pnl is None or pnl > -cap:
        return None
    return (
        f"daily loss limit reached at {_scope(account)}: loss {_money(-pnl, ctx.base_currency)} against "
        f"a limit of {_money(cap, ctx.base_currency)}"
    )


class DuplicateOrderCheck(Check):
    """Same account, symbol, side, quantity and price again within the window: a double
    keypress or a script stuck in a loop."""

    code = RejectCode.DUPLICATE_ORDER
    limit = "duplicate_window_seconds"
    stateful = True

    def __init__(self, clock: Callable[[], float], buckets: TokenBuckets | None = None) -> None:
        super().__init__(clock, buckets)
        self._seen: OrderedDict[tuple[object, ...], float] = OrderedDict()
        self._longest = 0.0

    @staticmethod
    def _key(request: OrderRequest, account: str | None) -> tuple[object, ...]:
        return (
            account,
            request.instrument,
            request.side,
            request.quantity,
            request.notional,
            request.order_type,
            request.limit_price,
            request.stop_price,
        )

    def _prune(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, at = next(iter(seen.items()))
            if now - at <= self._longest:
                break
            seen.popitem(last=False)

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        now = self.clock()
        self._prune(now)
        at = self._seen.get(self._key(request, account))
        window = float(limits.duplicate_window_seconds or 0)
        if at is not None and now - at <= window:
            return (
                f"the same order ({request.side.value} {request.size_text} {request.symbol}) "
                f"was sent to {account} {now - at:.1f}s ago; wait {window:g}s to send it again"
            )
        return None

    def accept(self, request: OrderRequest, account: str | None, limits: RiskLimits) -> None:
        key = self._key(request, account)
        self._longest = max(self._longest, float(limits.duplicate_window_seconds or 0))
        self._seen.pop(key, None)
        self._seen[key] = self.clock()


class RateLimitCheck(Check):
    """A token bucket per account: ``max_orders_per_second`` sustained, ``burst`` at once.

    The token is taken by the check itself, in one step, so that processes sharing the buckets
    (``brokers.riskstate.SharedBuckets``) cannot both spend the last one. It runs last, so an
    order it passes passes every check."""

    code = RejectCode.RATE_LIMIT
    limit = "max_orders_per_second"
    spends = True

    @staticmethod
    def _shape(limits: RiskLimits) -> tuple[float, float]:
        rate = float(limits.max_orders_per_second or 0)
        return rate, float(limits.burst) if limits.burst else max(1.0, rate)

    def check(
        self, request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
    ) -> str | None:
        rate, capacity = self._shape(limits)
        if self.buckets.take(account, rate, capacity, self.clock()):
            return None
        return (
            f"{account} is sending orders faster than {rate:g} per second "
            f"(burst {capacity:g}); try again in a moment"
        )


CHECKS: tuple[type[Check], ...] = (
    SymbolListCheck,
    MaxQuantityCheck,
    PriceBandCheck,
    MaxNotionalCheck,
    MaxPositionCheck,
    MaxOpenOrdersCheck,
    DailyLossCheck,
    DuplicateOrderCheck,
    RateLimitCheck,
)


def _enabled(check: Check, limits: RiskLimits) -> bool:
    return check.enabled(limits)


class RiskEngine:
    def __init__(
        self,
        global_limits: RiskLimits | None = None,
        per_account: dict[str, RiskLimits] | None = None,
        *,
        clock: Callable[[], float] | None = None,
        checks: tuple[type[Check], ...] = CHECKS,
        state_dir: Path | None = None,
    ) -> None:
        """``state_dir``: keep the order-rate buckets there, shared by every process using the
        folder (``clock`` must then be the machine's monotonic clock, the default)."""
        self.global_limits = global_limits or RiskLimits()
        self.per_account = dict(per_account or {})
        self.clock = clock or time.monotonic
        self.buckets: TokenBuckets = (
            SharedBuckets(bucket_folder(state_dir)) if state_dir is not None else LocalBuckets()
        )
        self.shared = state_dir is not None
        self._checks = [check_cls(self.clock, self.buckets) for check_cls in checks]
        # account -> (limits, the checks they switch on); built once per account.
        self._plans: dict[str, tuple[RiskLimits, list[Check]]] = {}
        # Cash accounts' settled-cash check (``guard_cash_accounts``), and the generation of the
        # set of cash accounts the plans were built for.
        self._cash_check: Check | None = None
        self._cash_funds: SettledFunds | None = None
        self._cash_generation = 0

    def share_state(self, state_dir: Path) -> None:
        """Keep the order-rate buckets in ``state_dir`` from now on (see ``__init__``); counts
        so far are dropped. Nothing to do if they are kept in a folder already."""
        if self.shared:
            return
        self.share_buckets(SharedBuckets(bucket_folder(state_dir)))

    def share_buckets(self, buckets: TokenBuckets) -> None:
        """Keep the order-rate buckets in ``buckets`` from now on (a state folder's, or the
        desk's: ``brokers.desk.risk_state``); counts so far are dropped."""
        self.buckets = buckets
        self.shared = True
        for check in self._checks:
            check.buckets = buckets
        if self._cash_check is not None:
            self._cash_check.buckets = buckets

    def guard_cash_accounts(self, funds: SettledFunds) -> None:
        """Refuse a cash account's buys that need unsettled cash (``UNSETTLED_FUNDS``), as
        ``funds`` tells which accounts are cash accounts and what they may spend."""
        # Here, not at the top: the check is built on this module's ``Check``.
        from .cash_check import CashAccountCheck

        self._cash_check = CashAccountCheck(self.clock, self.buckets, funds=funds)
        self._cash_funds = funds
        self._cash_generation = funds.generation
        self._plans.clear()

    def limits_for(self, account: str | None) -> RiskLimits:
        return self._plan(account)[0]

    def _plan(self, account: str | None) -> tuple[RiskLimits, list[Check]]:
        key = account or ""
        plan = self._plans.get(key)
        if plan is None:
            limits = self.global_limits.merged(self.per_account.get(account) if account else None)
            checks = [check for check in self._checks if _enabled(check, limits)]
            cash_check, funds = self._cash_check, self._cash_funds
            if cash_check is not None and funds is not None and account and funds.is_cash_account(account):
                checks.insert(0, cash_check)
            plan = (limits, checks)
            self._plans[key] = plan
        return plan

    def set_limits(
        self, global_limits: RiskLimits | None = None, per_account: dict[str, RiskLimits] | None = None
    ) -> None:
        """Replace limits at run time; counters (rate, recent orders) are kept."""
        if global_limits is not None:
            self.global_limits = global_limits
        if per_account is not None:
            self.per_account = dict(per_account)
        self._plans.clear()

    def check(self, request: OrderRequest, account: str, ctx: RiskContext) -> Rejection | None:
        """The first failing check's rejection, or None. On a pass the stateful checks count
        the order (rate, recent orders)."""
        funds = self._cash_funds
        if funds is not None and funds.generation != self._cash_generation:
            self._cash_generation = funds.generation
            self._plans.clear()
        plan = self._plans.get(account or "")
        limits, checks = plan if plan is not None else self._plan(account)
        # An order with exits (an OCO pair always has both prices) takes the longer path; one
        # without pays for these two attribute reads only.
        if request.take_profit is not None or request.stop_loss is not None:
            return self._check_with_exits(request, account, limits, checks, ctx)
        if request.order_type is _STOP:
            # A stop-loss leg changed on its own (``ExecutionService.modify`` on ``<id>-SL``).
            leg = leg_refusal(request, account, ctx)
            if leg is not None:
                return Rejection(leg[0].value, leg[1])
        if not checks:
            return None
        refusal = _first_refusal(checks, request, account, limits, ctx)
        if refusal is None:
            _count(checks, request, account, limits)
        return refusal

    def check_parent(self, request: OrderRequest, ctx: RiskContext) -> Rejection | None:
        """A parent order, on its total, against the global limits, before it is split: only
        the checks about the order itself (and its exits); nothing is counted."""
        if request.legs is OrderClass.OCO:
            return Rejection(
                RejectCode.INVALID_ORDER.value,
                "an OCO pair protects a position an account holds; split by weight it need not match "
                "what each account holds: send one OCO pair per account",
            )
        limits, checks = self._plan(None)
        refusal = _first_refusal([c for c in checks if c.about_the_order], request, None, limits, ctx)
        if refusal is not None:
            return refusal
        exits = bracket_refusal(request, None, limits, ctx, with_account_state=False)
        return None if exits is None else Rejection(exits[0].value, exits[1])

    # -- exit checks ---------------------------------------------------------------------
    def _check_with_exits(
        self, request: OrderRequest, account: str, limits: RiskLimits, checks: list[Check], ctx: RiskContext
    ) -> Rejection | None:
        """The entry's checks, then its exits' (``brokers.exit_risk``), then whatever spends a
        token, so an order its exits refuse does not use up the account's rate."""
        refusal = _first_refusal([c for c in checks if not c.spends], request, account, limits, ctx)
        if refusal is not None:
            return refusal
        exits = bracket_refusal(request, account, limits, ctx)
        if exits is not None:
            return Rejection(exits[0].value, exits[1])
        refusal = _first_refusal([c for c in checks if c.spends], request, account, limits, ctx)
        if refusal is None:
            _count(checks, request, account, limits)
        return refusal

    def daily_loss_breach(self, accounts: list[str], ctx: RiskContext) -> str | None:
        """A sentence naming the first account past its daily loss limit, or None."""
        for account in accounts:
            message = daily_loss_message(account, self.limits_for(account), ctx)
            if message is not None:
                return message
        return None

    @property
    def watches_daily_loss(self) -> bool:
        return self.global_limits.daily_loss_limit is not None or any(
            limits.daily_loss_limit is not None for limits in self.per_account.values()
        )


def _first_refusal(
    checks: list[Check], request: OrderRequest, account: str | None, limits: RiskLimits, ctx: RiskContext
) -> Rejection | None:
    """The first of ``checks`` to refuse ``request``, as a rejection; None when all pass."""
    for check in checks:
        reason = check.check(request, account, limits, ctx)
        if reason is not None:
            return Rejection(check.code.value, reason)
    return None


def _count(checks: list[Check], request: OrderRequest, account: str, limits: RiskLimits) -> None:
    """An order that passed: the stateful checks (rate, recent orders) count it."""
    for check in checks:
        if check.stateful:
            check.accept(request, account, limits)
