"""Quotes from TWS: one market data line (``reqMktData``) per streamed instrument, snapshots on
request, and delayed data where the account has no market data subscription.

TWS sends ticks (tickPrice, tickSize, tickString) that the client library gathers into one
``Ticker`` per line; after each batch it names the tickers that changed, and each becomes a
Quote. TWS allows a set number of simultaneous lines (100 by default, more with quote booster
packs); the account's ``market_data_lines`` setting says how many this account may use.

Prices: TWS sends -1 for "no price" (a side with nothing on it) and the client libraries hold
NaN for "not sent yet"; both are None here, never a number. The time of a quote is TWS's
last-trade timestamp (tick 45, or 88 for delayed data) when the batch carried one, otherwise the
time it arrived: TWS says nothing of when a bid or offer was made.

Delayed data: when TWS refuses a line for want of a subscription (354) the feed asks for delayed
data (``reqMarketDataType(3)``) and opens the line again. TWS then sends live data where it can
and delayed where it must, and says which in a marketDataType message per line; delayed lines
give DELAYED quotes.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from ...errors import InvalidSymbolError
from ...instruments import Instrument
from ...models import AssetClass, OrderRequest, Side, utcnow
from ...quotes import Listing, Quote, QuoteState
from .codes import NO_SECURITY_DEFINITION, RESTORED_DATA_LOST
from .instruments import UNSET_DOUBLE, contract_for
from .session import IBSession

log = logging.getLogger(__name__)

#: TWS's market data types: 1 live, 2 frozen, 3 delayed, 4 delayed frozen.
DELAYED = 3
_DELAYED_TYPES = frozenset({3, 4})
#: 354: "Requested market data is not subscribed"; 10167: "... Displaying delayed market data".
NOT_SUBSCRIBED = 354
SHOWING_DELAYED = 10167
#: tickString types carrying the last trade's time in Unix seconds (live, delayed).
_LAST_TIMESTAMPS = frozenset({45, 88})


class FeedSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def currency(self) -> str: ...


class TickerState(Protocol):
    """What a quote is read from in the client library's ``Ticker`` (ib_async and ib_insync
    alike): floats, NaN for "not sent yet"."""

    @property
    def bid(self) -> float: ...
    @property
    def ask(self) -> float: ...
    @property
    def last(self) -> float: ...
    @property
    def bidSize(self) -> float: ...
    @property
    def askSize(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def marketDataType(self) -> int: ...


def contract_of(instrument: Instrument, currency: str) -> Any:
    """The IB contract of ``instrument`` (InvalidSymbolError if it cannot be one), read by the
    same rules as an order's symbol."""
    symbol = instrument.symbol
    asset = instrument.asset_class
    if asset is AssetClass.STOCK or asset is AssetClass.CFD:
        symbol = symbol.replace(".", " ")  # BRK.B is "BRK B" at IB
    elif asset is AssetClass.OPTION:
        if instrument.expiry is None or instrument.strike is None or instrument.right is None:
            raise InvalidSymbolError(f"option {instrument.label} needs an expiry, strike and right")
        symbol = f"{symbol} {instrument.expiry:%Y%m%d} {instrument.strike:f} {instrument.right}"
    elif asset is AssetClass.FUTURE and instrument.expiry is not None and " " not in symbol:
        symbol = f"{symbol} {instrument.expiry:%Y%m%d}"
    elif asset is AssetClass.FOREX:
        symbol = symbol.replace("/", ".")
    try:
        request = OrderRequest(
            symbol=symbol,
            side=Side.BUY,
            quantity=Decimal(1),
            asset_class=asset,
            exchange=instrument.exchange,
            currency=instrument.currency or (None if asset is AssetClass.FOREX else currency),
        )
    except ValueError as exc:
        raise InvalidSymbolError(f"{instrument.label} is not an IB contract: {exc}") from None
    return contract_for(request)


