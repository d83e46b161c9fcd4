"""Quotes from Kite: the KiteTicker websocket for streamed instruments, ``kite.quote()`` for a
snapshot.

KiteTicker runs on Twisted, in a reactor thread of its own: every call into it (connect,
subscribe, set the mode, close) is handed to that thread with ``reactor.callFromThread``, and
every tick comes back to the event loop with ``loop.call_soon_threadsafe``; nothing here waits
on the other thread. One reactor serves every Kite account in the process (Twisted's reactor
runs once and cannot be restarted, so it is never stopped).

Instruments are streamed in FULL mode: QUOTE mode carries neither the best bid and offer nor an
exchange timestamp, and a trader's ticket and watchlist show both. Kite allows 3000 instruments
per connection whatever the mode. Instrument tokens come from ``kite.ltp()`` (which answers with
each instrument's token) rather than the instruments dump, a file of tens of megabytes for the
derivatives segments.

KiteTicker reconnects by itself and subscribes again to what it held (``resubscribe`` in its
``_on_open``); what changed while it was away is applied when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ...credentials import redact
from ...errors import BrokerError, InvalidSymbolError
from ...instruments import Instrument
from ...models import AssetClass, utcnow
from ...quotes import Listing, Quote, QuoteState
from .session import KiteSession
from .wire import dec, instrument, kite_time

log = logging.getLogger(__name__)

STREAM_LIMIT = 3000
"""Instruments one KiteTicker connection may subscribe to."""
DEFAULT_TICKER_ROOT = "wss://ws.kite.trade"
MODE = "full"
_LTP_BATCH = 1000  # instruments per /quote/ltp request
_QUOTE_BATCH = 500


def _number(value: object) -> Decimal | None:
    """A number from a tick as a Decimal without float noise (100, not 100.0); None if it is not
    a finite number. Floats and ints, which every tick holds, take the short way: this runs for
    every field of every tick."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str | Decimal):
        try:
            return dec(value)
        except (ValueError, InvalidOperation):
            return None
    return None


def price(value: object) -> Decimal | None:
    """A Kite price, or None for "no price" (Kite sends 0 for an empty depth level or no trade;
    None, NaN and negatives are no price either)."""
    number = _number(value)
    return number if number is not None and number > 0 else None


def size(value: object) -> Decimal | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _best(depth: object, side: str) -> tuple[Decimal | None, Decimal | None]:
    levels = depth.get(side) if isinstance(depth, dict) else None
    level = levels[0] if isinstance(levels, list) and levels and isinstance(levels[0], dict) else None
    if level is None:
        return None, None
    best = price(level.get("price"))
    return best, size(level.get("quantity")) if best is not None else None


def quote_from(
    instrument: Instrument, source: str, data: dict[str, Any], time: datetime | None, arrived: datetime
) -> Quote:
    """A Quote from a decoded tick or a ``kite.quote()`` entry; ``time`` is the exchange's
    timestamp in UTC when the data carries one."""
    bid, bid_size = _best(data.get("depth"), "buy")
    ask, ask_size = _best(data.get("depth"), "sell")
    ohlc = data.get("ohlc")
    return Quote(
        instrument,
        source,
        time or arrived,
        bid=bid,
        ask=ask,
        last=price(data.get("last_price")),
        bid_size=bid_size,
        ask_size=ask_size,
        previous_close=price(ohlc.get("close")) if isinstance(ohlc, dict) else None,
        state=QuoteState.LIVE,
        # A full-mode tick carries the book: an empty level is an empty side, not one left out.
        complete="depth" in data,
    )


def tick_time(value: object) -> datetime | None:
    """KiteTicker's timestamps: naive datetimes in this machine's local time
    (``datetime.fromtimestamp``), made UTC."""
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC)


_reactor_lock = threading.Lock()
_reactor_thread: threading.Thread | None = None


def _in_reactor(call: Callable[..., object], *args: object) -> None:
    """Run ``call`` on the Twisted reactor's thread, starting that thread the first time."""
    global _reactor_thread
    from twisted.internet import reactor as installed

    reactor: Any = installed  # the installed reactor's type is not known until run time
    with _reactor_lock:
        if _reactor_thread is None and not reactor.running:
            _reactor_thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="kite-ticker",
                daemon=True,
            )
            _reactor_thread.start()
    reactor.callFromThread(call, *args)


