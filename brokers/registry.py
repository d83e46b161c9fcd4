"""Broker type name -> adapter class, imported only when first used.

alpaca-py alone costs most of a second to import, so nothing here imports an adapter until a
config asks for that type.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol

from .base import Broker
from .errors import ConfigError


class BrokerSettings(Protocol):
    """An account's settings that can say what its broker takes (``AccountConfig``)."""

    def broker_config(self) -> Mapping[str, object]: ...


_BUILTIN: dict[str, str] = {
    "sim": "brokers.sim.broker:SimBroker",
    "alpaca": "brokers.adapters.alpaca:AlpacaBroker",
    "ibkr": "brokers.adapters.ibkr:IBKRBroker",
    "zerodha": "brokers.adapters.zerodha:ZerodhaBroker",
    "ccxt": "brokers.adapters.ccxt:CcxtBroker",
    "csv": "brokers.adapters.csvfile:CsvBroker",
    "schwab": "brokers.adapters.schwab:SchwabBroker",
}


class BrokerFactory:
    _types: dict[str, str | type[Broker]] = dict(_BUILTIN)

    @classmethod
    def register(cls, type_name: str, broker_cls: type[Broker] | str) -> None:
        """Add a broker type: a class, or "module:Class" to import lazily."""
        if not type_name or not type_name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"broker type name must be letters, digits, '-' or '_', not {type_name!r}")
        cls._types[type_name.lower()] = broker_cls

    @classmethod
    def types(cls) -> list[str]:
        return sorted(cls._types)

    @classmethod
    def get(cls, type_name: str) -> type[Broker]:
        try:
            target = cls._types[type_name.lower()]
        except KeyError:
            allowed = ", ".join(cls.types())
            raise ConfigError(f"unknown broker type {type_name!r}; allowed: {allowed}") from None
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            loaded: object = getattr(importlib.import_module(module_name), attr)
            if not (isinstance(loaded, type) and issubclass(loaded, Broker)):
                raise ConfigError(f"broker type {type_name!r} names {target}, which is not a Broker")
            target = cls._types[type_name.lower()] = loaded
        return target

    @classmethod
    def create(cls, config: Mapping[str, object] | BrokerSettings) -> Broker:
        """Build a broker from a config mapping (``type``, ``name`` and type-specific settings)
        or from an ``AccountConfig``."""
        settings = dict(config if isinstance(config, Mapping) else config.broker_config())
        type_name = settings.pop("type", None)
        if not type_name:
            raise ConfigError("broker config needs a 'type'; allowed: " + ", ".join(cls.types()))
        return cls.get(str(type_name)).from_config(settings)
