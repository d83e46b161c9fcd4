"""Zerodha through Kite Connect v3: the adapter, and the rules it maps Kite's vocabulary with."""

from .broker import ZerodhaBroker
from .wire import asset_class_of, map_status, refusal_class, tag_for, token_expiry

__all__ = ["ZerodhaBroker", "asset_class_of", "map_status", "refusal_class", "tag_for", "token_expiry"]
