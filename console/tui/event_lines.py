"""What the event log says about a library event: one line and its level. Pure functions."""

from __future__ import annotations

from decimal import Decimal

from brokers.events import ConnectionEvent, PositionDiffEvent
from brokers.killswitch import HaltInfo
from brokers.models import AccountStatus, ConnectionState, Order, OrderStatus, TradingState
from console import formatting as fmt

from .messages import LogLevel

CONNECTION_LEVEL: dict[ConnectionState, LogLevel] = {
    ConnectionState.CONNECTED: "info",
    ConnectionState.CONNECTING: "info",
    ConnectionState.DEGRADED: "warning",
    ConnectionState.RESYNCING: "warning",
}

ShownOrder = tuple[OrderStatus, Decimal]
"""What the log last said about an order: its status and filled quantity."""


def state_line(state: TradingState, info: HaltInfo | None) -> str:
    reason = (info.reason if info else "") or ""
    source = (info.source if info else "") or "unknown"
    if state is TradingState.HALTED:
        return f"SYSTEM HALTED by {source}: {reason}"
    if state is TradingState.REDUCING:
        return f"REDUCE-ONLY by {source}: {reason}"
    return "trading ACTIVE again"


def _error_suffix(account: str, error: str | None) -> str:
    text = error and fmt.without_prefix(account, fmt.one_line(error, 200))
    return f": {text}" if text else ""


def connection_line(event: ConnectionEvent) -> tuple[str, LogLevel]:
    text = f"{event.account} {event.state.value}{_error_suffix(event.account, event.error)}"
    return text, CONNECTION_LEVEL.get(event.state, "error")


def first_status_line(name: str, status: AccountStatus) -> tuple[str, LogLevel]:
    """How an account came out of the first connect attempt."""
    text = f"{name} {status.state.value}{_error_suffix(name, status.last_error)}"
    return text, "info" if status.state is ConnectionState.CONNECTED else "error"


def order_line(order: Order, shown: ShownOrder | None) -> tuple[str, LogLevel] | None:
    """A line when the order's status or filled quantity moved since ``shown``, else None."""
    where = order.account or "auto"
    described = fmt.describe_request(order.request)
    if order.reject_code and (shown is None or shown[0] != order.status):
        return f"REJECTED {order.reject_code}: {described} → {where}: {order.reject_reason or ''}", "error"
    if shown is None or shown != (order.status, order.filled_quantity):
        filled = ""
        if order.filled_quantity:
            filled = f" filled {fmt.quantity(order.filled_quantity)} @ {fmt.price(order.avg_fill_price)}"
        return f"{order.status.value}: {described} → {where}{filled}", "info"
    return None


def diff_lines(event: PositionDiffEvent) -> list[str]:
    return [
        f"{event.account} {diff.symbol}: journal says {fmt.quantity(diff.book)}, "
        f"broker says {fmt.quantity(diff.broker)}"
        for diff in event.diffs
    ]
