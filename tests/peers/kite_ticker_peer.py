"""A KiteTicker websocket server on 127.0.0.1: Kite's streaming quote protocol for adapter tests.

The client connects to ``root?api_key=...&access_token=...`` (refused with HTTP 403 for a wrong
token, as Kite does) and sends JSON text messages: ``{"a": "subscribe", "v": [tokens]}``,
``{"a": "unsubscribe", "v": [tokens]}`` and ``{"a": "mode", "v": ["ltp"|"quote"|"full",
[tokens]]}``. A new subscription is in QUOTE mode until a mode message says otherwise.

Ticks go out as binary messages in Kite's layout (big-endian): a 2-byte packet count, then each
packet behind its 2-byte length. A packet is the instrument token and last price (LTP, 8 bytes),
then quantities, average price, volume, buy and sell quantities and OHLC (QUOTE, 44 bytes), then
the last trade time, open interest, the exchange timestamp and five levels of depth a side, each
quantity, price and orders in 12 bytes (FULL, 184 bytes). Prices are in paise (divided by 100;
by 10^7 for CDS and 10^4 for BCD, by the token's segment byte). ``encode`` writes a decoded tick
(the fixtures' shape) in that layout; tests check it by decoding with kiteconnect itself.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from peers.loopback import serve

MODES = ("ltp", "quote", "full")
LENGTHS = {"ltp": 8, "quote": 44, "full": 184}


def _divisor(token: int) -> int:
    segment = token & 0xFF
    return 10_000_000 if segment == 3 else 10_000 if segment in (6, 12) else 100


def _unix(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, str) and value:
        return int(datetime.fromisoformat(value).timestamp())
    return 0


def encode(tick: dict[str, Any], mode: str | None = None) -> bytes:
    """One packet of ``tick`` (a decoded tick as kiteconnect gives it) in ``mode`` (the tick's
    own by default)."""
    mode = mode or tick["mode"]
    token = int(tick["instrument_token"])
    divisor = _divisor(token)

    def paise(value: Any) -> int:
        return int((Decimal(str(value or 0)) * divisor).to_integral_value())

    packet = struct.pack(">II", token, paise(tick.get("last_price")))
    if mode == "ltp":
        return packet
    ohlc = tick.get("ohlc") or {}
    packet += struct.pack(
        ">IIIIIIIII",
        int(tick.get("last_traded_quantity", tick.get("last_quantity", 0)) or 0),
        paise(tick.get("average_traded_price", tick.get("average_price"))),
        int(tick.get("volume_traded", tick.get("volume", 0)) or 0),
        int(tick.get("total_buy_quantity", tick.get("buy_quantity", 0)) or 0),
        int(tick.get("total_sell_quantity", tick.get("sell_quantity", 0)) or 0),
        paise(ohlc.get("open")),
        paise(ohlc.get("high")),
        paise(ohlc.get("low")),
        paise(ohlc.get("close")),
    )
    if mode == "quote":
        return packet
    packet += struct.pack(
        ">IIIII",
        _unix(tick.get("last_trade_time")),
        int(tick.get("oi", 0) or 0),
        int(tick.get("oi_day_high", 0) or 0),
        int(tick.get("oi_day_low", 0) or 0),
        _unix(tick.get("exchange_timestamp", tick.get("timestamp"))),
    )
    depth = tick.get("depth") or {}
    for side in ("buy", "sell"):
        levels = list(depth.get(side) or [])[:5]
        levels += [{"price": 0, "quantity": 0, "orders": 0}] * (5 - len(levels))
        for level in levels:
            packet += struct.pack(
                ">IIHxx", int(level["quantity"]), paise(level["price"]), int(level.get("orders", 0))
            )
    assert len(packet) == LENGTHS["full"]
    return packet


def message(*packets: bytes) -> bytes:
    """Packets as one binary websocket message."""
    body = struct.pack(">H", len(packets))
    for packet in packets:
        body += struct.pack(">H", len(packet)) + packet
    return body


class KiteTickerPeer:
    """The websocket server. ``root`` for KiteTicker; ``ticks[token]`` is the tick each token
    sends (a decoded tick), ``push()`` sends them again, ``drop_connections()`` cuts every
    client; ``received`` lists the client's messages."""

    def __init__(self, *, api_key: str, access_token: str) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.ticks: dict[int, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.refused = 0
        self._sockets: list[tuple[web.WebSocketResponse, dict[int, str], web.Request]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def subscribed(self) -> dict[int, str]:
        """Token -> mode of the newest open connection."""
        return dict(self._sockets[-1][1]) if self._sockets else {}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._serve)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def drop_connections(self) -> None:
        for _, _, request in self._sockets:
            if request.transport is not None:
                request.transport.abort()

    async def push(self, *tokens: int) -> None:
        """Send the ticks of ``tokens`` (every subscribed one by default), each in the mode its
        connection asked for, in one message per connection."""
        for socket, modes, _ in list(self._sockets):
            chosen = [t for t in (tokens or tuple(modes)) if t in modes and t in self.ticks]
            if chosen and not socket.closed:
                with contextlib.suppress(ConnectionError):
                    await socket.send_bytes(message(*(encode(self.ticks[t], modes[t]) for t in chosen)))

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if (
            request.query.get("api_key") != self.api_key
            or request.query.get("access_token") != self.access_token
        ):
            self.refused += 1
            return web.Response(status=403, text="Forbidden")
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        modes: dict[int, str] = {}
        entry = (socket, modes, request)
        self._sockets.append(entry)
        self.connections += 1
        try:
            async for frame in socket:
                if frame.type is not WSMsgType.TEXT:
                    continue
                try:
                    command = json.loads(frame.data)
                except ValueError:
                    continue
                self.received.append(command)
                action, value = command.get("a"), command.get("v")
                if action == "subscribe":
                    for token in value:
                        modes.setdefault(int(token), "quote")
                    await self.push(*[int(t) for t in value])
                elif action == "unsubscribe":
                    for token in value:
                        modes.pop(int(token), None)
                elif action == "mode" and value[0] in MODES:
                    for token in value[1]:
                        if int(token) in modes:
                            modes[int(token)] = value[0]
                    await self.push(*[int(t) for t in value[1]])
        finally:
            self._sockets.remove(entry)
        return socket


@contextlib.asynccontextmanager
async def running_ticker_peer(*, api_key: str, access_token: str) -> AsyncIterator[KiteTickerPeer]:
    peer = KiteTickerPeer(api_key=api_key, access_token=access_token)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()
