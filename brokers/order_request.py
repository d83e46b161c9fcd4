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
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .enums import AssetClass, CaseInsensitiveEnum, OrderType, Side, TimeInForce
from .identifiers import OptionalAccountName, OptionalCurrencyCode
from .instruments import Instrument, instrument_of
from .validation import MAX_NOTIONAL, MAX_PRICE, MAX_QUANTITY, check_positive_amount, shown

__all__ = [
    "CLIENT_ORDER_ID_MAX_LEN",
    "SYMBOL_MAX_LEN",
    "LEG_SUFFIX_LEN",
    "BrokerCapabilities",
    "OrderClass",
    "OrderRequest",
    "new_client_order_id",
]

SYMBOL_MAX_LEN = 40
CLIENT_ORDER_ID_MAX_LEN = 48


# Exit legs the project names itself carry the parent's client order id and a suffix
# (``-TP``, ``-SL``), so the parent's id leaves room for it.
LEG_SUFFIX_LEN = 3


class OrderClass(str, Enum):
    """How an order's legs hang together. ``BRACKET``: an entry, then a take-profit limit and a
    stop-loss stop that cancel each other, for the quantity the entry filled. ``OTO``: an entry
    that, once filled, sends one exit (take-profit or stop-loss). ``OCO``: two exits for a
    position already held, a take-profit limit (the order's own ``limit_price``) and a stop-loss
    stop; the fill of one cancels the other."""

    SIMPLE = "SIMPLE"
    BRACKET = "BRACKET"
    OTO = "OTO"
    OCO = "OCO"

    def __str__(self) -> str:
        return self.value


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
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    order_class: OrderClass | None = None
    client_order_id: str = Field(default_factory=new_client_order_id)

    @model_validator(mode="before")
    @classmethod
    def _oco_entry(cls, data: object) -> object:
        # An OCO order is its two exits: the take-profit is the order itself, a LIMIT at that
        # price, so a caller may name just ``take_profit`` and ``stop_loss``.
        if not isinstance(data, dict) or str(data.get("order_class") or "").strip().upper() != "OCO":
            return data
        if (
            data.get("order_type") in (None, "")
            and data.get("limit_price") in (None, "")
            and data.get("take_profit") not in (None, "")
        ):
            return {**data, "order_type": OrderType.LIMIT, "limit_price": data.get("take_profit")}
        return data

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

    @field_validator("order_class", mode="before")
    @classmethod
    def _order_class(cls, value: object) -> OrderClass | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, OrderClass):
            return value
        try:
            return OrderClass(str(value).strip().upper())
        except ValueError:
            allowed = ", ".join(member.value for member in OrderClass)
            raise ValueError(f"order_class must be one of {allowed}, not {shown(value)}") from None

    @field_validator("limit_price", "stop_price", "trail_amount", "take_profit", "stop_loss", mode="before")
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
        if self.take_profit is not None or self.stop_loss is not None or self.order_class is not None:
            problem = self._legs_problem()
            if problem is not None:
                raise ValueError(problem)
        _VALIDATED[id(self)] = self
        return self

    def _legs_problem(self) -> str | None:
        """What is wrong with the exits asked for, in words naming the field; None if nothing."""
        legs = self.legs
        tp, sl, kind = self.take_profit, self.stop_loss, self.order_type
        declared = self.order_class
        if declared is not None and declared is not legs:
            if declared is OrderClass.SIMPLE:
                return "take_profit and stop_loss are only allowed for BRACKET, OTO and OCO orders"
            if declared is OrderClass.BRACKET:
                return "a BRACKET order needs both take_profit and stop_loss"
            if declared is OrderClass.OTO:
                return "an OTO order needs exactly one of take_profit or stop_loss"
        if legs is OrderClass.SIMPLE:
            return None
        if self.quantity is None:
            return "take_profit and stop_loss need a quantity, not a notional (amount of money) order"
        if len(self.client_order_id) > CLIENT_ORDER_ID_MAX_LEN - LEG_SUFFIX_LEN:
            return (
                f"client_order_id of an order with exits may be {CLIENT_ORDER_ID_MAX_LEN - LEG_SUFFIX_LEN} "
                f"characters at most (its legs add {LEG_SUFFIX_LEN})"
            )
        if kind is OrderType.TRAILING_STOP:
            return "take_profit and stop_loss attach to MARKET, LIMIT, STOP and STOP_LIMIT orders, not TRAILING_STOP"
        if legs is OrderClass.OCO:
            if tp is None or sl is None:
                return "an OCO order needs both take_profit and stop_loss"
            if kind is not OrderType.LIMIT or self.limit_price != tp:
                return (
                    "an OCO order is a LIMIT order at its take_profit: leave order_type and limit_price out"
                )
            # The exits close a position: a SELL pair closes a long one.
            exit_side = self.side
        else:
            exit_side = Side.SELL if self.side is Side.BUY else Side.BUY
            entry = self.reference_price
            if entry is not None:
                for name, price, above in (("take_profit", tp, True), ("stop_loss", sl, False)):
                    if price is None:
                        continue
                    # A SELL exit (after a BUY entry) takes profit above the entry and stops below.
                    wanted_above = above if exit_side is Side.SELL else not above
                    if wanted_above and price <= entry:
                        return f"{name} {price} must be above the entry price {entry} for a {self.side.value} order"
                    if not wanted_above and price >= entry:
                        return f"{name} {price} must be below the entry price {entry} for a {self.side.value} order"
        if tp is not None and sl is not None:
            if exit_side is Side.SELL and tp <= sl:
                return f"take_profit {tp} must be above stop_loss {sl} when the exits sell"
            if exit_side is Side.BUY and tp >= sl:
                return f"take_profit {tp} must be below stop_loss {sl} when the exits buy"
        return None

    @property
    def legs(self) -> OrderClass:
        """How this order's legs hang together: OCO when asked for, else BRACKET with both
        exits, OTO with one, SIMPLE with none."""
        if self.order_class is OrderClass.OCO:
            return OrderClass.OCO
        given = (self.take_profit is not None) + (self.stop_loss is not None)
        if given == 2:
            return OrderClass.BRACKET
        return OrderClass.OTO if given else OrderClass.SIMPLE

    @property
    def has_legs(self) -> bool:
        """Whether this order carries exits (BRACKET, OTO or OCO)."""
        return (
            self.take_profit is not None or self.stop_loss is not None or self.order_class is OrderClass.OCO
        )

    @property
    def exit_side(self) -> Side:
        """The side of the exits: an OCO pair's own side; a bracket's or OTO's, the entry's opposite."""
        if self.legs is OrderClass.OCO:
            return self.side
        return Side.SELL if self.side is Side.BUY else Side.BUY

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
    # Exits held by the broker itself, so that they outlive this process: a bracket (entry, then
    # a take-profit and a stop-loss that cancel each other), an OTO (entry, then one exit) and
    # an OCO pair of exits. Where false, such orders are refused (``legs_refusal``), never
    # simulated here.
    bracket_orders: bool = False
    oto_orders: bool = False
    oco_orders: bool = False

    def legs_refusal(self, request: OrderRequest) -> str | None:
        """None if the broker can hold the order's exits itself (or it has none), else why not."""
        if not request.has_legs:
            return None
        legs = request.legs
        held = {
            OrderClass.BRACKET: self.bracket_orders,
            OrderClass.OTO: self.oto_orders,
            OrderClass.OCO: self.oco_orders,
        }
        if held.get(legs, True):
            return None
        takes = [kind.value for kind, yes in held.items() if yes]
        also = f" (it holds {', '.join(takes)})" if takes else " (it holds no attached exits)"
        after = (
            "; place the entry alone, then an OCO (take_profit and stop_loss) for the position once it has filled"
            if self.oco_orders
            else ""
        )
        return (
            f"this broker cannot hold {legs.value} exits itself{also}; they are not kept in this "
            f"program, which would leave them unguarded if it stopped{after}"
        )

    def supports(self, request: OrderRequest) -> str | None:
        """None if the broker can take this order, else a sentence saying why not."""
        if request.has_legs:
            legs = self.legs_refusal(request)
            if legs is not None:
                return legs
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
