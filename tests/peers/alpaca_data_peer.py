"""A loopback Alpaca market-data service: the stock and crypto data streams and the latest-quote
and snapshot REST endpoints, on 127.0.0.1.

It speaks the protocol of stream.data.alpaca.markets as alpaca-py uses it:

- ``/v2/{iex,sip}`` and ``/v1beta3/crypto/us``: on connecting, ``[{"T":"success","msg":"connected"}]``;
  the client sends ``{"action":"auth","key","secret"}`` and gets ``authenticated`` or an error
  (402 auth failed, 406 connection limit exceeded: one connection per stream and key);
  ``{"action":"subscribe","trades":[...],"quotes":[...]}`` is answered with the whole
  subscription (``{"T":"subscription",...}``), or 405 symbol limit exceeded past the plan's
  limit; ``unsubscribe`` likewise. Frames are msgpack when the client's ``Content-Type`` says
  ``application/msgpack`` (alpaca-py always does; times are msgpack timestamps, as Alpaca sends
  them), JSON text otherwise. Several messages may share one frame.
- ``GET /v2/stocks/quotes/latest``, ``/v2/stocks/snapshots``, ``/v1beta3/crypto/us/latest/quotes``
  and ``/v1beta3/crypto/us/snapshots`` with the ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY``
  headers.

The payloads follow Alpaca's market-data documentation: ``STOCK_QUOTE``, ``STOCK_TRADE``,
``CRYPTO_QUOTE``, ``CRYPTO_TRADE`` and ``SNAPSHOT`` are its examples, and ``quote``/``trade``
put a test's prices into them. Tests steer it with ``send(path, *messages)``,
``drop_streams()``, ``refuse_auth`` (402 auth failed at the login) and ``refuse_subscribe`` (an
error frame such as ``(409, "insufficient subscription")`` answering each subscribe, the
connection left open as Alpaca leaves it); ``subscriptions(path)`` says what a stream is
subscribed to, ``logins`` how many logins each stream path has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

from peers.alpaca_peer import API_KEY, SECRET_KEY
from peers.loopback import serve

STOCKS_IEX = "/v2/iex"
STOCKS_SIP = "/v2/sip"
CRYPTO = "/v1beta3/crypto/us"
CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "corrections",
    "cancelErrors",
)

# Alpaca's documented examples (market-data stream and snapshot pages).
STOCK_QUOTE: dict[str, Any] = {
    "T": "q",
    "S": "AMD",
    "bx": "U",
    "bp": 87.66,
    "bs": 1,
    "ax": "Q",
    "ap": 87.68,
    "as": 4,
    "t": "2021-02-22T15:51:45.335689322Z",
    "c": ["R"],
    "z": "C",
}
STOCK_TRADE: dict[str, Any] = {
    "T": "t",
    "i": 96921,
    "S": "AAPL",
    "x": "D",
    "p": 126.55,
    "s": 1,
    "t": "2021-02-22T15:51:44.208Z",
    "c": ["@", "I"],
    "z": "C",
}
CRYPTO_QUOTE: dict[str, Any] = {
    "T": "q",
    "S": "BTC/USD",
    "bp": 71623.7,
    "bs": 0.80796,
    "ap": 71666.5,
    "as": 0.80703,
    "t": "2024-03-12T10:27:48.858228144Z",
}
CRYPTO_TRADE: dict[str, Any] = {
    "T": "t",
    "S": "BTC/USD",
    "p": 71645.1,
    "s": 0.00185,
    "t": "2024-03-12T10:27:49.028Z",
    "i": 8016612,
    "tks": "B",
}
SNAPSHOT: dict[str, Any] = {
    "latestTrade": {
        "t": "2021-05-11T20:00:00.435997104Z",
        "x": "Q",
        "p": 125.91,
        "s": 5589631,
        "c": ["@", "M"],
        "i": 179430,
        "z": "C",
    },
    "latestQuote": {
        "t": "2021-05-11T22:05:02.307304704Z",
        "ax": "P",
        "ap": 125.68,
        "as": 12,
        "bx": "P",
        "bp": 125.6,
        "bs": 4,
        "c": ["R"],
        "z": "C",
    },
    "minuteBar": {"t": "2021-05-11T22:02:00Z", "o": 125.66, "h": 125.66, "l": 125.66, "c": 125.66, "v": 396},
    "dailyBar": {
        "t": "2021-05-11T04:00:00Z",
        "o": 123.5,
        "h": 126.27,
        "l": 122.77,
        "c": 125.91,
        "v": 125863164,
    },
    "prevDailyBar": {
        "t": "2021-05-10T04:00:00Z",
        "o": 129.41,
        "h": 129.54,
        "l": 126.81,
        "c": 126.85,
        "v": 88071229,
    },
}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def quote(
    symbol: str, bid: float, ask: float, bid_size: float = 1, ask_size: float = 4, **extra: Any
) -> dict[str, Any]:
    base = CRYPTO_QUOTE if "/" in symbol else STOCK_QUOTE
    return {
        **base,
        "S": symbol,
        "bp": bid,
        "ap": ask,
        "bs": bid_size,
        "as": ask_size,
        "t": now_text(),
        **extra,
    }


def trade(symbol: str, price: float, size: float = 100, **extra: Any) -> dict[str, Any]:
    base = CRYPTO_TRADE if "/" in symbol else STOCK_TRADE
    return {**base, "S": symbol, "p": price, "s": size, "t": now_text(), **extra}


def fresh_snapshot(bid: float, ask: float, last: float) -> dict[str, Any]:
    """Alpaca's documented snapshot with today's times and a test's prices."""
    made = copy.deepcopy(SNAPSHOT)
    made["latestQuote"].update({"t": now_text(), "bp": bid, "ap": ask})
    made["latestTrade"].update({"t": now_text(), "p": last})
    return made


