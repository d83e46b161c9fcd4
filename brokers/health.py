"""Account health: which connection states allow what, and the reconnect schedule."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .base import Broker
from .models import ConnectionState

__all__ = ["ORDERABLE", "READABLE", "Backoff", "adapter_orderable", "adapter_trouble"]

# States in which new orders may go to the broker. DEGRADED is connected but slow to answer
# reads: an order there can still be placed (a lost answer becomes UNKNOWN and is reconciled).
ORDERABLE = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED})
# States in which the broker is up and its data is worth reading on a heartbeat.
READABLE = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED})
# States an adapter that repairs its own feed reports while orders must wait for it.
_ADAPTER_BLOCKING = frozenset({ConnectionState.RESYNCING, ConnectionState.CONNECTING})


def adapter_orderable(broker: Broker) -> bool:
    """Adapters that resync on their own (a stream reconnect) report it in ``connection_state``;
    orders wait for that too, not only for the manager's own resync."""
    return broker.connection_state not in _ADAPTER_BLOCKING


def adapter_trouble(broker: Broker) -> str | None:
    """Why an adapter that watches its own feed (a stream, an order-book poll) reports itself
    DEGRADED, or None: reads can succeed while updates have stopped arriving."""
    if broker.connection_state is not ConnectionState.DEGRADED:
        return None
    return broker.last_error or "the broker's update feed is not working"


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
