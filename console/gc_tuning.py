"""Garbage-collector settings for a long-running trading screen.

Everything loaded at start-up lives as long as the process; freezing it takes it out of the
cyclic collector's sight, so full collections stay short (with thousands of positions a full
collection otherwise stalls the screen, and the halt key, for over 100 ms). The order path makes
many short-lived, acyclic objects that reference counting frees at once; Python's default of a
young collection every 700 allocations spends most of its time finding nothing on that path, so
young collections run less often.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 20, 20)


class GcTuning:
    """Apply once the long-lived objects are loaded; restore when the screen closes."""

    def __init__(self) -> None:
        self._previous: tuple[int, int, int] | None = None

    def apply(self) -> None:
        if self._previous is not None:
            return
        self._previous = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)

    def restore(self) -> None:
        if self._previous is None:
            return
        gc.set_threshold(*self._previous)
        gc.unfreeze()
        self._previous = None
