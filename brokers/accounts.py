"""The manager's record of each account, and the rule that picks the default account."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .base import Broker
from .events import HaltCancelEvent, PositionDiff
from .models import AccountStatus, Balance, Position

__all__ = ["AccountRecord", "default_account"]


def default_account(names: Iterable[str], marked: str | None) -> str | None:
    """The account an order that names none and matches no routing rule goes to.

    The account marked default; a lone account is the default of itself. With several accounts
    and none marked there is no default: an unrouted order is refused rather than sent to
    whichever account happens to be listed first.
    """
    if marked is not None:
        return marked
    only = list(names)
    return only[0] if len(only) == 1 else None


@dataclass(eq=False)
class AccountRecord:
    """One account as the manager holds it: the broker, its health, its last data and the
    tasks watching it."""

    name: str
    broker: Broker
    weight: float
    status: AccountStatus
    balance: Balance | None = None
    positions: list[Position] = field(default_factory=list)
    # When the manager last read the figures, and when they were true as the broker reports it
    # (a position export's file time); None when they are as of reading.
    data_at: datetime | None = None
    reported_at: datetime | None = None
    fresh: bool = False
    # The trader asked for this account to be connected; the manager keeps it so.
    wanted: bool = False
    # Why the manager stopped reconnecting on its own (credentials refused, session expired).
    blocked: str | None = None
    failed_reads: int = 0
    next_retry_at: datetime | None = None
    diffs: tuple[PositionDiff, ...] = ()
    # What the last (re)connect while trading was halted cancelled here, and what it could not.
    halt_cancel: HaltCancelEvent | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconnect: asyncio.Task[None] | None = None
    reading: asyncio.Task[None] | None = None

    def session_expired(self, now: datetime) -> bool:
        """Whether the broker session (e.g. Kite's daily token) has stopped working by ``now``."""
        expires = self.broker.session_expires_at
        return expires is not None and expires <= now
