"""Value objects shared by every part of the library.

Money and quantities are ``Decimal``; datetimes are timezone-aware UTC. Everything a person or a
broker can type is validated here, so a bad value never gets as far as the journal or a broker.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import weakref
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

# Sanity ceilings: no real order is larger, and a value past them is a typo or an attack.
MAX_QUANTITY = Decimal("1000000000")
MAX_PRICE = Decimal("1000000000")
# Quantities and prices to 9 decimal places: Alpaca's fractional shares and crypto go that far.
MAX_DECIMALS = 9
SYMBOL_MAX_LEN = 40
CLIENT_ORDER_ID_MAX_LEN = 48


def utcnow() -> datetime:
    return datetime.now(UTC)


class _CaseInsensitiveEnum(str, Enum):
    """A ``str`` enum that also accepts its value in any case ("buy", "Buy", "BUY")."""

    _value_: str

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, str):
            wanted = value.strip().upper().replace("-", "_").replace(" ", "_")
            for member in cls:
                if member.value == wanted:
                    return member
        return None

    def __str__(self) -> str:
        return self.value


class Side(_CaseInsensitiveEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(_CaseInsensitiveEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"
    TRAILING_STOP = "TRAILING_STOP"


class TimeInForce(_CaseInsensitiveEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class AssetClass(_CaseInsensitiveEnum):
    STOCK = "STOCK"
    OPTION = "OPTION"
    FUTURE = "FUTURE"
    FOREX = "FOREX"
    CRYPTO = "CRYPTO"
    # A contract for difference: priced like its underlying but never the underlying itself.
    CFD = "CFD"
    # A security type a broker reported that nothing here models (a bond, a warrant, a fund,
    # ...): shown as held, never taken for a stock.
    OTHER = "OTHER"


class OrderStatus(_CaseInsensitiveEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_working(self) -> bool:
        """Could still fill: the broker holds it, or we do not know that it does not."""
        return self in WORKING_STATUSES


class TradingState(_CaseInsensitiveEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class ConnectionState(_CaseInsensitiveEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    RESYNCING = "RESYNCING"
    DEGRADED = "DEGRADED"
    FAILED = "FAILED"


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
WORKING_STATUSES = frozenset(
    {
        OrderStatus.PENDING,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.UNKNOWN,
    }
)

# The order state machine. A status not listed as a target of the current one is refused.
# UNKNOWN (a submit whose answer was lost) may resolve to anything but PENDING.
_S = OrderStatus
LEGAL_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.PENDING: frozenset(
        {
            _S.SUBMITTED,
            _S.ACCEPTED,
            _S.PARTIALLY_FILLED,
            _S.FILLED,
            _S.CANCELLED,
            _S.REJECTED,
            _S.EXPIRED,
            _S.UNKNOWN,
        }
    ),
    _S.SUBMITTED: frozenset(
        {_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED, _S.UNKNOWN}
    ),
    _S.ACCEPTED: frozenset(
        {_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED, _S.UNKNOWN}
    ),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.UNKNOWN}),
    _S.UNKNOWN: frozenset(
        {_S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED}
    ),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}
del _S


def can_transition(current: OrderStatus, new: OrderStatus) -> bool:
    return new in LEGAL_TRANSITIONS[current]


_ZERO = Decimal(0)
_ONE = Decimal(1)


# ---------------------------------------------------------------------------------------------
# Validation helpers


_SHOWN_MAX_LEN = 40


def shown(value: object) -> str:
    """A value as an error message quotes it: short enough to read whatever was typed or sent
    (a megabyte of text, a number with a million digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        value = Decimal(value)  # repr() of an int over 4,300 digits raises
    if isinstance(value, Decimal):
        text = f"{value:,}" if value.is_finite() and value.adjusted() < 20 else str(value)
        return text if len(text) <= _SHOWN_MAX_LEN else f"{value:.6E}"
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN_MAX_LEN else text[: _SHOWN_MAX_LEN - 1] + "…"


def to_decimal(value: object, field: str) -> Decimal:
    """Turn user or broker input into a finite Decimal, or raise ValueError naming the field."""
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number, not {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # repr() keeps 0.1 as 0.1 rather than its binary expansion
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        if not text:
            raise ValueError(f"{field} is empty; enter a number")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{field} must be a number, not {shown(value)}") from None
    else:
        raise ValueError(f"{field} must be a number, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field} must be a finite number, not {shown(value)}")
    return result


def decimal_places(value: Decimal) -> int:
    # Counted on the digits themselves: normalize() would first round to the context's 28
    # significant digits and let 1.00000000000000000000000000001 pass as 1.
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or not any(digits):
        return 0  # whole numbers, the usual quantity, need no counting
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


def check_positive_amount(value: object, field: str, ceiling: Decimal) -> Decimal:
    amount = to_decimal(value, field)
    if amount <= 0:
        raise ValueError(f"{field} must be greater than 0, not {shown(amount)}")
    if amount > ceiling:
        raise ValueError(f"{field} must be at most {ceiling:,}, not {shown(amount)}")
    if amount.as_tuple().exponent == 0:
        return amount  # a whole number written without a point or exponent: canonical already
    if decimal_places(amount) > MAX_DECIMALS:
        raise ValueError(f"{field} allows at most {MAX_DECIMALS} decimal places, not {shown(amount)}")
    # Canonical form: 10 not 1E+1 or 10.00, 10.5 not 10.50.
    return amount.quantize(_ONE) if amount == amount.to_integral_value() else amount.normalize()


def new_client_order_id() -> str:
    # 20 alphanumerics: fits every broker's tag (Kite allows at most 20) and is unguessable.
    return "TC" + secrets.token_hex(9).upper()


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the field: what a person sees for bad input."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if field and not message.startswith(field):
            lines.append(f"{field}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Field name -> message, for showing a message next to the input that caused it."""
    result: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = loc[0] if loc else ""
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        result.setdefault(field, message)
    return result


# ---------------------------------------------------------------------------------------------
# Orders


# The enum behind each enum field of ``OrderRequest``, for its error messages.
_ENUM_FIELDS: dict[str, type[_CaseInsensitiveEnum]] = {
    "side": Side,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
    "asset_class": AssetClass,
}
# Every request is validated again on the order path (see ``brokers.intake``), so these rules
# are compiled once. Symbols are upper-cased before the match.
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9 ./:\-_^=&]*")
# ``\w`` is what ``str.isalnum()`` accepts, and the underscore.
_CLIENT_ORDER_ID = re.compile(rf"[\w-]{{1,{CLIENT_ORDER_ID_MAX_LEN}}}")


# Every OrderRequest that passed the validators, by identity: weak, so it holds nothing alive,
# and keyed by id rather than by value, so a copy with the same fields is not taken for it.
_VALIDATED: weakref.WeakValueDictionary[int, OrderRequest] = weakref.WeakValueDictionary()


class OrderRequest(BaseModel):
    """What a trader asks for. Frozen: once journaled, an intent never changes."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_amount: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    account: str | None = None
    asset_class: AssetClass = AssetClass.STOCK
    exchange: str | None = None
    currency: str | None = None
    client_order_id: str = Field(default_factory=new_client_order_id)

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("symbol must be text such as AAPL")
        symbol = value.strip().upper()
        if not symbol:
            raise ValueError("symbol is empty; enter a ticker such as AAPL")
        if len(symbol) > SYMBOL_MAX_LEN:
            raise ValueError(f"symbol is longer than {SYMBOL_MAX_LEN} characters")
        if _SYMBOL.fullmatch(symbol) is None:
            raise ValueError(
                "symbol may hold letters, digits and . / : - _ ^ = & only, starting with a letter or digit"
            )
        return symbol

    @field_validator("side", "order_type", "time_in_force", "asset_class", mode="before")
    @classmethod
    def _enum_text(cls, value: object, info: ValidationInfo) -> _CaseInsensitiveEnum:
        field = info.field_name or "value"
        enum = _ENUM_FIELDS[field]
        if type(value) is enum:
            return value  # a request validated again, or built from the enums themselves
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            raise ValueError(f"{field} must be one of {allowed}, not {shown(value)}") from None

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> Decimal:
        return check_positive_amount(value, "quantity", MAX_QUANTITY)

    @field_validator("limit_price", "stop_price", "trail_amount", mode="before")
    @classmethod
    def _price(cls, value: object, info: ValidationInfo) -> Decimal | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return check_positive_amount(value, info.field_name or "price", MAX_PRICE)

    @field_validator("trail_percent", mode="before")
    @classmethod
    def _trail_percent(cls, value: object) -> Decimal | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        percent = check_positive_amount(value, "trail_percent", Decimal(100))
        if percent >= 100:
            raise ValueError("trail_percent must be below 100")
        return percent

    @field_validator("account", "exchange", mode="before")
    @classmethod
    def _optional_name(cls, value: object, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be text")
        text = value.strip()
        if not text:
            return None
        if len(text) > 64 or not all(ch.isalnum() or ch in "-_." for ch in text):
            raise ValueError(f"{info.field_name} may hold letters, digits, '-', '_' and '.' (64 at most)")
        return text.upper() if info.field_name == "exchange" else text

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: object) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
            raise ValueError(f"currency must be a 3-letter code such as USD, not {shown(value)}")
        return value.strip().upper()

    @field_validator("client_order_id", mode="before")
    @classmethod
    def _client_order_id(cls, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError("client_order_id must be non-empty text")
        if _CLIENT_ORDER_ID.fullmatch(value) is None:
            raise ValueError(
                f"client_order_id may hold letters, digits, '-' and '_' ({CLIENT_ORDER_ID_MAX_LEN} at most)"
            )
        return value

    @model_validator(mode="after")
    def _prices_fit_type(self) -> OrderRequest:
        kind = self.order_type
        needs_limit = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit and self.limit_price is None:
            raise ValueError(f"limit_price is required for a {kind.value} order")
        if not needs_limit and self.limit_price is not None:
            raise ValueError(f"limit_price is only allowed for LIMIT and STOP_LIMIT orders, not {kind.value}")
        if needs_stop and self.stop_price is None:
            raise ValueError(f"stop_price is required for a {kind.value} order")
        if not needs_stop and self.stop_price is not None:
            raise ValueError(f"stop_price is only allowed for STOP and STOP_LIMIT orders, not {kind.value}")
        trails = (self.trail_percent is not None) + (self.trail_amount is not None)
        if kind is OrderType.TRAILING_STOP and trails != 1:
            raise ValueError("a TRAILING_STOP order needs exactly one of trail_percent or trail_amount")
        if kind is not OrderType.TRAILING_STOP and trails:
            raise ValueError("trail_percent and trail_amount are only allowed for TRAILING_STOP orders")
        _VALIDATED[id(self)] = self
        return self

    @property
    def validated(self) -> bool:
        """Whether this very object came out of the model's validators. ``model_copy`` and
        ``model_construct`` skip them, so their results say False and are validated again by
        whoever must trust them (the execution layer)."""
        return _VALIDATED.get(id(self)) is self

    @property
    def reference_price(self) -> Decimal | None:
        """The price the trader named, if any: limit first, then stop."""
        return self.limit_price if self.limit_price is not None else self.stop_price

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity * self.side.sign


class Fill(BaseModel):
    """One execution. ``fill_id`` is unique per broker: applying it twice changes nothing."""

    model_config = ConfigDict(frozen=True)

    fill_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal = Field(gt=0)
    price: Decimal = Field(gt=0)
    commission: Decimal = Decimal(0)
    currency: str = "USD"
    broker_order_id: str | None = None
    client_order_id: str | None = None
    timestamp: AwareDatetime = Field(default_factory=utcnow)


@dataclasses.dataclass(slots=True, kw_only=True)
class Order:
    """A request as it lives at a broker. Status changes only along ``LEGAL_TRANSITIONS``.

    A slotted dataclass, not a pydantic model: the order path makes and copies several orders
    for every request, and what an order holds comes from a validated ``OrderRequest``, from
    validated ``Fill`` objects, or from the code that follows the order at its broker. Fills
    are added through ``take_fill`` or ``apply_fill``, never to ``fills`` directly: those two
    keep the index of fill ids that refuses a repeat.
    """

    request: OrderRequest
    account: str | None = None
    broker_order_id: str | None = None
    status: OrderStatus = OrderStatus.PENDING
    filled_quantity: Decimal = _ZERO
    avg_fill_price: Decimal | None = None
    reject_code: str | None = None
    reject_reason: str | None = None
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    updated_at: datetime = dataclasses.field(default_factory=utcnow)
    fills: list[Fill] = dataclasses.field(default_factory=list)
    # The ids among ``fills``, so that an order filled in thousands of pieces need not look
    # through all of them for each new one. Built by the first look-up that has fills to look
    # through (the first fill has none, so an order filled at once seldom needs it), then kept
    # by ``take_fill``.
    _fill_ids: set[str] | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.request, OrderRequest):
            raise TypeError(f"request must be an OrderRequest, not {type(self.request).__name__}")
        if self.created_at.tzinfo is None or self.updated_at.tzinfo is None:
            raise ValueError("created_at and updated_at must be timezone-aware")
        if self.account is None:
            self.account = self.request.account

    @classmethod
    def for_request(
        cls,
        request: OrderRequest,
        account: str | None = None,
        *,
        broker_order_id: str | None = None,
        at: datetime | None = None,
    ) -> Order:
        """A new PENDING order for ``request``, at ``account`` (else the request's own), created
        and updated ``at`` (else now)."""
        now = utcnow() if at is None else at
        return cls(
            request=request,
            account=account,
            broker_order_id=broker_order_id,
            created_at=now,
            updated_at=now,
        )

    def snapshot(self) -> Order:
        """A copy that later changes to this order cannot reach: its own fill list, and so its
        own fill ids (the fills themselves are frozen and shared, as is the request)."""
        # Every field written out (``dataclasses.replace`` does the same, several times slower):
        # brokers take one per stream update. A test checks that none is left out.
        return Order(
            request=self.request,
            account=self.account,
            broker_order_id=self.broker_order_id,
            status=self.status,
            filled_quantity=self.filled_quantity,
            avg_fill_price=self.avg_fill_price,
            reject_code=self.reject_code,
            reject_reason=self.reject_reason,
            created_at=self.created_at,
            updated_at=self.updated_at,
            fills=list(self.fills),
        )

    # Flattened view of the request, so callers need not reach through ``request``.
    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def quantity(self) -> Decimal:
        return self.request.quantity

    @property
    def order_type(self) -> OrderType:
        return self.request.order_type

    @property
    def limit_price(self) -> Decimal | None:
        return self.request.limit_price

    @property
    def stop_price(self) -> Decimal | None:
        return self.request.stop_price

    @property
    def time_in_force(self) -> TimeInForce:
        return self.request.time_in_force

    @property
    def remaining_quantity(self) -> Decimal:
        return max(_ZERO, self.request.quantity - self.filled_quantity)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_working(self) -> bool:
        return self.status.is_working

    def transition(self, new: OrderStatus | str, *, at: datetime | None = None) -> bool:
        """Move to ``new`` if the state machine allows it. Returns whether anything changed.

        An illegal move (FILLED -> ACCEPTED, ...) is logged and refused, never applied: late or
        reordered broker events must not make an order look alive again.
        """
        if not isinstance(new, OrderStatus):
            new = OrderStatus(new)
        current = self.status
        if new is current and new is not OrderStatus.PARTIALLY_FILLED:
            return False
        if not can_transition(current, new):
            log.warning(
                "refused illegal status change %s -> %s for order %s",
                current.value,
                new.value,
                self.client_order_id,
            )
            return False
        self.status = new
        self.updated_at = utcnow() if at is None else at
        return True

    def reject(self, code: str, reason: str) -> Order:
        self.reject_code = code
        self.reject_reason = reason
        self.transition(OrderStatus.REJECTED)
        return self

    def has_fill(self, fill_id: str) -> bool:
        """Whether a fill with this id is among ``fills``."""
        if not self.fills:
            return False
        if self._fill_ids is None:
            self._fill_ids = {fill.fill_id for fill in self.fills}
        return fill_id in self._fill_ids

    def take_fill(self, fill: Fill) -> bool:
        """Append ``fill`` to ``fills`` unless one with its id is there already; returns whether
        it was added. Quantities are left alone (``apply_fill`` does both)."""
        if self.has_fill(fill.fill_id):
            return False
        self.fills.append(fill)
        if self._fill_ids is not None:
            self._fill_ids.add(fill.fill_id)
        return True

    def apply_fill(self, fill: Fill) -> bool:
        """Add a fill once. Quantity and average price are sums, so arrival order does not matter."""
        if not self.take_fill(fill):
            return False
        held = self.filled_quantity
        total = held + fill.quantity
        previous_cost = _ZERO if self.avg_fill_price is None else self.avg_fill_price * held
        self.avg_fill_price = (previous_cost + fill.price * fill.quantity) / total
        self.filled_quantity = total
        if self.status.is_terminal:
            # A fill after a cancel confirmation is real money: count it, keep the final status.
            log.warning(
                "fill %s arrived for %s order %s", fill.fill_id, self.status.value, self.client_order_id
            )
            self.updated_at = fill.timestamp
        else:
            done = total >= self.request.quantity
            self.transition(OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED, at=fill.timestamp)
        return True


# ---------------------------------------------------------------------------------------------
# Account state


class Position(BaseModel):
    """Quantity is signed: negative is short."""

    symbol: str
    quantity: Decimal
    avg_price: Decimal = Decimal(0)
    account: str = ""
    asset_class: AssetClass = AssetClass.STOCK
    currency: str = "USD"
    last_price: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)
    multiplier: Decimal = Decimal(1)
    exchange: str | None = None

    @property
    def market_value(self) -> Decimal | None:
        if self.last_price is None:
            return None
        return self.quantity * self.last_price * self.multiplier

    @property
    def unrealized_pnl(self) -> Decimal | None:
        if self.last_price is None:
            return None
        return (self.last_price - self.avg_price) * self.quantity * self.multiplier

    @property
    def cost_basis(self) -> Decimal:
        return self.quantity * self.avg_price * self.multiplier


class Balance(BaseModel):
    account: str
    currency: str = "USD"
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    timestamp: AwareDatetime = Field(default_factory=utcnow)


class MarginInfo(BaseModel):
    account: str
    currency: str = "USD"
    initial_margin: Decimal = Decimal(0)
    maintenance_margin: Decimal = Decimal(0)
    available_funds: Decimal = Decimal(0)
    excess_liquidity: Decimal = Decimal(0)
    leverage: Decimal = Decimal(1)
    timestamp: AwareDatetime = Field(default_factory=utcnow)


class BrokerCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_types: frozenset[OrderType] = frozenset(OrderType)
    time_in_force: frozenset[TimeInForce] = frozenset(TimeInForce)
    asset_classes: frozenset[AssetClass] = frozenset({AssetClass.STOCK})
    fractional_quantities: bool = False
    short_selling: bool = True
    bulk_cancel: bool = False
    streaming_updates: bool = True
    session_expiry: bool = False
    currencies: frozenset[str] = frozenset({"USD"})

    def supports(self, request: OrderRequest) -> str | None:
        """None if the broker can take this order, else a sentence saying why not."""
        if request.order_type not in self.order_types:
            allowed = ", ".join(sorted(t.value for t in self.order_types))
            return f"this broker does not take {request.order_type.value} orders (it takes {allowed})"
        if request.time_in_force not in self.time_in_force:
            allowed = ", ".join(sorted(t.value for t in self.time_in_force))
            return (
                f"this broker does not take time in force {request.time_in_force.value} (it takes {allowed})"
            )
        if request.asset_class not in self.asset_classes:
            allowed = ", ".join(sorted(a.value for a in self.asset_classes))
            return f"this broker does not trade {request.asset_class.value} (it trades {allowed})"
        if not self.fractional_quantities and request.quantity != request.quantity.to_integral_value():
            return f"this broker takes whole quantities only, not {request.quantity}"
        return None


class AccountStatus(BaseModel):
    """Health of one account as the manager sees it."""

    name: str
    broker_type: str = "sim"
    live: bool = False
    state: ConnectionState = ConnectionState.DISCONNECTED
    last_error: str | None = None
    last_refresh: AwareDatetime | None = None
    latency_ms: float | None = None
    session_expires_at: AwareDatetime | None = None
    currency: str = "USD"

    @property
    def session_time_left(self) -> float | None:
        if self.session_expires_at is None:
            return None
        return (self.session_expires_at - utcnow()).total_seconds()


class RejectCode(str, Enum):
    """Why an order was refused, for programs to act on; ``Order.reject_reason`` says it in words."""

    SYSTEM_HALTED = "SYSTEM_HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    MAX_QUANTITY = "MAX_QUANTITY"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    MAX_POSITION = "MAX_POSITION"
    PRICE_BAND = "PRICE_BAND"
    RATE_LIMIT = "RATE_LIMIT"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    DAILY_LOSS = "DAILY_LOSS"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    NO_ROUTE = "NO_ROUTE"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    UNSUPPORTED = "UNSUPPORTED"
    INVALID_ORDER = "INVALID_ORDER"
    BROKER_REJECTED = "BROKER_REJECTED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INVALID_SYMBOL = "INVALID_SYMBOL"
    JOURNAL_ERROR = "JOURNAL_ERROR"

    def __str__(self) -> str:
        return self.value