def price(value: object) -> Decimal | None:
    """A price from TWS, or None for "no price": -1, NaN, infinity, the unset marker, None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value) or value == -1 or value >= UNSET_DOUBLE:
        return None
    return _decimal(value)


def size(value: object) -> Decimal | None:
    """A size from TWS as a Decimal (shares, contracts), or None when not sent or negative."""
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or value >= UNSET_DOUBLE):
        return None
    if value < 0:
        return None
    return _decimal(value)


def _decimal(value: float | int | Decimal) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def quote_from(
    instrument: Instrument, source: str, ticker: TickerState, at: datetime, state: QuoteState | None = None
) -> Quote:
    """A Quote of what ``ticker`` holds (the client library's record of one line)."""
    if state is None:
        state = QuoteState.DELAYED if ticker.marketDataType in _DELAYED_TYPES else QuoteState.LIVE
    return Quote(
        instrument,
        source,
        at,
        bid=price(ticker.bid),
        ask=price(ticker.ask),
        last=price(ticker.last),
        bid_size=size(ticker.bidSize),
        ask_size=size(ticker.askSize),
        previous_close=price(ticker.close),
        state=state,
        complete=True,
    )


class QuoteFeed:
    """The market data lines of one account and the quotes they give, handed to ``emit`` on
    the event loop thread (the client library runs there)."""

    def __init__(self, settings: FeedSettings, session: IBSession, emit: Callable[[Quote], None]) -> None:
        self._settings = settings
        self._session = session
        self._emit = emit
        self._contracts: dict[Instrument, Any] = {}  # qualified, kept across reconnects
        self._unknown: set[Instrument] = set()  # TWS has no contract for these: not asked again
        self._lines: dict[Instrument, Any] = {}  # instrument -> its ticker
        self._by_ticker: dict[int, Instrument] = {}
        self._trade_times: dict[int, datetime] = {}  # id(ticker) -> last trade time in this batch
        self._delayed = False
        self._asked: dict[int, Instrument] = {}  # conId -> instrument, of lines and snapshots
        # id() of each contract being looked up -> whether TWS answered 200 (no such contract).
        self._looking: dict[int, bool] = {}

    @property
    def streamed(self) -> frozenset[Instrument]:
        return frozenset(self._lines)

    @property
    def delayed(self) -> bool:
        """Whether delayed data has been asked for on this connection."""
        return self._delayed

    def attach(self, ib: Any) -> None:
        """Listen to the client library's tickers and to the ticks it does not keep."""
        ib.pendingTickersEvent += self.on_tickers
        wrapper = ib.wrapper
        original: Callable[[int, int, str], None] = wrapper.tickString

        # ib_insync keeps no last-trade timestamp on its tickers: read the tick on its way in.
        def tick_string(req_id: int, tick_type: int, value: str) -> None:
            original(req_id, tick_type, value)
            if tick_type in _LAST_TIMESTAMPS:
                ticker = wrapper.reqId2Ticker.get(req_id)
                when = _unix_time(value)
                if ticker is not None and when is not None:
                    self._trade_times[id(ticker)] = when

        wrapper.tickString = tick_string

    # -- lines ----------------------------------------------------------------------------
    async def stream(self, instruments: frozenset[Instrument]) -> None:
        ib = self._session.require()
        for gone in [each for each in self._lines if each not in instruments]:
            self._cancel(ib, gone)
        new = [each for each in instruments if each not in self._lines]
        for instrument, contract in (await self._qualified(new)).items():
            self._open(ib, instrument, contract)

    def restore(self) -> None:
        """Open every line again on a new connection (TWS forgets them when the link drops)."""
        self._delayed = False
        self._unknown.clear()
        self._trade_times.clear()
        ib = self._session.client
        lines = list(self._lines)
        self._lines.clear()
        self._by_ticker.clear()
        if ib is None or not lines:
            return
        for instrument in lines:
            self._open(ib, instrument, self._contracts[instrument])

    def forget(self) -> None:
        """The connection is gone for good (disconnect): no lines are held any more."""
        self._lines.clear()
        self._by_ticker.clear()
        self._trade_times.clear()

    def _open(self, ib: Any, instrument: Instrument, contract: Any) -> None:
        ticker = ib.reqMktData(contract, "", False, False)
        self._lines[instrument] = ticker
        self._by_ticker[id(ticker)] = instrument
        self._asked[contract.conId] = instrument

    def _cancel(self, ib: Any, instrument: Instrument) -> None:
        ticker = self._lines.pop(instrument)
        self._by_ticker.pop(id(ticker), None)
        self._trade_times.pop(id(ticker), None)
        ib.cancelMktData(self._contracts[instrument])

    async def _qualified(self, instruments: Iterable[Instrument]) -> dict[Instrument, Any]:
        """The contracts of ``instruments`` with TWS's conId; unknown ones are logged and left out."""
        name = self._settings.name
        wanted: dict[Instrument, Any] = {}
        instruments = list(instruments)
        for instrument in instruments:
            if instrument in self._contracts or instrument in self._unknown:
                continue
            try:
                wanted[instrument] = contract_of(instrument, self._settings.currency)
            except InvalidSymbolError as exc:
                log.warning("%s: cannot quote %s: %s", name, instrument.label, exc)
        if wanted:
            ib = self._session.require()
            contracts = list(wanted.values())
            await self._session.read("contract details", lambda: ib.qualifyContractsAsync(*contracts))
            for instrument, contract in wanted.items():
                if contract.conId:
                    self._contracts[instrument] = contract
                else:
                    self._unknown.add(instrument)
                    log.warning("%s: TWS knows no contract for %s", name, instrument.label)
        return {each: self._contracts[each] for each in instruments if each in self._contracts}

    # -- snapshots ------------------------------------------------------------------------
    async def snapshot(self, instrument: Instrument) -> Quote | None:
        """One snapshot of ``instrument`` (reqMktData with snapshot=1), or None if TWS sent no
        price for it."""
        contracts = await self._qualified([instrument])
        contract = contracts.get(instrument)
        if contract is None:
            return None
        self._asked[contract.conId] = instrument
        for _ in range(2):  # once more if TWS refused live data and delayed data was asked for
            delayed = self._delayed
            ib = self._session.require()
            tickers = await self._session.read(
                "quote snapshot", functools.partial(ib.reqTickersAsync, contract)
            )
            ticker = tickers[0] if tickers else None
            if ticker is not None:
                quote = quote_from(instrument, self._settings.name, ticker, utcnow(), QuoteState.SNAPSHOT)
                if any(v is not None for v in (quote.bid, quote.ask, quote.last, quote.previous_close)):
                    return quote
            if delayed == self._delayed:
                break
        return None

    # -- listings -------------------------------------------------------------------------
    async def look_up(self, instrument: Instrument) -> Listing | None:
        """Whether TWS has a contract for ``instrument`` (reqContractDetails): LISTED with one
        or more (an ambiguous request names something that exists), NOT_LISTED when TWS says
        200 "no security definition" or the symbol cannot be an IB contract at all; None when
        the request failed otherwise (a timeout, a pacing or permissions refusal)."""
        try:
            contract = contract_of(instrument, self._settings.currency)
        except InvalidSymbolError:
            return Listing.NOT_LISTED
        ib = self._session.require()
        key = id(contract)  # the contract object lives until this returns: its id is unique
        self._looking[key] = False
        try:
            details = await self._session.read(
                "contract lookup", functools.partial(ib.reqContractDetailsAsync, contract)
            )
        finally:
            undefined = self._looking.pop(key, False)
        if details:
            return Listing.LISTED
        return Listing.NOT_LISTED if undefined else None

    # -- from the client library ----------------------------------------------------------
    def on_tickers(self, tickers: Iterable[Any]) -> None:
        now = utcnow()
        name = self._settings.name
        for ticker in tickers:
            instrument = self._by_ticker.get(id(ticker))
            if instrument is None:
                continue
            at = self._trade_times.pop(id(ticker), None) or now
            try:
                quote = quote_from(instrument, name, ticker, at)
            except (AttributeError, TypeError, ValueError) as exc:
                log.warning("%s: unreadable ticks for %s: %s", name, instrument.label, exc)
                continue
            self._emit(quote)

    def on_error(self, code: int, contract: Any) -> None:
        """Market data refused for want of a subscription: ask for delayed data, and open the
        refused line again. TWS back from losing IB with the data lost (1101): every line must
        be asked for again."""
        if code == RESTORED_DATA_LOST:
            self._reopen_all()
            return
        if code == NO_SECURITY_DEFINITION and contract is not None and id(contract) in self._looking:
            self._looking[id(contract)] = True
            return
        if code != NOT_SUBSCRIBED or contract is None:
            return
        instrument = self._asked.get(contract.conId)
        ib = self._session.client
        if instrument is None or ib is None or not ib.isConnected():
            return
        if not self._delayed:
            log.info(
                "%s: no market data subscription for %s; asking for delayed data",
                self._settings.name,
                instrument.label,
            )
            self._delayed = True
            ib.reqMarketDataType(DELAYED)
        if instrument in self._lines:
            self._cancel(ib, instrument)
            self._open(ib, instrument, self._contracts[instrument])

    def _reopen_all(self) -> None:
        ib = self._session.client
        if ib is None or not ib.isConnected():
            return
        if self._delayed:
            ib.reqMarketDataType(DELAYED)
        for instrument in list(self._lines):
            self._cancel(ib, instrument)
            self._open(ib, instrument, self._contracts[instrument])


def _unix_time(value: str) -> datetime | None:
    try:
        seconds = int(value.strip())
    except (AttributeError, ValueError):
        return None
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


__all__ = ["QuoteFeed", "contract_of", "price", "quote_from", "size"]
