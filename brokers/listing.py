"""Whether a broker lists an instrument: its answers kept per instrument, so that the screen
can ask as often as it likes and a broker is asked once.

A definite answer (listed, not tradable, not listed) is kept for ``keep_for`` seconds: a
listing changes rarely within a session, but it does change (a new issue in the morning, an
asset made inactive). "Cannot tell now" (the broker did not answer, or failed) is not kept:
the next ask tries again. Identical asks in flight at once share one request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .instruments import Instrument
from .quotes import Listing

__all__ = ["KEEP_FOR", "Listings"]

log = logging.getLogger(__name__)

KEEP_FOR = 3_600.0
"""Seconds a definite answer is kept."""

LookUp = Callable[[Instrument], Awaitable[Listing | None]]
Clock = Callable[[], float]


class Listings:
    def __init__(self, *, keep_for: float = KEEP_FOR, clock: Clock = time.monotonic) -> None:
        self._keep_for = keep_for
        self._clock = clock
        self._answers: dict[Instrument, tuple[Listing, float]] = {}
        self._asking: dict[Instrument, asyncio.Future[Listing | None]] = {}

    def known(self, instrument: Instrument) -> Listing | None:
        """The answer held for ``instrument`` without asking anyone; None when none is."""
        held = self._answers.get(instrument)
        if held is None:
            return None
        answer, until = held
        if self._clock() >= until:
            del self._answers[instrument]
            return None
        return answer

    async def ask(self, instrument: Instrument, look_up: LookUp) -> Listing | None:
        """The answer held, else ``look_up(instrument)``'s (shared with anyone asking the same
        meanwhile); None when it cannot be told now."""
        answer = self.known(instrument)
        if answer is not None:
            return answer
        asking = self._asking.get(instrument)
        if asking is None:
            asking = asyncio.ensure_future(self._look_up(instrument, look_up))
            self._asking[instrument] = asking
            asking.add_done_callback(lambda _: self._asking.pop(instrument, None))
        # Shielded: one caller giving up (the trader typed on) does not cancel the others' ask.
        return await asyncio.shield(asking)

    async def _look_up(self, instrument: Instrument, look_up: LookUp) -> Listing | None:
        try:
            answer = await look_up(instrument)
        except Exception as exc:
            # A lookup that failed tells nothing about the instrument: ask again next time.
            log.debug("no listing answer for %s: %s", instrument.label, exc)
            return None
        if answer is not None:
            self._answers[instrument] = (answer, self._clock() + self._keep_for)
        return answer

    def forget(self) -> None:
        self._answers.clear()
