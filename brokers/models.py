"""Value objects shared by every part of the library, in one import.

Money and quantities are ``Decimal``; datetimes are timezone-aware UTC. Each kind of value lives
in a module of its own, and this one names them all:

- ``brokers.enums``: sides, order types, statuses, trading and connection states, reject codes;
- ``brokers.instruments``: ``Instrument``, what is held and traded, and when two are the same;
- ``brokers.order_request``: ``OrderRequest`` (what a trader asks for) and ``BrokerCapabilities``;
- ``brokers.orders``: ``Order`` and the state machine its status follows;
- ``brokers.account_state``: fills, positions, balances, margin and account health;
- ``brokers.validation``: the rules for numbers, and how validation failures read;
- ``brokers.clock``: ``utcnow``.
"""

from __future__ import annotations

from .account_state import AccountStatus, Balance, Fill, MarginInfo, Position
from .clock import utcnow
from .enums import (
    TERMINAL_STATUSES,
    WORKING_STATUSES,
    AssetClass,
    ConnectionState,
    OrderStatus,
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
    TradingState,
)
from .instruments import Instrument, InstrumentKey
from .order_request import (
    CLIENT_ORDER_ID_MAX_LEN,
    SYMBOL_MAX_LEN,
    BrokerCapabilities,
    OrderClass,
    OrderRequest,
    new_client_order_id,
)
from .orders import LEGAL_TRANSITIONS, Order, can_transition
from .validation import (
    MAX_DECIMALS,
    MAX_PRICE,
    MAX_QUANTITY,
    check_positive_amount,
    decimal_places,
    describe_validation_error,
    field_errors,
    shown,
    to_decimal,
)

__all__ = [
    "OrderClass",
    "CLIENT_ORDER_ID_MAX_LEN",
    "LEGAL_TRANSITIONS",
    "MAX_DECIMALS",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "SYMBOL_MAX_LEN",
    "TERMINAL_STATUSES",
    "WORKING_STATUSES",
    "AccountStatus",
    "AssetClass",
    "Balance",
    "BrokerCapabilities",
    "ConnectionState",
    "Fill",
    "Instrument",
    "InstrumentKey",
    "MarginInfo",
    "Order",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Position",
    "RejectCode",
    "Side",
    "TimeInForce",
    "TradingState",
    "can_transition",
    "check_positive_amount",
    "decimal_places",
    "describe_validation_error",
    "field_errors",
    "new_client_order_id",
    "shown",
    "to_decimal",
    "utcnow",
]
