"""Alpaca through alpaca-py: US stocks (fractional where Alpaca allows it) and crypto pairs.

alpaca-py is synchronous: every REST call runs in a worker thread with a request timeout and no
hidden retries, and its ``TradingStream`` runs in a thread of its own, never on the caller's loop.
"""

from .broker import LIVE_URL, PAPER_URL, AlpacaBroker
from .wire import crypto_symbol, map_status, parse_time

__all__ = ["LIVE_URL", "PAPER_URL", "AlpacaBroker", "crypto_symbol", "map_status", "parse_time"]
