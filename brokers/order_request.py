"""What a trader asks for: ``OrderRequest``, every field checked as it is typed or sent, and
``BrokerCapabilities``, what a broker can take.

Everything a person or a broker can type is validated here, so a bad value never gets as far as
the journal or a broker. Account names and currency codes follow the library's one rule for each
(``brokers.identifiers``).
"""

from __future__ import annotations

import re
import secrets
import weakref
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .enums import AssetClass, CaseInsensitiveEnum, OrderType, Side, TimeInForce
from .identifiers import OptionalAccountName, OptionalCurrencyCode
from .instruments import Instrument, instrument_of
from .validation import MAX_NOTIONAL, MAX_PRICE, MAX_QUANTITY, check_positive_amount, shown

__all__ = [
    "CLIENT_ORDER_ID_MAX_LEN",
    "SYMBOL_MAX_LEN",
    "BrokerCapabilities",
    "OrderRequest",
    "new_client_order_id",
]

SYMBOL_MAX_LEN = 40
CLIENT_ORDER_ID_MAX_LEN = 48


def new_client_order_id() -> str:
    # 20 alphanumerics: fits every broker's tag (Kite allows at most 20) and is unguessable.
    return "TC" + secrets.token_hex(9).upper()


# The enum behind each enum field of ``OrderRequest``, for its error messages.
_ENUM_FIELDS: dict[str, type[CaseInsensitiveEnum]] = {
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
    """What a trader asks for. Frozen: once journaled, an intent never changes.

    An order names either a ``quantity`` (shares, coins, or contracts of an option or future)
    or a ``notional``: an amount of money in the instrument's trading currency, for a MARKET
    order at a broker that takes them (``BrokerCapabilities.notional_orders``; Alpaca calls them
    dollar-amount orders). A notional order's quantity is known only as it fills."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    symbol: str
    side: Side
    quantity: Decimal | None = None
    notional: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_amount: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    account: OptionalAccountName = None
    asset_class: AssetClass = AssetClass.STOCK
    exchange: str | None = None
    currency: OptionalCurrencyCode = None
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
    def _enum_text(cls, value: object, info: ValidationInfo) -> CaseInsensitiveEnum:
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
    def _quantity(cls, value: object) -> Decimal | None:
        # Absent is None (a notional order); a blank box is an empty quantity, said as such.
        if value is None:
            return None
        return check_positive_amount(value, "quantity", MAX_QUANTITY)

    @field_validator("notional", mode="before")
    @classmethod
    def _notional(cls, value: object) -> Decimal | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return check_positive_amount(value, "notional", MAX_NOTIONAL)

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

    @field_validator("exchange", mode="before")
    @classmethod
    def _exchange(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("exchange must be text")
        text = value.strip()
        if not text:
            return None
        if len(text) > 64 or not all(ch.isalnum() or ch in "-_." for ch in text):
            raise ValueError("exchange may hold letters, digits, '-', '_' and '.' (64 at most)")
        return text.upper()

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
        if self.quantity is None and self.notional is None:
            raise ValueError("quantity is required (or notional, an amount of money to trade)")
        if self.quantity is not None and self.notional is not None:
            raise ValueError("give either quantity or notional (an amount of money), not both")
        if self.notional is not None and kind is not OrderType.MARKET:
            raise ValueError(
                f"a notional (amount of money) order is a MARKET order; give a quantity for a {kind.value} order"
            )
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
    def instrument(self) -> Instrument:
        """What this order trades. A plain symbol is a stock; with no ``currency`` it trades in
        the currency of the account it goes to (``Instrument.in_currency``)."""
        return instrument_of(self.symbol, self.asset_class, self.exchange, self.currency)

    @property
    def units(self) -> Decimal:
        """The quantity, for code that only ever sees orders with one: a broker that takes no
        notional orders is never sent one (``BrokerCapabilities.supports`` refuses them first).
        Raises ``ValueError`` for a notional order rather than guess its size."""
        if self.quantity is None:
            raise ValueError(f"order {self.client_order_id} is a notional order; it has no quantity yet")
        return self.quantity

    @property
    def size_text(self) -> str:
        """The order's size as a person reads it: ``12.5`` or ``500 notional``."""
        if self.quantity is not None:
            return f"{self.quantity.normalize():f}"
        return f"{self.notional or 0:f} notional"


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
    # Takes orders for an amount of money rather than a quantity (``OrderRequest.notional``).
    notional_orders: bool = False
    # A working order's quantity, prices and time in force can be changed at the broker itself
    # (``Broker.modify_order``), without a cancel and a new order in between.
    modify_orders: bool = False

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
        quantity = request.quantity
        if quantity is None:
            if not self.notional_orders:
                return "this broker takes no notional (amount of money) orders; give a quantity"
        elif not self.fractional_quantities and quantity != quantity.to_integral_value():
            return f"this broker takes whole quantities only, not {quantity}"
        return None
