"""brokers: one asyncio API over several brokers, with a kill switch, risk checks and a journal.

Names are imported on first use so that ``import brokers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # models
    **{
        name: "brokers.models"
        for name in (
            "Side",
            "OrderType",
            "TimeInForce",
            "AssetClass",
            "OrderStatus",
            "TradingState",
            "ConnectionState",
            "OrderRequest",
            "Order",
            "Fill",
            "Position",
            "Balance",
            "MarginInfo",
            "BrokerCapabilities",
            "AccountStatus",
            "can_transition",
            "describe_validation_error",
        )
    },
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
    "Config": "brokers.config",
    "load_config": "brokers.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'brokers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
