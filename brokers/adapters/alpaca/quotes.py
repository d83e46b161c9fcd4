"""Alpaca's market data for one account: quotes and trades from alpaca-py's stock and crypto
data streams, merged into Quotes, and snapshots from the latest-quote REST endpoints.

alpaca-py's data streams run their own websockets event loop (``DataStream._run_forever``), and
subscribing while one runs waits on that loop (``run_coroutine_threadsafe(...).result()``). Each
stream therefore gets a thread of its own, and every subscribe or unsubscribe is made from a
worker thread, never from the console's loop. Messages are turned into Quotes on the stream's
thread and handed to the console's loop in batches: one wake-up of the loop for however many
quotes arrived meanwhile, not one per quote.

A stream is only started once it has something to stream: alpaca-py's ``_run_forever`` spins
until the first subscription, and Alpaca's plan allows one connection per stream. A stream
Alpaca refuses (its login, or its subscription) is reported as a ``StreamOutage``, so that the
quote board asks for its instruments as snapshots, and tried again later (``data_channel``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgpack
import requests
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.enums import DataFeed
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import (
    CryptoLatestQuoteRequest,
    CryptoSnapshotRequest,
    StockLatestQuoteRequest,
    StockSnapshotRequest,
)

from ...credentials import RedactingFilter, redact
from ...errors import BrokerAPIError, BrokerConnectionError, BrokerTimeoutError
from ...instruments import Instrument
from ...models import AssetClass, utcnow
from ...quotes import Quote, QuoteLimits, QuoteState, StreamOutage
from .data_channel import Channel, Stream, WatchedCryptoStream, WatchedStockStream, _Watch
from .data_settings import DataSettings
from .stream import TimeoutSession
from .wire import parse_time

log = logging.getLogger(__name__)

# The data stream's first frame carries the keys; its logger and the websocket library's must
# never print them.
_REDACTING_FILTER = RedactingFilter(fields=("key_id", "secret_key", "key", "secret"))
for _name in ("websockets.client", "websockets.protocol", "alpaca.data.live.websocket"):
    logging.getLogger(_name).addFilter(_REDACTING_FILTER)

Keys = Callable[[], tuple[str, str]]
Deliver = Callable[[Quote], None]
Report = Callable[[StreamOutage], None]
Client = TypeVar("Client", bound=RESTClient)

_WEBSOCKET_PARAMS = {"ping_interval": 10, "ping_timeout": 20, "max_queue": 1024, "close_timeout": 1}


# -- Alpaca's messages -> Quotes --------------------------------------------------------------
def number(value: object) -> Decimal | None:
    """A price or size as Alpaca sends it (msgpack float or int, or JSON text): None when absent
    or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def positive(value: object) -> Decimal | None:
    """A price: Alpaca sends 0 for a side with no order, which is no price at all."""
    parsed = number(value)
    return parsed if parsed is not None and parsed > 0 else None


def stamp(value: object) -> datetime:
    """A message's time: a msgpack timestamp, or RFC 3339 text; the time of arrival otherwise."""
    if isinstance(value, msgpack.Timestamp):
        moment: datetime = value.to_datetime()
        return moment
    parsed = parse_time(value) if isinstance(value, str) else None
    return parsed if parsed is not None else utcnow()


def quote_message(
    message: Mapping[str, Any], instrument: Instrument, account: str, previous_close: Decimal | None
) -> Quote:
    """A ``q`` message: the best bid and offer with their sizes."""
    return Quote(
        instrument,
        account,
        stamp(message.get("t")),
        bid=positive(message.get("bp")),
        ask=positive(message.get("ap")),
        bid_size=number(message.get("bs")),
        ask_size=number(message.get("as")),
        previous_close=previous_close,
    )


def trade_message(
    message: Mapping[str, Any], instrument: Instrument, account: str, previous_close: Decimal | None
) -> Quote:
    """A ``t`` message: the last trade's price; the board keeps the bid and ask it leaves out."""
    return Quote(
        instrument,
        account,
        stamp(message.get("t")),
        last=positive(message.get("p")),
        previous_close=previous_close,
    )


