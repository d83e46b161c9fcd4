"""Messages that cross widgets.

Library callbacks (order changes, kill-switch changes, manager events) are turned into these so
that every screen update happens in Textual's message loop, in order, never inside a library call.
"""

from __future__ import annotations

from typing import Literal

from textual.message import Message

from brokers.events import ManagerEvent
from brokers.fanout import CancelAllResult
from brokers.killswitch import HaltInfo
from brokers.models import Order, OrderRequest, TradingState

LogLevel = Literal["info", "warning", "error", "halt"]


class OrderChanged(Message):
    """An order was created or changed (ack, fill, cancel, reject)."""

    def __init__(self, order: Order) -> None:
        super().__init__()
        self.order = order


class TradingStateChanged(Message):
    """The kill switch moved to ``state``; ``info`` holds time, reason and source (None when ACTIVE)."""

    def __init__(self, state: TradingState, info: HaltInfo | None) -> None:
        super().__init__()
        self.state = state
        self.info = info


class ManagerEventReceived(Message):
    """A connection, order, fill or position event from the manager's event queue."""

    def __init__(self, event: ManagerEvent) -> None:
        super().__init__()
        self.event = event


class SnapshotRefreshed(Message):
    """Balances and positions were re-read from the brokers."""


class SubmitRequested(Message):
    """Order entry holds a valid order and the trader asked to send it."""

    def __init__(self, request: OrderRequest, *, distributed: bool = False) -> None:
        super().__init__()
        self.request = request
        self.distributed = distributed


class CancelAllFinished(Message):
    """The cancel-all that follows a halt finished: account -> outcome, or the error that
    stopped it."""

    def __init__(self, outcomes: dict[str, CancelAllResult], error: str | None = None) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.error = error


class LogEvent(Message):
    """A line for the event log; ``toast`` also pops a notification, for failures of something
    the trader just asked for."""

    def __init__(self, text: str, level: LogLevel = "info", *, toast: bool = False) -> None:
        super().__init__()
        self.text = text
        self.level = level
        self.toast = toast
