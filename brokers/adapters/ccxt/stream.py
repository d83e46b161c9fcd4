"""Order and fill updates from the venue's private websocket, through ccxt.pro's ``watch_orders``
and ``watch_my_trades``.

The stream speeds things up; it is not the only source. A trade on the stream becomes a fill at
once (under the same id a poll would give it, so it is counted once); an order whose state moved
is taken in when it is one we follow, and anything the stream names that we do not follow yet
(an order whose placing has not answered) makes the poller look now. While the stream works,
polls thin out to a safety net; when it fails, the link is marked DEGRADED with the reason, a
warning is logged, polls go back to their full rate at once, and the stream is tried again after
a pause that grows with each failure in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ...credentials import redact
from ...errors import BrokerError
from .mirror import OrderMirror
from .session import CcxtSession

log = logging.getLogger(__name__)

# Polls while the stream delivers: a safety net for a message the venue never sent.
STREAMED_POLL_INTERVAL = 15.0
_MAX_PAUSE = 60.0


class Poke(Protocol):
    def poke(self) -> None: ...


class OrderStream:
    """Follows the account's orders and trades on the venue's websocket while ``run`` runs."""

    def __init__(
        self,
        account: str,
        session: CcxtSession,
        mirror: OrderMirror,
        quote_of: Callable[[str], str | None],
        poller: Poke,
        *,
        poll_interval: float,
        trades: bool = True,
        retry_after: float = 1.0,
        settle: float = 2.0,
    ) -> None:
        self._account = account
        self._session = session
        self._mirror = mirror
        self._quote_of = quote_of
        self._poller = poller
        self._poll_interval = poll_interval
        self._retry_after = retry_after
        self._settle = settle
        self._trades = trades
        self._stopping = asyncio.Event()
        self.delivering = False
        self.failures = 0

    def poll_interval(self) -> float:
        """How often the poller should look: seldom while the stream delivers."""
        if self.delivering:
            return max(self._poll_interval, STREAMED_POLL_INTERVAL)
        return self._poll_interval

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self._stopping.clear()
        # A new connection proves itself afresh: polls keep their full rate until it does.
        self.delivering = False
        self.failures = 0
        while not self._stopping.is_set():
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the socket falls back to polling, said aloud
                if self._stopping.is_set():
                    return
                self._lost(exc)
            if await self._pause(min(self._retry_after * 2 ** max(self.failures - 1, 0), _MAX_PAUSE)):
                return

    async def _follow(self) -> None:
        exchange = self._session.streaming()
        stopping = asyncio.create_task(self._stopping.wait())
        tasks = {stopping, asyncio.create_task(self._watch(exchange.watch_orders, self._take_orders))}
        if self._trades:
            tasks.add(asyncio.create_task(self._watch(exchange.watch_my_trades, self._take_trades)))
        try:
            done, _ = await asyncio.wait(tasks, timeout=self._settle, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                # A socket that cannot be opened, or keys it refuses, fail at once; one still
                # waiting for news after a few seconds is up, though it has had nothing to say.
                self._delivered()
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for task in done:
            error = None if task is stopping or task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def _watch(
        self,
        watch: Callable[[], Awaitable[list[dict[str, Any]]]],
        take: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        while True:
            try:
                updates = await watch()
            except BrokerError:
                raise
            except Exception as exc:
                raise self._session.translate(exc, "follow the order stream", submit=False) from None
            self._delivered()
            take(updates if isinstance(updates, list) else [])

    def _take_orders(self, updates: list[dict[str, Any]]) -> None:
        unknown = False
        for payload in updates:
            oid = str(payload.get("id") or "") if isinstance(payload, dict) else ""
            if oid and self._mirror.follows(oid):
                self._mirror.ingest_quietly(payload)
            else:
                unknown = True
        # An order the venue says filled further than the trades we have read: read them now.
        if unknown or self._mirror.awaiting_trades():
            self._poller.poke()

    def _take_trades(self, updates: list[dict[str, Any]]) -> None:
        if any(
            not isinstance(trade, dict) or not self._mirror.follows(str(trade.get("order") or ""))
            for trade in updates
        ):
            self._poller.poke()
        self._mirror.take_trades(list(updates), self._quote_of)

    def _delivered(self) -> None:
        if not self.delivering:
            if self.failures:
                log.warning("%s: the order stream is delivering again; polls thin out", self._account)
            self.delivering = True
            self.failures = 0
            self._session.stream_delivering()

    def _lost(self, exc: Exception) -> None:
        self.delivering = False
        self.failures += 1
        reason = f"order stream down ({redact(exc)[:200]}); orders followed by polling every {self._poll_interval:g} s"
        self._session.stream_lost(reason)
        log.warning("%s: %s", self._account, reason)
        self._poller.poke()  # catch up on what the socket may have missed, now

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; True when told to stop meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True
