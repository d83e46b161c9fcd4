"""brokers: one asyncio API over several brokers, with a kill switch, risk checks and a journal.

Names are imported on first use so that ``import brokers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below resolve to, for type checkers and editors
    from .account_state import AccountStatus, Balance, Fill, MarginInfo, Position
    from .base import Broker
    from .config import Config, load_config
    from .enums import (
        AssetClass,
        ConnectionState,
        OrderStatus,
        OrderType,
        RejectCode,
        Side,
        TimeInForce,
        TradingState,
    )
    from .errors import (
        AuthenticationError,
        BrokerAPIError,
        BrokerConnectionError,
        BrokerError,
        BrokerTimeoutError,
        ConfigError,
        CredentialsError,
        InsufficientFundsError,
        InvalidSymbolError,
        MarketClosedError,
        OrderNotFoundError,
        OrderRejectedError,
        TradingConsoleError,
        UnknownAccountError,
    )
    from .execution import ExecutionService
    from .fx import FxRates
    from .instruments import Instrument
    from .journal import Journal
    from .killswitch import KillSwitch
    from .manager import MultiBrokerManager
    from .order_request import BrokerCapabilities, OrderClass, OrderRequest
    from .orders import Order, can_transition
    from .quote_board import QuoteBoard
    from .quotes import Quote, QuoteState
    from .registry import BrokerFactory
    from .risk import RiskEngine
    from .routing import Router
    from .sim import SimBroker
    from .validation import describe_validation_error

_ENUMS = (
    "Side",
    "OrderType",
    "TimeInForce",
    "AssetClass",
    "OrderStatus",
    "TradingState",
    "ConnectionState",
    "RejectCode",
)
_ACCOUNT_STATE = ("Fill", "Position", "Balance", "MarginInfo", "AccountStatus")

_EXPORTS: dict[str, str] = {
    # values (``brokers.models`` names them all; each is loaded from the module that defines it)
    **{name: "brokers.enums" for name in _ENUMS},
    **{name: "brokers.account_state" for name in _ACCOUNT_STATE},
    "Instrument": "brokers.instruments",
    "OrderRequest": "brokers.order_request",
    "BrokerCapabilities": "brokers.order_request",
    "OrderClass": "brokers.order_request",
    "Order": "brokers.orders",
    "can_transition": "brokers.orders",
    "describe_validation_error": "brokers.validation",
    # errors
    **{
        name: "brokers.errors"
        for name in (
            "TradingConsoleError",
            "ConfigError",
            "CredentialsError",
            "BrokerError",
            "BrokerConnectionError",
            "BrokerAPIError",
            "AuthenticationError",
            "BrokerTimeoutError",
            "OrderRejectedError",
            "OrderNotFoundError",
            "InsufficientFundsError",
            "InvalidSymbolError",
            "MarketClosedError",
            "UnknownAccountError",
        )
    },
    "Broker": "brokers.base",
    "BrokerFactory": "brokers.registry",
    "SimBroker": "brokers.sim",
    "KillSwitch": "brokers.killswitch",
    "RiskEngine": "brokers.risk",
    "Router": "brokers.routing",
    "Journal": "brokers.journal",
    "ExecutionService": "brokers.execution",
    "MultiBrokerManager": "brokers.manager",
    "FxRates": "brokers.fx",
    "Quote": "brokers.quotes",
    "QuoteState": "brokers.quotes",
    "QuoteBoard": "brokers.quote_board",
    "Config": "brokers.config",
    "load_config": "brokers.config",
}

# Spelled out (not derived from _EXPORTS) so that tools reading the source see the re-exports.
__all__ = [
    "AccountStatus",
    "AssetClass",
    "AuthenticationError",
    "Balance",
    "Broker",
    "BrokerAPIError",
    "BrokerCapabilities",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerFactory",
    "BrokerTimeoutError",
    "Config",
    "ConfigError",
    "ConnectionState",
    "CredentialsError",
    "ExecutionService",
    "Fill",
    "FxRates",
    "Instrument",
    "InsufficientFundsError",
    "InvalidSymbolError",
    "Journal",
    "KillSwitch",
    "MarginInfo",
    "MarketClosedError",
    "MultiBrokerManager",
    "Order",
    "OrderClass",
    "OrderNotFoundError",
    "OrderRejectedError",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Position",
    "Quote",
    "QuoteBoard",
    "QuoteState",
    "RejectCode",
    "RiskEngine",
    "Router",
    "Side",
    "SimBroker",
    "TimeInForce",
    "TradingConsoleError",
    "TradingState",
    "UnknownAccountError",
    "can_transition",
    "describe_validation_error",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'brokers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
