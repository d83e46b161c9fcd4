"""The quote board: which instruments are wanted, which account streams each, and the latest
quote of every one.

Whoever shows prices (the positions, a watchlist, the order ticket) says what it wants under a
name of its own (``want("watchlist", ...)``); the board adds up every owner's wants, picks for
each instrument one connected account that trades it, and asks each account to stream its
share, within the account's streaming limit. What an account cannot stream is asked for as a
snapshot every ``snapshot_interval`` seconds and marked SNAPSHOT. A quote older than
``stale_after`` seconds is handed out marked STALE, never as live.

Quotes arrive far faster than a screen repaints: the board keeps only the latest quote per
instrument and the set of instruments that changed, which a reader takes at its own pace
(``take_changed``), so a burst of updates costs one repaint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol

from .base import Broker
from .instruments import Instrument
from .models import ConnectionState
from .quotes import Quote, QuoteState

__all__ = ["QuoteAccounts", "QuoteBoard"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class QuoteAccounts(Protocol):
    """What the board needs of the manager."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Broker: ...

    def state(self, name: str) -> ConnectionState: ...

    @property
    def default_account(self) -> str | None: ...


class QuoteBoard:
    def __init__(
        self,
        accounts: QuoteAccounts,
        *,
        clock: Clock,
        stale_after: float = 15.0,
        snapshot_interval: float = 5.0,
    ) -> None:
        if not stale_after > 0:
            raise ValueError("stale_after must be a positive number of seconds")
        if not snapshot_interval > 0:
            raise ValueError("snapshot_interval must be a positive number of seconds")
        self._accounts = accounts
        self._clock = clock
        self._stale_after = timedelta(seconds=stale_after)
        self.snapshot_interval = snapshot_interval
        self._wants: dict[str, frozenset[Instrument]] = {}
        self._latest: dict[Instrument, Quote] = {}
        self._changed: set[Instrument] = set()
        self._streamed: dict[str, frozenset[Instrument]] = {}
        self._snapshots: dict[str, frozenset[Instrument]] = {}
        self._source: dict[Instrument, str] = {}
        self._listeners: list[Callable[[Quote], object]] = []
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what is wanted ---------------------------------------------------------------------
    def want(self, owner: str, instruments: Iterable[Instrument]) -> None:
        """Replace everything ``owner`` wants quoted with ``instruments`` (empty: nothing)."""
        wanted = frozenset(instruments)
        if self._wants.get(owner, frozenset()) == wanted:
            return
        if wanted:
            self._wants[owner] = wanted
        else:
            self._wants.pop(owner, None)
        self._dirty.set()

    @property
    def wanted(self) -> frozenset[Instrument]:
        return frozenset().union(*self._wants.values())

    def source(self, instrument: Instrument) -> str | None:
        """The account that quotes ``instrument``, when one does."""
        return self._source.get(instrument)

    def streamed(self, account: str) -> frozenset[Instrument]:
        return self._streamed.get(account, frozenset())

    def snapshotted(self, account: str) -> frozenset[Instrument]:
        return self._snapshots.get(account, frozenset())

    # -- what is known ----------------------------------------------------------------------
    def quote(self, instrument: Instrument) -> Quote | None:
        """The latest quote of ``instrument``, marked STALE when older than the setting."""
        quote = self._latest.get(instrument)
        if quote is None:
            return None
        if self._clock() - quote.time > self._stale_after:
            return quote.as_state(QuoteState.STALE)
        return quote

    def take_changed(self) -> set[Instrument]:
        """The instruments with a new quote since the last call."""
        changed, self._changed = self._changed, set()
        return changed

    def add_listener(self, listener: Callable[[Quote], object]) -> None:
        """Call ``listener(quote)`` for every quote as it arrives: for consumers that need each
        one (a sparkline's history), not for repainting."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Quote], object]) -> None:
        self._listeners.remove(listener)

    def receive(self, quote: Quote) -> None:
        """Take one quote from a broker (the sink every account is given)."""
        instrument = quote.instrument
        previous = self._latest.get(instrument)
        self._latest[instrument] = previous.merged(quote) if previous is not None else quote
        self._changed.add(instrument)
        for listener in self._listeners:
            try:
                listener(quote)
            except Exception:
                log.exception("quote listener failed")

    # -- running ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Assign the wanted instruments again (an account connected or dropped)."""
        self._dirty.set()

    async def start(self) -> None:
        if self._task is None:
            for name in self._accounts.names():
                self._accounts.get(name).set_quote_sink(self.receive)
            self._dirty.set()
            self._task = asyncio.create_task(self._run(), name="quote-board")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for name in self._accounts.names():
            self._accounts.get(name).set_quote_sink(None)

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that arrives
            # as the event is set, and stop() would wait forever.
            try:
                async with asyncio.timeout(self.snapshot_interval):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            try:
                if self._dirty.is_set():
                    self._dirty.clear()
                    await self._assign()
                await self._take_snapshots()
            except Exception:
                # The board must outlive any one broker's failure: quotes are for reading.
                log.exception("quote board")

    def _choose(self, instrument: Instrument, connected: list[str]) -> str | None:
        for name in connected:
            if self._accounts.get(name).trades(instrument):
                return name
        return None

    async def _assign(self) -> None:
        names = self._accounts.names()
        connected = [name for name in names if self._accounts.state(name) is ConnectionState.CONNECTED]
        default = self._accounts.default_account
        if default in connected:
            connected.remove(default)
            connected.insert(0, default)
        shares: dict[str, list[Instrument]] = {name: [] for name in names}
        source: dict[Instrument, str] = {}
        for instrument in sorted(self.wanted, key=lambda each: each.label):
            name = self._choose(instrument, connected)
            if name is not None:
                shares[name].append(instrument)
                source[instrument] = name
        self._source = source
        for gone in set(self._streamed) - set(names):
            del self._streamed[gone]
        for gone in set(self._snapshots) - set(names):
            del self._snapshots[gone]
        for name, share in shares.items():
            broker = self._accounts.get(name)
            limit = broker.quote_limits.streamed
            streamed = frozenset(share if limit is None else share[:limit])
            self._snapshots[name] = frozenset(share) - streamed
            if streamed != self._streamed.get(name, frozenset()):
                try:
                    await broker.stream_quotes(streamed)
                except Exception as exc:
                    log.warning("%s: could not stream quotes: %s", name, exc)
                    self._snapshots[name] = frozenset(share)
                    streamed = frozenset()
                self._streamed[name] = streamed

    async def _take_snapshots(self) -> None:
        for name, instruments in tuple(self._snapshots.items()):
            broker = self._accounts.get(name)
            for instrument in instruments:
                try:
                    quote = await broker.get_quote(instrument)
                except Exception as exc:
                    log.debug("%s: no snapshot of %s: %s", name, instrument.label, exc)
                    continue
                if quote is not None:
                    self.receive(quote.as_state(QuoteState.SNAPSHOT))
