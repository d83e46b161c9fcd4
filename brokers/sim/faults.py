"""Fault injection for the paper broker: what goes wrong with real brokers, on demand.

Counters say how many of the next calls are affected; ``math.inf`` means every call until the
field is reset. Timeouts and hangs can be limited to some methods by name
(``hang_methods={"get_positions"}``); ``None`` means any call, ``connect()`` included, so
arm such a fault after connecting unless the connect is meant to suffer it. Faults may be
changed at any time through ``broker.faults``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

CALLS = frozenset(
    {
        "connect",
        "place_order",
        "cancel_order",
        "cancel_all_orders",
        "get_order",
        "get_order_by_client_id",
        "get_open_orders",
        "get_balance",
        "get_positions",
        "get_margin",
        "get_last_price",
        "get_fx_rates",
    }
)
"""Names a timeout or hang may be limited to."""


@dataclass
class SimFaults:
    fail_connects: int = 0
    """The next N ``connect()`` calls raise BrokerConnectionError."""

    disconnect_after: int | None = None
    """The connection drops after N more calls: call N+1 raises BrokerConnectionError and so does
    every call after it until ``connect()``."""

    timeout_next: float = 0
    """The next N matching calls raise BrokerTimeoutError."""

    timeout_after_accept: bool = False
    """True: the timed-out call took effect at the broker and only its answer was lost (an
    order placed this way exists and fills; the caller must find it by client_order_id).
    False: the request never reached the broker. A timed-out ``connect()`` never connects."""

    timeout_methods: frozenset[str] | None = None

    hang_seconds: float = 0.0
    """How long a hanging call sleeps before it goes on as usual; ``math.inf`` never returns."""

    hang_next: float = 0
    hang_methods: frozenset[str] | None = None

    reject_next: int = 0
    """The next N orders are refused with OrderRejectedError and ``reject_reason``."""

    reject_reason: str = "order rejected by the simulated venue"

    duplicate_fills: bool = False
    """Every fill event is delivered twice."""

    out_of_order_fills: bool = False
    """Fill events arrive after the order updates that already count them, latest first."""

    def __post_init__(self) -> None:
        self.timeout_methods = _methods(self.timeout_methods, "timeout_methods")
        self.hang_methods = _methods(self.hang_methods, "hang_methods")
        for value, name in (
            (self.fail_connects, "fail_connects"),
            (self.timeout_next, "timeout_next"),
            (self.hang_next, "hang_next"),
            (self.reject_next, "reject_next"),
        ):
            _count(value, name)
        if self.disconnect_after is not None:
            _count(self.disconnect_after, "disconnect_after")
        if (
            not isinstance(self.hang_seconds, (int, float))
            or math.isnan(self.hang_seconds)
            or self.hang_seconds < 0
        ):
            raise ValueError(
                f"hang_seconds must be a number of seconds of at least 0, not {self.hang_seconds!r}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> SimFaults:
        """From config: unknown keys are refused by name; ``__post_init__`` checks the values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
        factory: Callable[..., SimFaults] = cls
        return factory(**values)

    def clear(self) -> None:
        """Back to a well-behaved broker."""
        for f in fields(self):
            setattr(self, f.name, f.default)

    # -- consulted by the broker on each call ---------------------------------------------
    def take_connect_failure(self) -> bool:
        if self.fail_connects > 0:
            self.fail_connects -= 1
            return True
        return False

    def take_hang(self, method: str) -> float:
        if self.hang_next > 0 and self.hang_seconds > 0 and _matches(self.hang_methods, method):
            self.hang_next -= 1
            return float(self.hang_seconds)
        return 0.0

    def take_timeout(self, method: str) -> bool:
        if self.timeout_next > 0 and _matches(self.timeout_methods, method):
            self.timeout_next -= 1
            return True
        return False

    def take_reject(self) -> str | None:
        if self.reject_next > 0:
            self.reject_next -= 1
            return self.reject_reason
        return None


def _matches(methods: frozenset[str] | None, method: str) -> bool:
    return methods is None or method in methods


def _methods(value: Iterable[str] | str | None, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {value}
    if not isinstance(value, Iterable) or not all(isinstance(item, str) for item in value):
        raise ValueError(f'{name} must be a list of method names such as ["place_order"], not {value!r}')
    names = frozenset(value)
    unknown = sorted(names - CALLS)
    if unknown:
        raise ValueError(f"{name}: unknown method {unknown[0]!r}; allowed: {', '.join(sorted(CALLS))}")
    return names


def _count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a count of at least 0 (math.inf for every call), not {value!r}")
    if isinstance(value, float) and not math.isinf(value) and not value.is_integer():
        raise ValueError(f"{name} must be a whole count, not {value!r}")
