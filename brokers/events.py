"""What the manager tells its subscribers: connection changes, order and fill updates,
differences between the journal's book and what a broker reports holding, and the working orders
cancelled at an account that came back while trading was halted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .models import ConnectionState, Fill, Order, utcnow

__all__ = [
    "ConnectionEvent",
    "FillEvent",
    "HaltCancelEvent",
    "ManagerEvent",
    "OrderEvent",
    "PositionDiff",
    "PositionDiffEvent",
    "UncancelledOrder",
]


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    account: str
    state: ConnectionState
    error: str | None = None
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class OrderEvent:
    account: str
    order: Order
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class FillEvent:
    account: str
    fill: Fill
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class PositionDiff:
    """The journal's book and the broker disagree about one holding."""

    account: str
    symbol: str
    book: Decimal
    broker: Decimal

    @property
    def difference(self) -> Decimal:
        """What the broker holds beyond the book (negative: less than the book)."""
        return self.broker - self.book


@dataclass(frozen=True, slots=True)
class PositionDiffEvent:
    """Sent after every resync of an account; empty ``diffs`` means book and broker agree."""

    account: str
    diffs: tuple[PositionDiff, ...]
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class UncancelledOrder:
    """A working order a halt could not cancel, and why."""

    order: Order
    reason: str


@dataclass(frozen=True, slots=True)
class HaltCancelEvent:
    """An account connected or reconnected while trading was halted: the working orders found
    there were cancelled before it was marked usable. ``cancelled`` are the broker order ids
    the broker took; ``not_cancelled`` are the orders still working, each with the reason."""

    account: str
    cancelled: tuple[str, ...]
    not_cancelled: tuple[UncancelledOrder, ...] = ()
    at: datetime = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        return not self.not_cancelled


ManagerEvent = ConnectionEvent | OrderEvent | FillEvent | PositionDiffEvent | HaltCancelEvent
