"""Crypto venues through ccxt's asyncio client: Kraken, Binance.US and Coinbase Advanced Trade.

ccxt is imported when an account of this type connects, never when this package is."""

from .broker import CcxtBroker
from .settings import VENUES

__all__ = ["VENUES", "CcxtBroker"]
