"""Market data for the TWS peer: contract details, market data lines and snapshots, in the TWS
API's own messages at the server version the peer announces (176).

In: REQ_CONTRACT_DATA (9), REQ_MKT_DATA (1), CANCEL_MKT_DATA (2), REQ_MARKET_DATA_TYPE (59).
Out: CONTRACT_DATA (10) and CONTRACT_DATA_END (52); for each line MARKET_DATA_TYPE (58),
TICK_REQ_PARAMS (81), then TICK_PRICE (1, with its size), TICK_SIZE (2) and TICK_STRING (46,
the last trade's Unix time) as prices move; TICK_SNAPSHOT_END (57) after a snapshot.

An account without a subscription for an instrument (``unsubscribed``) is refused live data with
error 354; once the client asks for delayed data (market data type 3) it gets warning 10167,
MARKET_DATA_TYPE 3 and the delayed tick types (66-76, 88), as TWS sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tws_peer import Instrument, TwsPeer, _Client

# Incoming.
REQ_MKT_DATA, CANCEL_MKT_DATA, REQ_CONTRACT_DATA, REQ_MARKET_DATA_TYPE = 1, 2, 9, 59
REQUESTS = frozenset({REQ_MKT_DATA, CANCEL_MKT_DATA, REQ_CONTRACT_DATA, REQ_MARKET_DATA_TYPE})
# Outgoing.
TICK_PRICE, TICK_SIZE, ERR_MSG, CONTRACT_DATA, TICK_STRING = 1, 2, 4, 10, 46
CONTRACT_DATA_END, TICK_SNAPSHOT_END, MARKET_DATA_TYPE, TICK_REQ_PARAMS = 52, 57, 58, 81

# Tick types, live and delayed: https://interactivebrokers.github.io/tws-api/tick_types.html
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE, VOLUME, CLOSE, LAST_TIMESTAMP = 0, 1, 2, 3, 4, 5, 8, 9, 45
DELAYED_TICK = {
    BID_SIZE: 69,
    BID: 66,
    ASK: 67,
    ASK_SIZE: 70,
    LAST: 68,
    LAST_SIZE: 71,
    VOLUME: 74,
    CLOSE: 75,
    LAST_TIMESTAMP: 88,
}
# Price ticks carry the size that goes with them (the bid with the bid size, ...).
SIZE_OF = {BID: BID_SIZE, ASK: ASK_SIZE, LAST: LAST_SIZE}
NOT_SUBSCRIBED_TEXT = (
    "Requested market data is not subscribed. Check API status by selecting the Account menu then "
    "under Management choose Market Data Subscription Manager and confirm the relevant market data "
    "is subscribed."
)
DELAYED_TEXT = "Requested market data is not subscribed. Displaying delayed market data."


@dataclass
class PeerQuote:
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    bid_size: Decimal = Decimal(100)
    ask_size: Decimal = Decimal(200)
    last_size: Decimal = Decimal(5)
    close: Decimal | None = None
    last_time: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))


@dataclass
class Line:
    client: _Client
    req_id: int
    instrument: Instrument
    delayed: bool


class MarketData:
    """The market data side of a ``TwsPeer``. Tests steer it with ``tick()`` and
    ``unsubscribed``; ``lines`` lists the open lines and ``data_types`` what each client asked."""

    def __init__(self, peer: TwsPeer) -> None:
        self.peer = peer
        self.quotes: dict[int, PeerQuote] = {}
        self.unsubscribed: set[str] = set()  # symbols without a real-time subscription
        self.lines: list[Line] = []
        self.data_types: dict[int, int] = {}  # id(client) -> requested market data type

    def quote(self, instrument: Instrument) -> PeerQuote:
        if instrument.con_id not in self.quotes:
            step = Decimal("0.01")
            self.quotes[instrument.con_id] = PeerQuote(
                bid=instrument.price - step,
                ask=instrument.price + step,
                last=instrument.price,
                close=(instrument.price * Decimal("0.98")).quantize(step),
            )
        return self.quotes[instrument.con_id]

    def handle(self, client: _Client, fields: list[str]) -> None:
        msg_id = int(fields[0])
        if msg_id == REQ_CONTRACT_DATA:
            self._contract_details(client, fields)
        elif msg_id == REQ_MKT_DATA:
            self._request(client, fields)
        elif msg_id == CANCEL_MKT_DATA:
            req_id = int(fields[2])
            self.lines = [x for x in self.lines if not (x.client is client and x.req_id == req_id)]
        elif msg_id == REQ_MARKET_DATA_TYPE:
            self.data_types[id(client)] = int(fields[2])

    def forget(self, client: _Client) -> None:
        self.lines = [x for x in self.lines if x.client is not client]
        self.data_types.pop(id(client), None)

    # -- test controls --------------------------------------------------------------------
    def tick(
        self,
        symbol: str,
        sec_type: str = "STK",
        *,
        bid: Decimal | str | int | None = None,
        ask: Decimal | str | int | None = None,
        last: Decimal | str | int | None = None,
        bid_size: Decimal | str | int | None = None,
        ask_size: Decimal | str | int | None = None,
        last_size: Decimal | str | int | None = None,
        at: datetime | None = None,
    ) -> int:
        """Move the instrument's quote and send the changed ticks down every open line, as TWS
        does; a price of -1 is TWS's "no price" (sent with size 0). Returns the lines it went to."""
        instrument = self.peer.instrument(symbol, sec_type)
        quote = self.quote(instrument)
        changed: list[int] = []
        for tick, value in ((BID, bid), (ASK, ask), (LAST, last)):
            if value is not None:
                setattr(quote, {BID: "bid", ASK: "ask", LAST: "last"}[tick], Decimal(str(value)))
                changed.append(tick)
        sizes: list[int] = []
        for tick, value in ((BID_SIZE, bid_size), (ASK_SIZE, ask_size), (LAST_SIZE, last_size)):
            if value is not None:
                setattr(
                    quote,
                    {BID_SIZE: "bid_size", ASK_SIZE: "ask_size", LAST_SIZE: "last_size"}[tick],
                    Decimal(str(value)),
                )
                sizes.append(tick)
        if last is not None:
            quote.last_time = (at or datetime.now(UTC)).replace(microsecond=0)
        sent = 0
        for line in [x for x in self.lines if x.instrument is instrument]:
            for tick in changed:
                self._price(line, quote, tick)
            for tick in sizes:
                self._size(line, quote, tick)
            if last is not None:
                self._last_time(line, quote)
            sent += 1
        return sent

    # -- requests -------------------------------------------------------------------------
    def _find(self, fields: list[str]) -> Instrument | None:
        # conId, symbol, secType, lastTradeDateOrContractMonth, strike, right, multiplier,
        # exchange, primaryExchange, currency, localSymbol, tradingClass
        keys = (
            "con_id",
            "symbol",
            "sec_type",
            "expiry",
            "strike",
            "right",
            "multiplier",
            "exchange",
            "primary_exchange",
            "currency",
            "local_symbol",
            "trading_class",
        )
        parsed = dict(zip(keys, fields, strict=True))
        if parsed["strike"] in ("", "0", "0.0"):
            parsed["strike"] = ""
        return self.peer._find_instrument(parsed)

    def _contract_details(self, client: _Client, fields: list[str]) -> None:
        req_id = int(fields[2])
        instrument = self._find(fields[3:15])
        if instrument is None:
            client.send(ERR_MSG, 2, req_id, 200, "No security definition has been found for the request", "")
            return
        i = instrument
        client.send(
            CONTRACT_DATA,
            req_id,
            i.symbol,
            i.sec_type,
            i.expiry,
            i.strike if i.strike is not None else "0",
            i.right,
            i.exchange,
            i.currency,
            i.local_symbol or i.symbol,
            i.trading_class,  # marketName
            i.trading_class,
            i.con_id,
            "0.01",  # minTick
            i.multiplier,
            "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,LMT,MKT,STP,STPLMT,TRAIL",
            f"SMART,{i.primary_exchange or i.exchange}",
            1,  # priceMagnifier
            0,  # underConId
            f"{i.symbol} INC",  # longName
            i.primary_exchange or i.exchange,
            i.expiry[:6] if i.expiry else "",  # contractMonth
            "",
            "",
            "",  # industry, category, subcategory
            "US/Eastern",
            "",
            "",  # tradingHours, liquidHours
            "",
            "",  # evRule, evMultiplier
            0,  # secIdList
            1,  # aggGroup
            "",
            "",  # underSymbol, underSecType
            "26",  # marketRuleIds
            "",  # realExpirationDate
            "COMMON" if i.sec_type == "STK" else "",
            "0.0001",
            "0.0001",
            "100",  # minSize, sizeIncrement, suggestedSizeIncrement
        )
        client.send(CONTRACT_DATA_END, 1, req_id)

    def _request(self, client: _Client, fields: list[str]) -> None:
        req_id = int(fields[2])
        instrument = self._find(fields[3:15])
        if instrument is None:
            client.send(ERR_MSG, 2, req_id, 200, "No security definition has been found for the request", "")
            return
        rest = fields[15:]
        if rest[0] == "1":  # delta-neutral contract
            rest = rest[3:]
        snapshot = rest[2] == "1"
        delayed = instrument.symbol in self.unsubscribed
        if delayed and self.data_types.get(id(client), 1) not in (3, 4):
            client.send(ERR_MSG, 2, req_id, 354, NOT_SUBSCRIBED_TEXT, "")
            return
        line = Line(client, req_id, instrument, delayed)
        if delayed:
            client.send(ERR_MSG, 2, req_id, 10167, DELAYED_TEXT, "")
        client.send(MARKET_DATA_TYPE, 1, req_id, 3 if delayed else 1)
        client.send(TICK_REQ_PARAMS, req_id, "0.01", "9c0001", 3)
        quote = self.quote(instrument)
        for tick in (BID, ASK, LAST):
            self._price(line, quote, tick)
        self._size(line, quote, VOLUME)
        self._price(line, quote, CLOSE)
        self._last_time(line, quote)
        if snapshot:
            client.send(TICK_SNAPSHOT_END, 1, req_id)
        else:
            self.lines.append(line)

    # -- ticks ----------------------------------------------------------------------------
    def _type(self, line: Line, tick: int) -> int:
        return DELAYED_TICK[tick] if line.delayed else tick

    def _price(self, line: Line, quote: PeerQuote, tick: int) -> None:
        value = {BID: quote.bid, ASK: quote.ask, LAST: quote.last, CLOSE: quote.close}[tick]
        size = {BID: quote.bid_size, ASK: quote.ask_size, LAST: quote.last_size}.get(tick, Decimal(0))
        if value is None or value == -1:
            value, size = Decimal(-1), Decimal(0)
        # attrMask: canAutoExecute for bid and ask, as TWS sets it on a normal book.
        mask = 1 if tick in (BID, ASK) else 0
        line.client.send(TICK_PRICE, 6, line.req_id, self._type(line, tick), value, size, mask)

    def _size(self, line: Line, quote: PeerQuote, tick: int) -> None:
        value = {
            BID_SIZE: quote.bid_size,
            ASK_SIZE: quote.ask_size,
            LAST_SIZE: quote.last_size,
            VOLUME: Decimal(12345),
        }[tick]
        line.client.send(TICK_SIZE, 6, line.req_id, self._type(line, tick), value)

    def _last_time(self, line: Line, quote: PeerQuote) -> None:
        line.client.send(
            TICK_STRING, 6, line.req_id, self._type(line, LAST_TIMESTAMP), int(quote.last_time.timestamp())
        )
