"""Time for the paper broker: real UTC time by default, or a clock a test moves by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""Anything that returns the current time as an aware datetime."""


class ManualClock:
    """A clock that stands still until told to move, so timestamps and session closes in tests
    and recorded demos come out the same on every run."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start) if start is not None else datetime(2024, 1, 2, 14, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move forward by ``seconds`` plus any ``timedelta`` keywords (minutes=5, hours=1)."""
        step = timedelta(seconds=seconds, **delta)
        if step < timedelta(0):
            raise ValueError("a clock only moves forward")
        self._now += step
        return self._now

    def set(self, when: datetime) -> datetime:
        when = _aware(when)
        if when < self._now:
            raise ValueError("a clock only moves forward")
        self._now = when
        return self._now

    def __repr__(self) -> str:
        return f"<ManualClock {self._now.isoformat()}>"


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("the clock needs a timezone-aware datetime")
    return when.astimezone(UTC)
