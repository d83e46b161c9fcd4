"""The update stream: orders are polled on a timer, less often after failures, and the link is
marked DEGRADED while polls keep failing. While orders are working, the venue's cancel-all-after
timer (a dead man's switch) is kept armed, so that if this process dies or loses the venue its
orders are cancelled by the venue itself."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from ...credentials import redact
from ...errors import AuthenticationError
from ...models import ConnectionState
from .orders import OrderDesk
from .session import CcxtSession

log = logging.getLogger(__name__)


class DeadMansSwitch:
    """The venue's cancel-all-after timer: armed for ``seconds`` and renewed while orders work,
    switched off when none do."""

    def __init__(self, account: str, session: CcxtSession, seconds: int) -> None:
        self._account = account
        self._session = session
        self.seconds = seconds
        self.armed_at: float | None = None

    async def keep(self, working: bool) -> None:
        if self.seconds <= 0:
            return
        now = time.monotonic()
        if working and (self.armed_at is None or now - self.armed_at >= self.seconds / 4):
            exchange = self._session.require()
            await self._session.call(
                exchange.cancel_all_orders_after, self.seconds * 1000, what="arm the cancel-all-after timer"
            )
            self.armed_at = now
        elif not working and self.armed_at is not None:
            await self.disarm()

    async def disarm(self) -> None:
        if self.armed_at is None:
            return
        exchange = self._session.require()
        await self._session.call(
            exchange.cancel_all_orders_after, 0, what="switch off the cancel-all-after timer"
        )
        self.armed_at = None


class Pace(Protocol):
    """How often to poll: a stream that delivers makes polls a safety net."""

    def poll_interval(self) -> float: ...


class OrderPoller:
    """Polls the desk every ``poll_interval`` seconds (or as ``pace`` says) while ``run`` runs."""

    def __init__(
        self,
        account: str,
        session: CcxtSession,
        desk: OrderDesk,
        switch: DeadMansSwitch | None,
        *,
        poll_interval: float,
    ) -> None:
        self._account = account
        self._session = session
        self._desk = desk
        self._switch = switch
        self._poll_interval = poll_interval
        self.pace: Pace | None = None
        self._failures = 0
        self._wake = asyncio.Event()
        self._stopping = False

    def poke(self) -> None:
        """Poll now rather than at the next tick (after an order went out)."""
        self._wake.set()

    def stop(self) -> None:
        """End ``run`` after the poll under way, if any: a ccxt call cancelled half-way can leave
        its client unusable for the calls that follow (the timer switched off, the close)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        session = self._session
        self._stopping = False
        while True:
            delay = min(self._poll_interval * 2**self._failures, 30.0)
            if self.pace is not None and self._failures == 0:
                # A failing poll is looked at again at the full rate: it is the fallback.
                delay = self.pace.poll_interval()
            if self._switch is not None and self._switch.armed_at is not None:
                delay = min(delay, self._switch.seconds / 4)  # renewed well before it runs out
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                return
            try:
                working = await self._desk.sync()
                if self._switch is not None:
                    await self._switch.keep(working)
            except AuthenticationError as exc:
                session.state = ConnectionState.FAILED
                session.last_error = redact(exc)
                log.warning("%s: order polling stopped: %s", self._account, session.last_error)
                return
            except Exception as exc:  # the stream must outlive any one bad poll
                self._failures += 1
                session.poll_failed(redact(exc), degraded=self._failures >= 2)
                log.warning(
                    "%s: order poll failed (%d in a row): %s", self._account, self._failures, redact(exc)
                )
                continue
            self._failures = 0
            session.poll_succeeded()
