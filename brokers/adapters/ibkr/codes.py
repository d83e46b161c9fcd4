"""IB error codes and order statuses, as our exceptions and the status TWS last reported.

See https://interactivebrokers.github.io/tws-api/message_codes.html.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
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

# Messages that come with an order's id (or with -1) and leave the order working: the one table
# of what does not end an order. TWS sends them through the error callback like any refusal,
# and ib_async and ib_insync mark the order Cancelled on every code missing from their own
# warning lists; the order nonetheless keeps working and fills (for 10349,
# ib-api-reloaded/ib_async#191 and #217; for 404, erdewit/ib_insync#328). The status TWS sends
# after the message is what counts. Codes and meanings:
# https://interactivebrokers.github.io/tws-api/message_codes.html and
# https://ibkrcampus.com/campus/ibkr-api-page/twsapi-doc/#api-error-codes
INFORMATIONAL: Mapping[int, str] = MappingProxyType(
    {
        399: "order message: a warning about the order (it waits for the open, is held, ...)",
        404: "shares for a short sale are being located; the order is held meanwhile",
        10167: "market data is delayed",
        10311: "the order is routed directly to an exchange, which may cost more",
        10349: "the time in force was set from the order preset in TWS",
        # 2100-2199: system notices (account data, data farms, order events such as 2109
        # "outside regular trading hours is ignored"); 2110 also sets the connection state.
        **{code: "system notice" for code in range(2100, 2200)},
    }
)
MARGIN_WORDS = ("margin", "insufficient", "buying power", "equity with loan", "available funds")


def is_notice(code: int) -> bool:
    """Whether a message with this code leaves the order it names working (see INFORMATIONAL)."""
    return code in INFORMATIONAL


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