def _timestamp(text: str) -> msgpack.Timestamp:
    """RFC 3339 with up to nanoseconds -> a msgpack timestamp, as Alpaca's msgpack frames hold."""
    head, _, rest = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    nanos = int((rest or "0").ljust(9, "0")[:9])
    return msgpack.Timestamp(seconds, nanos)


@dataclass
class Client:
    ws: web.WebSocketResponse
    path: str
    packed: bool
    subscribed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    async def send(self, messages: list[dict[str, Any]]) -> None:
        if self.packed:
            framed = [
                {k: _timestamp(v) if k == "t" and isinstance(v, str) else v for k, v in m.items()}
                for m in messages
            ]
            await self.ws.send_bytes(msgpack.packb(framed))
        else:
            await self.ws.send_str(json.dumps(messages))


@dataclass
class AlpacaDataPeer:
    api_key: str = API_KEY
    secret_key: str = SECRET_KEY
    symbol_limit: int = 30
    refuse_auth: bool = False
    refuse_subscribe: tuple[int, str] | None = None
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clients: list[Client] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections: dict[str, int] = defaultdict(int)
        self.logins: dict[str, int] = defaultdict(int)
        self.errors_sent: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> AlpacaDataPeer:
        app = web.Application()
        for path in (STOCKS_IEX, STOCKS_SIP, CRYPTO):
            app.router.add_get(path, self._stream)
        app.router.add_get("/v2/stocks/quotes/latest", self._latest_quotes)
        app.router.add_get("/v2/stocks/snapshots", self._stock_snapshots)
        app.router.add_get("/v1beta3/crypto/us/latest/quotes", self._latest_quotes)
        app.router.add_get("/v1beta3/crypto/us/snapshots", self._crypto_snapshots)
        self._runner, self.port = await serve(app)
        return self

    async def stop(self) -> None:
        await self.drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- steering -------------------------------------------------------------------------
    def snapshot_of(self, symbol: str) -> dict[str, Any]:
        return self.snapshots.get(symbol) or copy.deepcopy(SNAPSHOT)

    def subscriptions(self, path: str, channel: str = "quotes") -> set[str]:
        return set().union(*(c.subscribed[channel] for c in self.clients if c.path == path))

    async def wait_for(self, condition: Any) -> None:
        """Until ``condition()`` holds after a stream event (wrap it in ``asyncio.timeout``)."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def send(self, path: str, *messages: dict[str, Any]) -> None:
        """Send these messages in one frame to every client of ``path`` subscribed to them."""
        for client in list(self.clients):
            if client.path != path:
                continue
            wanted = [
                m for m in messages if m["S"] in client.subscribed["quotes" if m["T"] == "q" else "trades"]
            ]
            if wanted:
                with contextlib.suppress(Exception):
                    await client.send(wanted)

    async def drop_streams(self) -> None:
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                client.ws._writer.transport.abort()  # type: ignore[union-attr]  # a cut, not a goodbye
        self.clients.clear()
        self.connections.clear()
        self._changed.set()

    # -- the streams ----------------------------------------------------------------------
    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        path = request.path
        client = Client(ws, path, packed=request.headers.get("Content-Type") == "application/msgpack")
        await client.send([{"T": "success", "msg": "connected"}])
        authorized = False
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    data = msgpack.unpackb(message.data)
                elif message.type is WSMsgType.TEXT:
                    data = json.loads(message.data)
                else:
                    break
                action = data.get("action")
                if action == "auth":
                    self.logins[path] += 1
                    if (
                        data.get("key") != self.api_key
                        or data.get("secret") != self.secret_key
                        or self.refuse_auth
                    ):
                        await self._error(client, 402, "auth failed")
                        break
                    if self.connections[path] >= 1:
                        await self._error(client, 406, "connection limit exceeded")
                        break
                    self.connections[path] += 1
                    authorized = True
                    self.clients.append(client)
                    await client.send([{"T": "success", "msg": "authenticated"}])
                elif not authorized:
                    await self._error(client, 401, "not authenticated")
                    break
                elif action in ("subscribe", "unsubscribe"):
                    await self._subscribe(client, data, add=action == "subscribe")
                else:
                    await self._error(client, 400, "invalid syntax")
                self._changed.set()
        finally:
            if client in self.clients:
                self.clients.remove(client)
                self.connections[path] -= 1
            self._changed.set()
        return ws

    async def _subscribe(self, client: Client, data: dict[str, Any], *, add: bool) -> None:
        asked = {channel: set(data.get(channel) or []) for channel in CHANNELS}
        if add and self.refuse_subscribe is not None:
            await self._error(client, *self.refuse_subscribe)
            return
        if add:
            after = {channel: client.subscribed[channel] | asked[channel] for channel in CHANNELS}
            symbols = set().union(*after.values())
            if len(symbols) > self.symbol_limit:
                await self._error(client, 405, "symbol limit exceeded")
                return
        else:
            after = {channel: client.subscribed[channel] - asked[channel] for channel in CHANNELS}
        for channel in CHANNELS:
            client.subscribed[channel] = after[channel]
        answer: dict[str, Any] = {"T": "subscription"}
        answer.update({channel: sorted(client.subscribed[channel]) for channel in CHANNELS})
        await client.send([answer])

    async def _error(self, client: Client, code: int, text: str) -> None:
        message = {"T": "error", "code": code, "msg": text}
        self.errors_sent.append(message)
        with contextlib.suppress(Exception):
            await client.send([message])

    # -- REST -----------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        self.requests.append((request.path, dict(request.query)))
        return (
            request.headers.get("APCA-API-KEY-ID") == self.api_key
            and request.headers.get("APCA-API-SECRET-KEY") == self.secret_key
        )

    def _symbols(self, request: web.Request) -> list[str]:
        return [s for s in request.query.get("symbols", "").split(",") if s]

    async def _latest_quotes(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"message": "forbidden"}, status=403)
        quotes = {}
        for symbol in self._symbols(request):
            latest = dict(self.snapshot_of(symbol)["latestQuote"])
            if "/" not in symbol:
                latest.pop("S", None)
            quotes[symbol] = latest
        return web.json_response({"quotes": quotes})

    async def _stock_snapshots(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"message": "forbidden"}, status=403)
        return web.json_response({symbol: self.snapshot_of(symbol) for symbol in self._symbols(request)})

    async def _crypto_snapshots(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"message": "forbidden"}, status=403)
        return web.json_response(
            {"snapshots": {symbol: self.snapshot_of(symbol) for symbol in self._symbols(request)}}
        )