def snapshot_quote(
    snapshot: Mapping[str, Any], instrument: Instrument, account: str, state: QuoteState
) -> tuple[Quote | None, Decimal | None]:
    """A snapshot's latest quote and trade as one Quote, and the previous close (the previous
    daily bar's close)."""
    previous = snapshot.get("prevDailyBar")
    close = positive(previous.get("c")) if isinstance(previous, Mapping) else None
    latest = snapshot.get("latestQuote")
    trade = snapshot.get("latestTrade")
    if not isinstance(latest, Mapping) and not isinstance(trade, Mapping):
        return None, close
    quote = latest if isinstance(latest, Mapping) else {}
    last = trade if isinstance(trade, Mapping) else {}
    made = Quote(
        instrument,
        account,
        stamp(quote.get("t") or last.get("t")),
        bid=positive(quote.get("bp")),
        ask=positive(quote.get("ap")),
        last=positive(last.get("p")),
        bid_size=number(quote.get("bs")),
        ask_size=number(quote.get("as")),
        previous_close=close,
        state=state,
    )
    return made, close


# -- the bridge into the console's loop ------------------------------------------------------
class Inbox:
    """Quotes made on a stream's thread, delivered on the console's loop in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._items: list[Quote] = []

    def put(self, quote: Quote) -> None:
        with self._lock:
            self._items.append(quote)
            first = len(self._items) == 1
        if first:
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the console's loop has closed
                pass

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        deliver = self._deliver
        for quote in items:
            deliver(quote)


class AlpacaQuotes:
    """The market data of one Alpaca account. ``keys()`` gives the API key and secret (read
    when a stream or client is first made); ``deliver`` takes each Quote on the console's
    loop; ``report`` each change of what is not streaming after all (``StreamOutage``)."""

    def __init__(
        self,
        account: str,
        settings: DataSettings,
        keys: Keys,
        deliver: Deliver,
        timeout: float,
        report: Report | None = None,
    ) -> None:
        self.account = account
        self.settings = settings
        self._keys = keys
        self._deliver = deliver
        self._report = report
        self._timeout = timeout
        self._outage = StreamOutage(frozenset())
        self._inbox: Inbox | None = None
        # Alpaca's symbol -> the instrument it was asked for; replaced whole, never changed in
        # place, because the stream threads read it.
        self._instruments: dict[str, Instrument] = {}
        self._closes: dict[str, Decimal] = {}
        self._stock_client: StockHistoricalDataClient | None = None
        self._crypto_client: CryptoHistoricalDataClient | None = None
        timing = {
            "join_within": timeout + 2,
            "confirm_within": timeout + 2,
            "retry_first": settings.stream_retry_seconds,
        }
        self._stocks = Channel(
            f"alpaca-stocks-{account}",
            "stock data stream",
            self._stock_stream,
            self._on_quote,
            self._on_trade,
            self._channel_state,
            **timing,
        )
        self._crypto = Channel(
            f"alpaca-crypto-{account}",
            "crypto data stream",
            self._crypto_stream,
            self._on_quote,
            self._on_trade,
            self._channel_state,
            **timing,
        )

    @property
    def limits(self) -> QuoteLimits:
        return QuoteLimits(streamed=self.settings.symbol_limit)

    @property
    def feed(self) -> DataFeed:
        return DataFeed.SIP if self.settings.feed == "sip" else DataFeed.IEX

    # -- streaming ----------------------------------------------------------------------------
    async def stream(self, instruments: frozenset[Instrument]) -> None:
        if len(instruments) > self.settings.symbol_limit:
            raise ValueError(
                f"{len(instruments)} instruments asked for; this account streams at most "
                f"{self.settings.symbol_limit} (quote_symbol_limit)"
            )
        if self._inbox is None:
            self._inbox = Inbox(asyncio.get_running_loop(), self._deliver)
        stocks = {i.symbol: i for i in instruments if i.asset_class is AssetClass.STOCK}
        crypto = {i.symbol: i for i in instruments if i.asset_class is AssetClass.CRYPTO}
        new = [
            instrument
            for symbol, instrument in {**stocks, **crypto}.items()
            if symbol not in self._instruments
        ]
        self._instruments = {**stocks, **crypto}
        if new:
            # A subscription sends nothing until the next quote, which for a quiet symbol may
            # be minutes away: start from the snapshot, which also holds the previous close.
            await self._first_quotes(new)
        await self._stocks.set(frozenset(stocks))
        await self._crypto.set(frozenset(crypto))
        self._channel_state(None)

    @property
    def outage(self) -> StreamOutage:
        """What is asked for and not streaming now, and why (no instruments: all is)."""
        return self._outage

    def _channel_state(self, _: str | None) -> None:
        """A channel stopped or started streaming, or what is asked for changed: report what is
        not streaming now, when that changed."""
        instruments = self._instruments
        down: set[Instrument] = set()
        reasons: list[str] = []
        for channel in (self._stocks, self._crypto):
            if channel.down is not None:
                down |= {instruments[s] for s in channel.symbols if s in instruments}
                reasons.append(channel.down)
        outage = StreamOutage(frozenset(down), "; ".join(reasons) or None)
        if outage == self._outage:
            return
        self._outage = outage
        if self._report is not None:
            self._report(outage)

    async def close(self) -> None:
        await self._stocks.stop()
        await self._crypto.stop()
        self._instruments = {}
        self._closes = {}
        self._inbox = None
        self._stock_client = self._crypto_client = None

    def _stock_stream(self, watch: _Watch) -> Stream:
        api_key, secret_key = self._keys()
        return WatchedStockStream(
            api_key,
            secret_key,
            raw_data=True,
            feed=self.feed,
            websocket_params={**_WEBSOCKET_PARAMS, "open_timeout": self._timeout},
            url_override=self.settings.stock_stream_url,
            watch=watch,
        )

    def _crypto_stream(self, watch: _Watch) -> Stream:
        api_key, secret_key = self._keys()
        return WatchedCryptoStream(
            api_key,
            secret_key,
            raw_data=True,
            websocket_params={**_WEBSOCKET_PARAMS, "open_timeout": self._timeout},
            url_override=self.settings.crypto_stream_url,
            watch=watch,
        )

    # On a stream's thread: alpaca-py calls these for every message.
    async def _on_quote(self, message: object) -> None:
        self._take(message, quote_message)

    async def _on_trade(self, message: object) -> None:
        self._take(message, trade_message)

    def _take(
        self,
        message: object,
        make: Callable[[Mapping[str, Any], Instrument, str, Decimal | None], Quote],
    ) -> None:
        if not isinstance(message, dict):
            return  # raw_data streams hand over the message as sent
        symbol = message.get("S")
        instrument = self._instruments.get(symbol) if isinstance(symbol, str) else None
        inbox = self._inbox
        if instrument is None or inbox is None:
            return  # dropped meanwhile
        try:
            quote = make(message, instrument, self.account, self._closes.get(instrument.symbol))
        except Exception as exc:  # one unreadable message must not stop the stream
            log.warning("%s: unreadable market data message: %s", self.account, redact(exc))
            return
        inbox.put(quote)

    # -- snapshots ----------------------------------------------------------------------------
    async def _first_quotes(self, instruments: Iterable[Instrument]) -> None:
        try:
            quotes = await self._snapshots(list(instruments), QuoteState.LIVE)
        except Exception as exc:
            log.info("%s: no first quotes from snapshots: %s", self.account, redact(exc))
            return
        down = {channel for channel in (self._stocks, self._crypto) if channel.down is not None}
        for quote in quotes:
            channel = self._crypto if quote.instrument.asset_class is AssetClass.CRYPTO else self._stocks
            # What will not stream until its channel is back is a snapshot, not a live quote.
            self._deliver(quote.as_state(QuoteState.SNAPSHOT) if channel in down else quote)

    async def snapshot(self, instrument: Instrument) -> Quote | None:
        """The latest quote from the latest-quote endpoint, with the previous close (read once
        from the snapshot endpoint, then remembered)."""
        symbol = instrument.symbol
        if symbol not in self._closes:
            quotes = await self._snapshots([instrument], QuoteState.SNAPSHOT)
            return quotes[0] if quotes else None
        if instrument.asset_class is AssetClass.CRYPTO:
            client = self._crypto_data()
            answer = await self._read(
                client.get_crypto_latest_quote, CryptoLatestQuoteRequest(symbol_or_symbols=symbol)
            )
        else:
            stocks = self._stock_data()
            answer = await self._read(
                stocks.get_stock_latest_quote,
                StockLatestQuoteRequest(symbol_or_symbols=symbol, feed=self.feed),
            )
        latest = answer.get(symbol) if isinstance(answer, Mapping) else None
        if not isinstance(latest, Mapping):
            return None
        quote = quote_message(latest, instrument, self.account, self._closes.get(symbol))
        return quote.as_state(QuoteState.SNAPSHOT)

    async def _snapshots(self, instruments: list[Instrument], state: QuoteState) -> list[Quote]:
        stocks = [i for i in instruments if i.asset_class is AssetClass.STOCK]
        crypto = [i for i in instruments if i.asset_class is AssetClass.CRYPTO]
        answers: dict[str, Any] = {}
        if stocks:
            client = self._stock_data()
            request = StockSnapshotRequest(symbol_or_symbols=[i.symbol for i in stocks], feed=self.feed)
            answer = await self._read(client.get_stock_snapshot, request)
            if isinstance(answer, Mapping):
                answers.update(answer)
        if crypto:
            crypto_client = self._crypto_data()
            crypto_request = CryptoSnapshotRequest(symbol_or_symbols=[i.symbol for i in crypto])
            answer = await self._read(crypto_client.get_crypto_snapshot, crypto_request)
            if isinstance(answer, Mapping):
                answers.update(answer)
        quotes: list[Quote] = []
        for instrument in instruments:
            snapshot = answers.get(instrument.symbol)
            if not isinstance(snapshot, Mapping):
                continue
            quote, close = snapshot_quote(snapshot, instrument, self.account, state)
            if close is not None:
                self._closes[instrument.symbol] = close
            if quote is not None:
                quotes.append(quote)
        return quotes

    async def _read(self, fn: Callable[[Any], object], request: object) -> object:
        """One market-data read in a worker thread; failures become our errors, without keys."""
        try:
            return await asyncio.to_thread(fn, request)
        except APIError as exc:
            raise BrokerAPIError(
                f"Alpaca refused a market-data read: {redact(exc)[:200]}", broker=self.account
            ) from None
        except requests.Timeout:
            raise BrokerTimeoutError(
                f"Alpaca's market data did not answer within {self._timeout:g} s", broker=self.account
            ) from None
        except requests.RequestException as exc:
            raise BrokerConnectionError(
                f"lost the connection to Alpaca's market data ({type(exc).__name__})", broker=self.account
            ) from None
        except ValueError as exc:
            raise BrokerAPIError(
                f"Alpaca's market data answer cannot be read: {redact(exc)[:200]}", broker=self.account
            ) from None

    def _stock_data(self) -> StockHistoricalDataClient:
        if self._stock_client is None:
            api_key, secret_key = self._keys()
            client = StockHistoricalDataClient(
                api_key, secret_key, raw_data=True, url_override=self.settings.data_url
            )
            self._stock_client = _bounded(client, self._timeout)
        return self._stock_client

    def _crypto_data(self) -> CryptoHistoricalDataClient:
        if self._crypto_client is None:
            api_key, secret_key = self._keys()
            client = CryptoHistoricalDataClient(
                api_key, secret_key, raw_data=True, url_override=self.settings.data_url
            )
            self._crypto_client = _bounded(client, self._timeout)
        return self._crypto_client


def _bounded(client: Client, timeout: float) -> Client:
    """A request timeout, and no hidden retries that sleep in a worker thread."""
    client._retry = 0
    client._retry_codes = []
    client._session = TimeoutSession(timeout)
    return client
