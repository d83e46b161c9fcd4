"""The quote board: which instruments are wanted, which account streams each, and the latest
quote of every one.

Whoever shows prices (the positions, a watchlist, the order ticket) says what it wants under a
name of its own (``want("watchlist", ...)``); the board adds up every owner's wants, picks for
each instrument one connected account that trades it, and asks each account to stream its
share, within the account's streaming limit. What an account cannot stream is asked for as a
snapshot every ``snapshot_interval`` seconds and marked SNAPSHOT; so is what an account reports
it cannot stream after all (``StreamOutage``: its stream's login or subscription refused), until
it reports streaming again. A quote older than
``stale_after`` seconds, or from an account that no longer quotes the instrument (it dropped),
is handed out marked STALE, never as live.

Quotes arrive far faster than a screen repaints: the board keeps only the latest quote per
instrument and the set of instruments that changed, which a reader takes at its own pace
(``take_changed``), so a burst of updates costs one repaint. Taking a quote is a few dict
operations: the board must keep up with tens of thousands a second on the event loop.

A broker must hand back quotes for the very instruments it was asked to stream (equal
``Instrument``s); the board drops a quote from an account that is not the one it chose for the
instrument, so two feeds are never mixed into one row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from .base import Broker
from .instruments import Instrument
from .models import ConnectionState
from .quotes import OutageSink, Quote, QuoteSettings, QuoteSink, QuoteState, StreamOutage

__all__ = ["QUOTABLE", "QuoteAccounts", "QuoteBoard"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

QUOTABLE = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED, ConnectionState.RESYNCING})
"""Connection states in which an account is asked for quotes: its link is up, even while its
order feed is being repaired."""

CALL_TIMEOUT = 10.0
"""Seconds one broker may take to answer ``stream_quotes`` or ``get_quote`` before the board
gives up on it for this round: one slow broker must not hold up the others."""

SNAPSHOTS_AT_ONCE = 8
"""Snapshot requests in flight at once, over all accounts."""

SETTLE = 0.05
"""Seconds the board waits after a change of wants before assigning: a symbol typed letter by
letter into the order ticket is one subscription, not four."""

STALE_SWEEP = timedelta(seconds=1)
"""How often ``take_changed`` looks for quotes that have turned stale since it last looked."""


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
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self._accounts = accounts
        self._clock = clock
        self._stale_after = timedelta(seconds=15)
        self._snapshot_interval = 5.0
        self.set_timing(stale_after=stale_after, snapshot_interval=snapshot_interval)
        self._call_timeout = call_timeout
        self._wants: dict[str, frozenset[Instrument]] = {}
        self._wanted: frozenset[Instrument] = frozenset()
        self._latest: dict[Instrument, Quote] = {}
        self._changed: set[Instrument] = set()
        self._stale: set[Instrument] = set()
        # When each delayed quote arrived (their own times are minutes old by design).
        self._delayed_at: dict[Instrument, datetime] = {}
        self._next_sweep: datetime | None = None
        self._streamed: dict[str, frozenset[Instrument]] = {}
        self._snapshots: dict[str, frozenset[Instrument]] = {}
        self._source: dict[Instrument, str] = {}
        self._sinks: dict[str, QuoteSink] = {}
        self._outage_sinks: dict[str, OutageSink] = {}
        # Per account: what it was asked to stream and says it is not streaming now, and why.
        self._outages: dict[str, StreamOutage] = {}
        self._outage_listeners: list[Callable[[str, StreamOutage], object]] = []
        self._listeners: list[Callable[[Quote], object]] = []
        self._failed_listeners: set[int] = set()
        self._retry = False
        self._dirty = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- settings ---------------------------------------------------------------------------
    def configure(self, settings: QuoteSettings) -> None:
        """Take the ``[quotes]`` settings of the config file."""
        self.set_timing(
            stale_after=settings.stale_after_seconds, snapshot_interval=settings.snapshot_interval_seconds
        )

    def set_timing(self, *, stale_after: float, snapshot_interval: float) -> None:
        if not stale_after > 0:
            raise ValueError(f"stale_after must be a positive number of seconds, not {stale_after!r}")
        if not snapshot_interval > 0:
            raise ValueError(
                f"snapshot_interval must be a positive number of seconds, not {snapshot_interval!r}"
            )
        self._stale_after = timedelta(seconds=stale_after)
        self._snapshot_interval = snapshot_interval

    @property
    def stale_after(self) -> float:
        return self._stale_after.total_seconds()

    @stale_after.setter
    def stale_after(self, seconds: float) -> None:
        self.set_timing(stale_after=seconds, snapshot_interval=self._snapshot_interval)

    @property
    def snapshot_interval(self) -> float:
        return self._snapshot_interval

    @snapshot_interval.setter
    def snapshot_interval(self, seconds: float) -> None:
        self.set_timing(stale_after=self.stale_after, snapshot_interval=seconds)

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
        self._wanted = frozenset().union(*self._wants.values())
        self._dirty.set()

    @property
    def wanted(self) -> frozenset[Instrument]:
        return self._wanted

    def wanted_by(self, owner: str) -> frozenset[Instrument]:
        return self._wants.get(owner, frozenset())

    def source(self, instrument: Instrument) -> str | None:
        """The account that quotes ``instrument``, when one does."""
        return self._source.get(instrument)

    def streamed(self, account: str) -> frozenset[Instrument]:
        return self._streamed.get(account, frozenset())

    def snapshotted(self, account: str) -> frozenset[Instrument]:
        """What ``account`` is asked for as snapshots: past its limit, or in a stream outage."""
        polled = self._snapshots.get(account, frozenset())
        outage = self._outages.get(account)
        if outage is not None:
            polled |= outage.instruments & self._streamed.get(account, frozenset())
        return polled

    def outage(self, account: str) -> StreamOutage | None:
        """Why ``account`` is not streaming what it was asked to, while it is not."""
        return self._outages.get(account)

    def add_outage_listener(self, listener: Callable[[str, StreamOutage], object]) -> None:
        """Call ``listener(account, outage)`` when an account's stream fails and when it
        streams again (an outage with no instruments): once each, for the event log."""
        self._outage_listeners.append(listener)

    def remove_outage_listener(self, listener: Callable[[str, StreamOutage], object]) -> None:
        self._outage_listeners.remove(listener)

    # -- what is known ----------------------------------------------------------------------
    def quote(self, instrument: Instrument) -> Quote | None:
        """The latest quote of ``instrument``, marked STALE when older than the setting or when
        the account it came from no longer quotes it."""
        quote = self._latest.get(instrument)
        if quote is None:
            return None
        if self._is_stale(quote, self._clock()):
            return quote.as_state(QuoteState.STALE)
        return quote

    def _is_stale(self, quote: Quote, now: datetime) -> bool:
        made = quote.time
        if quote.state is QuoteState.DELAYED:
            # A delayed feed's quotes are minutes old by design: stale is when it stops talking.
            made = self._delayed_at.get(quote.instrument, made)
        return now - made > self._stale_after or self._source.get(quote.instrument) != quote.source

    def take_changed(self) -> set[Instrument]:
        """The instruments with a new quote since the last call, and those whose quote has
        turned stale (or live again) since: each is one repaint, however many quotes came."""
        now = self._clock()
        if self._next_sweep is None or now >= self._next_sweep:
            self._next_sweep = now + STALE_SWEEP
            stale = {instrument for instrument, quote in self._latest.items() if self._is_stale(quote, now)}
            self._changed |= stale ^ self._stale
            self._stale = stale
        changed, self._changed = self._changed, set()
        return changed

    def add_listener(self, listener: Callable[[Quote], object]) -> None:
        """Call ``listener(quote)`` for every quote as it arrives: for consumers that need each
        one (a sparkline's history), not for repainting."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Quote], object]) -> None:
        self._listeners.remove(listener)

    def pin(self, instrument: Instrument, account: str) -> None:
        """Take ``instrument``'s quotes from ``account`` without asking any broker to stream
        it: for quotes the board does not fetch itself (a replay, fixed quotes). The next
        assignment, on a running board, chooses again."""
        self._source[instrument] = account

    def receive(self, quote: Quote) -> None:
        """Take one quote from the account ``quote.source`` names."""
        self._take(quote.source, quote)

    def sink_for(self, account: str) -> QuoteSink:
        """The sink for ``account``'s broker: its quotes count as that account's whatever name
        the broker gives itself."""
        sink = self._sinks.get(account)
        if sink is None:

            def sink(quote: Quote) -> None:
                self._take(account, quote)

            self._sinks[account] = sink
        return sink

    def outage_sink_for(self, account: str) -> OutageSink:
        """The outage sink for ``account``'s broker."""
        sink = self._outage_sinks.get(account)
        if sink is None:

            def sink(outage: StreamOutage) -> None:
                self._outage(account, outage)

            self._outage_sinks[account] = sink
        return sink

    def _outage(self, account: str, outage: StreamOutage) -> None:
        before = self._outages.get(account)
        if outage.instruments:
            self._outages[account] = outage
        else:
            self._outages.pop(account, None)
        if before is None and outage.instruments:
            # Once per outage, not once per retry: the adapter keeps retrying quietly.
            log.warning(
                "%s: quotes not streaming (%s); asking for snapshots every %g s until they are",
                account,
                outage.reason or "no reason given",
                self._snapshot_interval,
            )
        elif before is not None and not outage.instruments:
            log.info("%s: quotes streaming again", account)
        else:
            if before is not None and outage.instruments:
                self._poll_now.set()  # what is not streamed may have grown
            return
        if outage.instruments:
            self._poll_now.set()  # a first snapshot now, not an interval from now
            # What the stream last sent is no longer kept current: a snapshot now, not live.
            for instrument in outage.instruments:
                latest = self._latest.get(instrument)
                if latest is not None and latest.source == account and latest.state is QuoteState.LIVE:
                    self._latest[instrument] = latest.as_state(QuoteState.SNAPSHOT)
                    self._changed.add(instrument)
        for listener in tuple(self._outage_listeners):
            try:
                listener(account, outage)
            except Exception:
                log.exception("quote board: outage listener failed")

    def _take(self, account: str, quote: Quote) -> None:
        instrument = quote.instrument
        if self._source.get(instrument) != account:
            return  # not (or no longer) the feed chosen for it
        if quote.source != account:
            quote = replace(quote, source=account)
        previous = self._latest.get(instrument)
        if previous is not None and previous.source == account:
            quote = previous.merged(quote)
        self._latest[instrument] = quote
        if quote.state is QuoteState.DELAYED:
            self._delayed_at[instrument] = self._clock()
        self._changed.add(instrument)
        if self._listeners:
            for listener in self._listeners:
                try:
                    listener(quote)
                except Exception:
                    # Once per listener: a broken one would otherwise log ten thousand times a second.
                    if id(listener) not in self._failed_listeners:
                        self._failed_listeners.add(id(listener))
                        log.exception("quote listener failed")

    # -- running ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Assign the wanted instruments again (an account connected or dropped)."""
        self._dirty.set()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        if self._tasks:
            return
        self._install_sinks()
        self._dirty.set()
        self._tasks = [
            asyncio.create_task(self._assign_forever(), name="quote-board-assign"),
            asyncio.create_task(self._poll_forever(), name="quote-board-snapshots"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        names = self._accounts.names()
        # Nobody reads quotes any more: the brokers need not send them.
        await asyncio.gather(
            *(
                self._stream(name, self._accounts.get(name), frozenset())
                for name in names
                if self.streamed(name)
            )
        )
        for name in names:
            self._accounts.get(name).set_quote_sink(None)
            self._accounts.get(name).set_outage_sink(None)
        self._outages.clear()
        self._streamed.clear()
        self._snapshots.clear()
        self._source.clear()

    def _install_sinks(self) -> None:
        for name in self._accounts.names():
            broker = self._accounts.get(name)
            broker.set_quote_sink(self.sink_for(name))
            broker.set_outage_sink(self.outage_sink_for(name))

    async def _assign_forever(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(SETTLE)
            self._dirty.clear()
            try:
                await self.assign()
            except Exception:
                # The board must outlive any one broker's failure: quotes are for reading.
                log.exception("quote board: assigning quotes failed")

    async def _poll_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that arrives
            # as the event is set, and stop() would wait forever.
            try:
                async with asyncio.timeout(self._snapshot_interval):
                    await self._poll_now.wait()
            except TimeoutError:
                pass
            self._poll_now.clear()
            if self._retry:
                self._retry = False
                self._dirty.set()
            try:
                await self.take_snapshots()
            except Exception:
                log.exception("quote board: snapshots failed")

    # -- assigning --------------------------------------------------------------------------
    async def assign(self) -> None:
        """Choose an account for every wanted instrument and tell each account what to stream
        (``start`` runs this whenever wants or connections change)."""
        self._install_sinks()
        names = self._accounts.names()
        connected = [name for name in names if self._accounts.state(name) in QUOTABLE]
        default = self._accounts.default_account
        if default in connected:
            connected.remove(default)
            connected.insert(0, default)
        brokers = {name: self._accounts.get(name) for name in names}
        limits = {name: brokers[name].quote_limits.streamed for name in connected}
        streams: dict[str, list[Instrument]] = {name: [] for name in names}
        polls: dict[str, list[Instrument]] = {name: [] for name in names}
        source: dict[Instrument, str] = {}

        def room(name: str) -> bool:
            limit = limits[name]
            return limit is None or len(streams[name]) < limit

        wanted = sorted(self._wanted, key=lambda each: each.label)
        # What is streamed now stays where it is while that account still can: adding one
        # symbol to a watchlist must not move fifty others between accounts.
        for instrument in wanted:
            current = self._source.get(instrument)
            if (
                current in limits
                and instrument in self._streamed.get(current, frozenset())
                and brokers[current].trades(instrument)
                and room(current)
            ):
                streams[current].append(instrument)
                source[instrument] = current
        for instrument in wanted:
            if instrument in source:
                continue
            traders = [name for name in connected if brokers[name].trades(instrument)]
            if not traders:
                continue
            streaming = next((name for name in traders if room(name)), None)
            if streaming is not None:
                streams[streaming].append(instrument)
                source[instrument] = streaming
            else:
                polls[traders[0]].append(instrument)
                source[instrument] = traders[0]
        moved = {
            instrument
            for instrument in set(self._source) | set(source)
            if self._source.get(instrument) != source.get(instrument)
        }
        self._source = source
        for instrument in tuple(self._latest):
            if instrument not in self._wanted:
                del self._latest[instrument]
                self._delayed_at.pop(instrument, None)
                self._stale.discard(instrument)
        self._changed |= {instrument for instrument in moved if instrument in self._latest}
        for gone in set(self._streamed) - set(names):
            del self._streamed[gone]
        for gone in set(self._snapshots) - set(names):
            del self._snapshots[gone]
        for gone in set(self._outages) - set(names):
            del self._outages[gone]
        for name in names:
            self._snapshots[name] = frozenset(polls[name])
        await asyncio.gather(*(self._stream(name, brokers[name], frozenset(streams[name])) for name in names))
        if any(self.snapshotted(name) for name in names):
            self._poll_now.set()

    async def _stream(self, name: str, broker: Broker, instruments: frozenset[Instrument]) -> None:
        if instruments == self._streamed.get(name, frozenset()):
            return
        try:
            async with asyncio.timeout(self._call_timeout):
                await broker.stream_quotes(instruments)
        except Exception as exc:
            if instruments:
                log.warning("%s: could not stream quotes, asking for snapshots instead: %s", name, exc)
                self._snapshots[name] = self._snapshots.get(name, frozenset()) | instruments
                self._retry = True
            # What the broker streams now is unknown: count it as nothing, so that the next
            # assignment sends the whole set again.
            self._streamed[name] = frozenset()
            return
        self._streamed[name] = instruments

    # -- snapshots --------------------------------------------------------------------------
    async def take_snapshots(self) -> None:
        """Ask once for a quote of every instrument that is not streamed (``start`` runs this
        every ``snapshot_interval`` seconds)."""
        gate = asyncio.Semaphore(SNAPSHOTS_AT_ONCE)
        names = set(self._accounts.names())
        jobs = [
            self._snapshot(gate, name, self._accounts.get(name), instrument)
            for name in sorted(names)
            for instrument in self.snapshotted(name)
        ]
        if jobs:
            await asyncio.gather(*jobs)

    async def _snapshot(
        self, gate: asyncio.Semaphore, name: str, broker: Broker, instrument: Instrument
    ) -> None:
        async with gate:
            if self._source.get(instrument) != name:
                return
            try:
                async with asyncio.timeout(self._call_timeout):
                    quote = await broker.get_quote(instrument)
            except Exception as exc:
                log.debug("%s: no snapshot of %s: %s", name, instrument.label, exc)
                return
        if quote is not None:
            self._take(name, quote.as_state(QuoteState.SNAPSHOT))
