"""Interpreter settings for the long-running full-screen console, applied by its launcher only.

Everything loaded at start-up lives as long as the process; freezing it takes it out of the
cyclic collector's sight, so full collections stay short (with thousands of positions a full
collection otherwise stalls the screen, and the halt key, for over 100 ms). The order path makes
many short-lived, acyclic objects that reference counting frees at once; Python's default of a
young collection every 700 allocations spends most of its time finding nothing on that path, so
young collections run less often. Consolidation runs in a thread; a shorter switch interval hands
the interpreter back to the event loop sooner, so the screen keeps its frame rate meanwhile.

These are process-wide, so they belong to the process that runs the screen, never to the App
(tests build many apps in one process).
"""

from __future__ import annotations

import gc
import sys

THRESHOLDS = (10_000, 20, 20)
SWITCH_INTERVAL = 0.001


class GcTuning:
    """Collect and freeze what is loaded, then make young collections rarer; ``restore`` undoes it."""

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


class ProcessTuning:
    """The console process's settings, in two steps: ``loaded`` before the first frame (what is
    loaded by then lives as long as the screen; frozen, it is left out of the collections that
    would otherwise stall building and painting it), ``accounts_loaded`` once the runtime's
    first data is in."""

    def __init__(self) -> None:
        self._gc = GcTuning()
        self._frozen = False
        self._switch_interval: float | None = None

    def loaded(self) -> None:
        if not self._frozen:
            gc.freeze()
            self._frozen = True

    def accounts_loaded(self) -> None:
        self._gc.apply()
        if self._switch_interval is None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))

    def restore(self) -> None:
        self._gc.restore()
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
