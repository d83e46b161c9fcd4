"""Interactive Brokers (TWS / IB Gateway) through ib_async, or ib_insync where only that is installed."""

from .broker import IBKRBroker
from .codes import effective_status, error_for
from .instruments import contract_for, ib_order_for, request_from_ib, symbol_for
from .settings import LIVE_PORT, PAPER_PORT

__all__ = [
    "LIVE_PORT",
    "PAPER_PORT",
    "IBKRBroker",
    "contract_for",
    "effective_status",
    "error_for",
    "ib_order_for",
    "request_from_ib",
    "symbol_for",
]
