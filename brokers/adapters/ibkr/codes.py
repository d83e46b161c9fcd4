"""IB error codes and order statuses, as our exceptions and the status TWS last reported.

See https://interactivebrokers.github.io/tws-api/message_codes.html.
"""

from __future__ import annotations

from typing import Any

from ...errors import (
    BrokerAPIError,
    BrokerError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)

NO_SECURITY_DEFINITION = 200
ORDER_REJECTED = 201
ORDER_CANCELLED = 202
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
SERVER_CONNECTIVITY_BROKEN = 2110
# A cancel that TWS refused; the order itself is unchanged by it.
CANCEL_FAILED = frozenset({161, 10147, 10148})
# Notices that say nothing about the order: market-data farm status, short-sale locate, ...
NOTICES = frozenset({399, 404, 2100, 2101, 2102, 2103, 2104, 2105, 2106, 2107, 2108, 2119, 2158})
MARGIN_WORDS = ("margin", "insufficient", "buying power", "equity with loan", "available funds")


def is_notice(code: int) -> bool:
    return code in NOTICES or (2100 <= code < 2200 and code != SERVER_CONNECTIVITY_BROKEN)


def error_for(code: int, message: str, broker: str) -> BrokerError:
    """The exception for an IB error about an order."""
    text = f"IB {code}: {message}" if code else message
    if code == NO_SECURITY_DEFINITION:
        return InvalidSymbolError(text, broker=broker, code=code)
    if code == ORDER_REJECTED and any(word in message.lower() for word in MARGIN_WORDS):
        return InsufficientFundsError(text, broker=broker, code=code)
    if code in CANCEL_FAILED:
        return (
            OrderNotFoundError(text, broker=broker, code=code)
            if code == 10147
            else BrokerAPIError(text, broker=broker, code=code)
        )
    return OrderRejectedError(text, broker=broker, code=code)


def effective_status(trade: Any) -> tuple[str, int]:
    """The order status TWS last reported, and the error code that came with it (0 if none).

    The client library marks an order Cancelled on *any* error about it, including a refused
    cancel or a notice; those entries in the trade's log are skipped, so they cannot end an
    order that is still working.
    """
    for entry in reversed(trade.log):
        code = entry.errorCode
        if code in CANCEL_FAILED or is_notice(code) or entry.status == "ValidationError":
            continue
        return entry.status, code
    return trade.orderStatus.status, 0
