"""The closed vocabularies of trading: sides, order types, times in force, asset classes, order
statuses, trading and connection states, and the codes an order is refused with.

Every enum takes its value in any case ("buy", "Buy", "BUY"), as people and brokers write it.
"""

from __future__ import annotations

from enum import Enum
from typing import Self

__all__ = [
    "TERMINAL_STATUSES",
    "WORKING_STATUSES",
    "AssetClass",
    "CaseInsensitiveEnum",
    "ConnectionState",
    "OrderStatus",
    "OrderType",
    "RejectCode",
    "Side",
    "TimeInForce",
    "TradingState",
]


class CaseInsensitiveEnum(str, Enum):
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


class Side(CaseInsensitiveEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(CaseInsensitiveEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"
    TRAILING_STOP = "TRAILING_STOP"


class TimeInForce(CaseInsensitiveEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class AssetClass(CaseInsensitiveEnum):
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


class OrderStatus(CaseInsensitiveEnum):
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


class TradingState(CaseInsensitiveEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class ConnectionState(CaseInsensitiveEnum):
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
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INVALID_ORDER = "INVALID_ORDER"
    BROKER_REJECTED = "BROKER_REJECTED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    # A cash account's buy that would need sale proceeds that have not settled yet.
    UNSETTLED_FUNDS = "UNSETTLED_FUNDS"
    INVALID_SYMBOL = "INVALID_SYMBOL"
    JOURNAL_ERROR = "JOURNAL_ERROR"
    # Exits (bracket, OCO, OTO) asked of an account whose broker cannot hold them itself.
    LEGS_UNSUPPORTED = "LEGS_UNSUPPORTED"

    def __str__(self) -> str:
        return self.value