class TickerFeed:
    """The KiteTicker connection of one account and the quotes it gives, handed to ``emit`` on
    the event loop thread. ``root`` None: no streaming (snapshots only)."""

    #: Reconnect attempts KiteTicker makes before it gives up (its own default); after that the
    #: next ``stream`` starts a new connection.
    reconnect_attempts = 50

    def __init__(
        self,
        name: str,
        session: KiteSession,
        *,
        root: str | None,
        exchange: str,
        emit: Callable[[Quote], None],
    ) -> None:
        self._name = name
        self._session = session
        self._root = root
        self._exchange = exchange
        self._emit = emit
        self._tokens: dict[tuple[str, str], int] = {}
        self._instruments: dict[int, Instrument] = {}  # token -> what is streamed under it
        self._wanted: frozenset[int] = frozenset()  # read by the reactor thread; replaced whole
        self._ticker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self.gave_up = False
        self.last_error: str | None = None

    @property
    def limit(self) -> int:
        return STREAM_LIMIT if self._root else 0

    @property
    def streamed(self) -> frozenset[Instrument]:
        return frozenset(self._instruments.values())

    def listing(self, wanted: Instrument) -> tuple[str, str]:
        """(exchange, tradingsymbol) of ``wanted``; a derivative must name its exchange."""
        if wanted.asset_class is not AssetClass.STOCK and wanted.exchange is None:
            raise InvalidSymbolError(f"{wanted.label} names no Kite exchange", broker=self._name)
        return instrument(wanted.symbol, wanted.exchange, self._exchange, self._name)

    # -- what is streamed -----------------------------------------------------------------
    async def stream(self, instruments: frozenset[Instrument]) -> None:
        if not self._root:
            return
        listings: dict[Instrument, tuple[str, str]] = {}
        for each in instruments:
            try:
                listings[each] = self.listing(each)
            except InvalidSymbolError as exc:
                log.warning("%s: cannot quote %s: %s", self._name, each.label, exc)
        await self._resolve([key for key in listings.values() if key not in self._tokens])
        wanted: dict[int, Instrument] = {}
        for each, key in listings.items():
            token = self._tokens.get(key)
            if token is None:
                log.warning("%s: Kite knows no instrument %s:%s", self._name, *key)
            else:
                wanted[token] = each
        self._instruments = wanted
        self._wanted = frozenset(wanted)
        if self._ticker is None or self.gave_up:
            # None yet, or KiteTicker spent its reconnect attempts: a new one.
            self.close()
            if wanted:
                await self._start()
            return
        _in_reactor(self._sync, self._ticker)

    async def _resolve(self, keys: list[tuple[str, str]]) -> None:
        for start in range(0, len(keys), _LTP_BATCH):
            names = [f"{exchange}:{symbol}" for exchange, symbol in keys[start : start + _LTP_BATCH]]
            answer = await self._session.read("ltp", *names)
            for name in names:
                entry = answer.get(name) if isinstance(answer, dict) else None
                token = entry.get("instrument_token") if isinstance(entry, dict) else None
                if isinstance(token, int) and not isinstance(token, bool) and token > 0:
                    exchange, _, symbol = name.partition(":")
                    self._tokens[(exchange, symbol)] = token

    async def _start(self) -> None:
        credentials = self._session.ticker_credentials()
        if credentials is None:
            return
        module = await asyncio.to_thread(importlib.import_module, "kiteconnect.ticker")
        api_key, access_token = credentials
        ticker = module.KiteTicker(
            api_key,
            access_token,
            root=self._root,
            reconnect_max_tries=self.reconnect_attempts,
            reconnect_max_delay=5,
        )
        ticker.on_ticks = self._ticks_in_reactor
        ticker.on_open = self._open_in_reactor
        ticker.on_close = self._closed_in_reactor
        ticker.on_error = self._error_in_reactor
        ticker.on_noreconnect = self._gave_up_in_reactor
        self._loop = asyncio.get_running_loop()
        self._ticker = ticker
        _in_reactor(ticker.connect)

    def close(self) -> None:
        """Close the websocket (and stop its reconnecting); the reactor thread runs on."""
        ticker, self._ticker = self._ticker, None
        self.connected = False
        self.gave_up = False
        if ticker is not None:
            _in_reactor(ticker.close)

    async def reopen(self) -> None:
        """A new connection with the session's current token (Kite's token changes each day),
        streaming what was streamed."""
        self.close()
        if self._wanted:
            await self._start()

    # -- snapshots ------------------------------------------------------------------------
    async def snapshot(self, wanted: Instrument) -> Quote | None:
        try:
            exchange, symbol = self.listing(wanted)
            key = f"{exchange}:{symbol}"
            entry = (await self._session.read("quote", key)).get(key)
        except (BrokerError, AttributeError, TypeError) as exc:
            log.debug("%s: no quote for %s: %s", self._name, wanted.label, redact(exc))
            return None
        if not isinstance(entry, dict):
            return None
        token = entry.get("instrument_token")
        if isinstance(token, int) and not isinstance(token, bool) and token > 0:
            self._tokens[(exchange, symbol)] = token
        quote = quote_from(wanted, self._name, entry, kite_time(entry.get("timestamp")), utcnow())
        return quote.as_state(QuoteState.SNAPSHOT)

    # -- listings -------------------------------------------------------------------------
    async def look_up(self, wanted: Instrument) -> Listing | None:
        """Whether Kite lists ``wanted``: ``kite.ltp()`` answers with every instrument it
        knows (and its token, kept for streaming) and leaves out the ones it does not. None
        when that cannot be asked (a derivative naming no exchange) or the read failed."""
        try:
            exchange, symbol = self.listing(wanted)
        except InvalidSymbolError:
            return None
        key = f"{exchange}:{symbol}"
        answer = await self._session.read("ltp", key)
        if not isinstance(answer, dict):
            return None
        entry = answer.get(key)
        if entry is None:
            return Listing.NOT_LISTED
        token = entry.get("instrument_token") if isinstance(entry, dict) else None
        if isinstance(token, int) and not isinstance(token, bool) and token > 0:
            self._tokens[(exchange, symbol)] = token
        return Listing.LISTED

    # -- on the reactor thread ------------------------------------------------------------
    def _sync(self, ticker: Any) -> None:
        """Subscribe and drop tokens until the ticker holds what is wanted (reactor thread)."""
        if ticker is not self._ticker or not ticker.is_connected():
            return  # applied on open
        wanted = self._wanted
        held = set(ticker.subscribed_tokens)
        gone = sorted(held - wanted)
        new = sorted(wanted - held)
        if gone:
            ticker.unsubscribe(gone)
        if new:
            ticker.subscribe(new)
        stale_mode = sorted(t for t in wanted if ticker.subscribed_tokens.get(t) != MODE)
        if stale_mode:
            ticker.set_mode(MODE, stale_mode)

    def _to_loop(self, call: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(call, *args)

    def _ticks_in_reactor(self, ticker: Any, ticks: list[dict[str, Any]]) -> None:
        if ticker is self._ticker:
            self._to_loop(self._receive, ticks)

    def _open_in_reactor(self, ticker: Any) -> None:
        self._sync(ticker)
        if ticker is self._ticker:
            self._to_loop(self._set_connected, True, None)

    def _closed_in_reactor(self, ticker: Any, code: object, reason: object) -> None:
        if ticker is self._ticker:
            self._to_loop(self._set_connected, False, f"ticker closed ({code})")

    def _error_in_reactor(self, ticker: Any, code: object, reason: object) -> None:
        if ticker is self._ticker:
            self._to_loop(self._set_connected, False, f"ticker error ({code}): {redact(str(reason))[:200]}")

    def _gave_up_in_reactor(self, ticker: Any) -> None:
        if ticker is self._ticker:
            self._to_loop(self._give_up, ticker)

    # -- back on the event loop -----------------------------------------------------------
    def _set_connected(self, connected: bool, error: str | None) -> None:
        if error is not None and error != self.last_error:
            log.warning("%s: %s", self._name, error)
        self.connected = connected
        if error is not None:
            self.last_error = error

    def _give_up(self, ticker: Any) -> None:
        if ticker is self._ticker:
            self.gave_up = True
            self._set_connected(False, "the quote websocket gave up reconnecting")

    def _receive(self, ticks: Iterable[dict[str, Any]]) -> None:
        arrived = utcnow()
        for tick in ticks:
            if not isinstance(tick, dict):
                continue
            token = tick.get("instrument_token")
            wanted = self._instruments.get(token) if isinstance(token, int) else None
            if wanted is None:
                continue  # dropped since: a tick still on its way
            try:
                quote = quote_from(
                    wanted, self._name, tick, tick_time(tick.get("exchange_timestamp")), arrived
                )
            except (AttributeError, TypeError, ValueError, InvalidOperation) as exc:
                log.warning("%s: unreadable tick for %s: %s", self._name, wanted.label, exc)
                continue
            self._emit(quote)


__all__ = ["DEFAULT_TICKER_ROOT", "STREAM_LIMIT", "TickerFeed", "price", "quote_from", "size", "tick_time"]
