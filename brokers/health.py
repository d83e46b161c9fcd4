"""Account health: which connection states allow what, the reconnect schedule, and the record
the manager keeps for each account."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from datetime import datetime

from .base import Broker
from .events import PositionDiff
from .models import AccountStatus, Balance, ConnectionState, Position

__all__ = ["ORDERABLE", "READABLE", "AccountRecord", "Backoff"]

# States in which new orders may go to the broker. DEGRADED is connected but slow to answer
# reads: an order there can still be placed (a lost answer becomes UNKNOWN and is reconciled).
ORDERABLE = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED})
# States in which the broker is up and its data is worth reading on a heartbeat.
READABLE = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED})


@dataclass
class Backoff:
    """Capped exponential backoff with jitter.

    The n-th retry (from 0) waits ``min(maximum, initial * multiplier**n)`` less a random part of
    up to ``jitter`` of it, so many accounts dropped at once do not all retry in step and no
    wait is ever longer than ``maximum``.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not (self.initial > 0 and math.isfinite(self.initial)):
            raise ValueError("backoff initial delay must be a positive number of seconds")
        if not (self.maximum >= self.initial and math.isfinite(self.maximum)):
            raise ValueError("backoff maximum must be at least the initial delay")
        if not self.multiplier >= 1:
            raise ValueError("backoff multiplier must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be a fraction from 0 up to (not including) 1")

    def base_delay(self, attempt: int) -> float:
        try:
            raw = self.initial * self.multiplier ** max(0, attempt)
        except OverflowError:
            raw = math.inf
        return min(self.maximum, raw)

    def delay(self, attempt: int) -> float:
        base = self.base_delay(attempt)
        return base * (1 - self.jitter * self.rng.random())


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
    data_at: datetime | None = None
    fresh: bool = False
    # The trader asked for this account to be connected; the manager keeps it so.
    wanted: bool = False
    # Why the manager stopped reconnecting on its own (credentials refused, session expired).
    blocked: str | None = None
    failed_reads: int = 0
    next_retry_at: datetime | None = None
    diffs: tuple[PositionDiff, ...] = ()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconnect: asyncio.Task[None] | None = None
    reading: asyncio.Task[None] | None = None
