"""A loopback crypto venue on 127.0.0.1 that speaks two venues' REST formats, as ccxt's own test
data records them: Kraken (``/0/public/...``, ``/0/private/...``: form-encoded POSTs signed with
``API-Sign``, ``{"error": [], "result": ...}`` bodies) and Binance.US (``/api/v3/...``: query
strings signed with HMAC-SHA256 in ``signature``, ``X-MBX-APIKEY``, ``{"code", "msg"}`` errors).

Order records are built on the recorded ones in ``shared/fixtures/broker-payloads/ccxt``: each
answer is the recorded payload with the fields of this order written over it. The venue keeps
balances, orders and trades; tests steer it:

- ``fill(order_id, qty, price, fee=None)`` executes part or all of an order (one trade);
- ``auto_fill = True`` fills market orders in full as they arrive;
- ``fail_next(path, status, body)`` answers the next request to ``path`` with an error;
- ``lose_next(path)`` does the work of the next request to ``path``, then answers 502 as a
  gateway that lost the venue's answer would;
- ``calls`` records (method, path, params) of every request.

Kraken's side also serves its v2 private websocket (``/v2``, as ``wss://ws-auth.kraken.com/v2``
moved to the peer), the ``executions`` channel as Kraken documents it: a token from
``GetWebSocketsToken``; ``subscribe`` answered with its ack and a snapshot of open orders
(``snap_orders``); then one message per execution: ``pending_new`` and ``new`` for an order placed,
``trade`` (with ``exec_id`` the trade's id, as ``TradesHistory`` lists it, and its fee) and
``filled``, ``canceled``; ``ping`` answered with ``pong``. ``ws_refuse`` refuses the upgrade,
``ws_drop()`` closes every socket, ``ws_messages`` keeps what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import time
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from adapters.broker_payloads import payload
from aiohttp import web

from peers.loopback import serve

API_KEY = "peer-ccxt-key-0001"
# Kraken's secrets are base64; Binance's are plain text. One value serves both.
SECRET = base64.b64encode(b"peer-ccxt-secret-do-not-log-0001").decode()


def text(value: Decimal, places: int = 8) -> str:
    return f"{value:.{places}f}"


@dataclass
class PeerMarket:
    base: str  # our code: BTC
    quote: str  # USD
    kraken_base: str  # XXBT
    kraken_quote: str  # ZUSD
    kraken_alt: str  # XBTUSD
    price: Decimal
    lot_decimals: int = 8
    pair_decimals: int = 1
    ordermin: str = "0.0001"
    costmin: str = "0.5"
    tick: str = "0.1"

    @property
    def kraken_pair(self) -> str:
        return self.kraken_base + self.kraken_quote

    @property
    def binance_symbol(self) -> str:
        return self.base + self.quote


MARKETS = [
    PeerMarket("BTC", "USD", "XXBT", "ZUSD", "XBTUSD", Decimal("60000")),
    PeerMarket(
        "ETH",
        "USD",
        "XETH",
        "ZUSD",
        "ETHUSD",
        Decimal("3000"),
        pair_decimals=2,
        tick="0.01",
        ordermin="0.002",
    ),
    PeerMarket(
        "LTC", "USDT", "XLTC", "USDT", "LTCUSDT", Decimal("70"), pair_decimals=2, tick="0.01", ordermin="0.05"
    ),
]
KRAKEN_ASSETS = {"XXBT": "BTC", "XETH": "ETH", "XLTC": "LTC", "ZUSD": "USD", "USDT": "USDT"}


@dataclass
class PeerOrder:
    id: str
    client_id: str
    market: PeerMarket
    side: str  # buy / sell
    kind: str  # market, limit, stop-loss, stop-loss-limit
    amount: Decimal
    price: Decimal | None
    stop: Decimal | None
    time_in_force: str
    opened: float = field(default_factory=time.time)
    status: str = "open"  # open, closed, canceled
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    trades: list[str] = field(default_factory=list)


@dataclass
class PeerTrade:
    id: str
    order: PeerOrder
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    at: float = field(default_factory=time.time)


class CryptoPeer:
    """One venue: ``venue`` is "kraken" or "binanceus"."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.balances: dict[str, Decimal] = {
            "USD": Decimal("50000"),
            "BTC": Decimal("0.5"),
            "ETH": Decimal("2"),
        }
        self.orders: dict[str, PeerOrder] = {}
        self.trades: list[PeerTrade] = []
        self.auto_fill = False
        self.fee_rate = Decimal("0.0026")
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.failures: dict[str, list[tuple[int, Any]]] = {}
        self.losing: set[str] = set()
        self.cancel_after: int | None = None
        self.ws_token = "peer-ws-token-0001"
        self.ws_refuse = False
        self.ws_messages: list[dict[str, Any]] = []
        self.ws_subscribes = 0
        self._sockets: dict[web.WebSocketResponse, asyncio.Queue[dict[str, Any] | None]] = {}
        self._sequence = itertools.count(1)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.root = ""
        recorded = payload("ccxt", f"response/{'kraken' if venue == 'kraken' else 'binanceus'}.json")[
            "methods"
        ]
        self._ticker = recorded["fetchTicker"][0]["httpResponse"]
        if venue == "kraken":
            limit = recorded["fetchOrder"][0]["httpResponse"]["result"]
            self._order_template = next(iter(limit.values()))

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        if self.venue == "kraken":
            app.router.add_get("/0/public/{method}", self._kraken_public)
            app.router.add_post("/0/private/{method}", self._kraken_private)
            app.router.add_get("/v2", self._kraken_ws)
        else:
            app.router.add_route("*", "/api/v3/{method:.*}", self._binance)
        self._runner, port = await serve(app)
        self.root = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.ws_drop()
        if self._runner is not None:
            await self._runner.cleanup()

    def settings(self, name: str = "crypto", **extra: Any) -> dict[str, Any]:
        return {
            "type": "ccxt",
            "name": name,
            "exchange": self.venue,
            "base_url": self.root,
            "poll_interval": 0.05,
            "timeout": 3,
            "request_interval": 0.0,
            **extra,
        }

    # -- steering -------------------------------------------------------------------------
    def fail_next(self, path: str, status: int, body: Any) -> None:
        self.failures.setdefault(path, []).append((status, body))

    def lose_next(self, path: str) -> None:
        self.losing.add(path)

    def market(self, symbol: str) -> PeerMarket:
        return next(m for m in MARKETS if f"{m.base}/{m.quote}" == symbol)

    def fill(self, order_id: str, qty: Decimal, price: Decimal, fee: Decimal | None = None) -> PeerTrade:
        order = self.orders[order_id]
        qty = min(Decimal(qty), order.amount - order.filled)
        fee = (qty * price * self.fee_rate).quantize(Decimal("0.000001")) if fee is None else fee
        trade = PeerTrade(f"T{next(self._ids):06d}-PEER", order, qty, Decimal(price), fee, order.market.quote)
        order.filled += qty
        order.cost += qty * price
        order.fee += fee
        order.trades.append(trade.id)
        if order.filled >= order.amount:
            order.status = "closed"
        sign = 1 if order.side == "buy" else -1
        base, quote = order.market.base, order.market.quote
        self.balances[base] = self.balances.get(base, Decimal(0)) + sign * qty
        self.balances[quote] = self.balances.get(quote, Decimal(0)) - sign * qty * price - fee
        self.trades.append(trade)
        self._push_trade(trade)
        return trade

    def venue_cancel(self, order_id: str) -> None:
        """The venue cancels an order by itself (a cancel-all-after timer that ran out)."""
        order = self.orders[order_id]
        order.status = "canceled"
        self._push_canceled(order)

    def by_client_id(self, client_id: str) -> PeerOrder | None:
        return next((o for o in self.orders.values() if o.client_id == client_id), None)

    # -- plumbing -------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            params.update({k: v for k, v in urllib.parse.parse_qsl(await request.text())})
        self.calls.append((request.method, request.path, params))
        queued = self.failures.get(request.path)
        if queued:
            status, body = queued.pop(0)
            return web.json_response(body, status=status)
        if request.path in self.losing:
            self.losing.discard(request.path)
            await handler(request)
            return web.Response(status=502, text="Bad Gateway")
        return await handler(request)

    def _new_order(
        self,
        market: PeerMarket,
        side: str,
        kind: str,
        amount: Decimal,
        price: Decimal | None,
        stop: Decimal | None,
        client_id: str,
        tif: str,
    ) -> PeerOrder:
        if self.venue == "kraken":
            oid = f"O{next(self._ids):05d}-PEER-{len(self.orders):06d}"
        else:
            oid = str(1000 + next(self._ids))
        order = PeerOrder(oid, client_id, market, side, kind, amount, price, stop, tif)
        self.orders[oid] = order
        self._push_new(order)
        if self.auto_fill and kind == "market":
            self.fill(oid, amount, market.price)
        return order

    # -- Kraken ---------------------------------------------------------------------------
    def _kraken(self, result: Any) -> web.Response:
        return web.json_response({"error": [], "result": result})

    def _kraken_error(self, message: str) -> web.Response:
        return web.json_response({"error": [message]})

    async def _kraken_public(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "Assets":
            return self._kraken(
                {
                    code: {
                        "aclass": "currency",
                        "altname": "XBT" if code == "XXBT" else ours,
                        "decimals": 10,
                        "display_decimals": 5,
                        "collateral_value": 1.0,
                        "status": "enabled",
                    }
                    for code, ours in KRAKEN_ASSETS.items()
                }
            )
        if method == "AssetPairs":
            return self._kraken(
                {
                    m.kraken_pair: {
                        "altname": m.kraken_alt,
                        "wsname": f"{'XBT' if m.base == 'BTC' else m.base}/{m.quote}",
                        "aclass_base": "currency",
                        "base": m.kraken_base,
                        "aclass_quote": "currency",
                        "quote": m.kraken_quote,
                        "lot": "unit",
                        "cost_decimals": 5,
                        "pair_decimals": m.pair_decimals,
                        "lot_decimals": m.lot_decimals,
                        "lot_multiplier": 1,
                        "leverage_buy": [],
                        "leverage_sell": [],
                        "fees": [[0, 0.26], [50000, 0.24]],
                        "fees_maker": [[0, 0.16], [50000, 0.14]],
                        "fee_volume_currency": "ZUSD",
                        "margin_call": 80,
                        "margin_stop": 40,
                        "ordermin": m.ordermin,
                        "costmin": m.costmin,
                        "tick_size": m.tick,
                        "status": "online",
                    }
                    for m in MARKETS
                }
            )
        if method == "Ticker":
            result = {}
            template = next(iter(self._ticker["result"].values()))
            for pair in request.query.get("pair", "").split(","):
                market = next((m for m in MARKETS if pair in (m.kraken_pair, m.kraken_alt)), None)
                if market is None:
                    return self._kraken_error("EQuery:Unknown asset pair")
                body = copy.deepcopy(template)
                body["c"] = [text(market.price, 5), "0.00100000"]
                result[market.kraken_pair] = body
            return self._kraken(result)
        if method == "Time":
            now = int(time.time())
            return self._kraken({"unixtime": now, "rfc1123": ""})
        return self._kraken_error("EGeneral:Unknown method")

    def _kraken_signed(self, request: web.Request, body: str, params: dict[str, str]) -> bool:
        if request.headers.get("API-Key") != API_KEY:
            return False
        nonce = params.get("nonce", "")
        digest = hashlib.sha256((nonce + body).encode()).digest()
        mac = hmac.new(base64.b64decode(SECRET), request.path.encode() + digest, hashlib.sha512)
        return hmac.compare_digest(
            base64.b64encode(mac.digest()).decode(), request.headers.get("API-Sign", "")
        )

    def _kraken_words(self, order: PeerOrder) -> str:
        """The order in Kraken's words, as its ``descr.order`` writes it (ccxt reads them)."""
        head = f"{order.side} {text(order.amount)} {order.market.kraken_alt} @ "
        if order.kind == "market":
            return head + "market"
        if order.kind == "limit":
            return head + f"limit {text(order.price or Decimal(0), 5)}"
        tail = f" -> limit {text(order.price, 5)}" if order.price is not None else ""
        return head + f"stop loss {text(order.stop or Decimal(0), 5)}{tail}"

    def _kraken_order(self, order: PeerOrder) -> dict[str, Any]:
        record = copy.deepcopy(self._order_template)
        kind = {
            "market": "market",
            "limit": "limit",
            "stop-loss": "stop-loss",
            "stop-loss-limit": "stop-loss-limit",
        }[order.kind]
        record.update(
            {
                "status": order.status,
                "opentm": f"{order.opened:.6f}",
                "cl_ord_id": order.client_id,
                "vol": text(order.amount),
                "vol_exec": text(order.filled),
                "cost": text(order.cost, 6),
                "fee": text(order.fee, 6),
                "price": text(order.cost / order.filled if order.filled else Decimal(0), 6),
                "oflags": "fciq",
            }
        )
        record["descr"] = {
            **record["descr"],
            "pair": order.market.kraken_alt,
            "type": order.side,
            "ordertype": kind,
            "price": text(order.stop if order.stop is not None else (order.price or Decimal(0)), 5),
            "price2": text(
                order.price if order.stop is not None and order.price is not None else Decimal(0), 5
            ),
            "order": self._kraken_words(order),
        }
        if order.trades:
            record["trades"] = list(order.trades)
        if order.status != "open":
            record["closetm"] = f"{time.time():.6f}"
        return record

    async def _kraken_private(self, request: web.Request) -> web.Response:
        body = await request.text()
        params = dict(urllib.parse.parse_qsl(body))
        if not self._kraken_signed(request, body, params):
            return self._kraken_error("EAPI:Invalid key")
        method = request.match_info["method"]
        if method in ("BalanceEx", "Balance"):
            result = {}
            for code, ours in KRAKEN_ASSETS.items():
                if ours in self.balances:
                    held = sum(
                        (o.amount - o.filled) * (o.price or o.market.price)
                        for o in self.orders.values()
                        if o.status == "open" and o.side == "buy" and o.market.quote == ours
                    )
                    result[code] = {
                        "balance": text(self.balances[ours], 4),
                        "hold_trade": text(Decimal(held), 4),
                    }
            return self._kraken(
                result if method == "BalanceEx" else {k: v["balance"] for k, v in result.items()}
            )
        if method == "AddOrder":
            market = next((m for m in MARKETS if params.get("pair") in (m.kraken_alt, m.kraken_pair)), None)
            if market is None:
                return self._kraken_error("EQuery:Unknown asset pair")
            amount = Decimal(params["volume"])
            if amount < Decimal(market.ordermin):
                return self._kraken_error("EOrder:Order minimum not met")
            kind = params["ordertype"]
            price = Decimal(params["price"]) if "price" in params else None
            price2 = Decimal(params["price2"]) if "price2" in params else None
            stop, limit = (price, price2) if kind.startswith("stop-loss") else (None, price)
            cost = amount * (limit or market.price)
            if params["type"] == "buy" and cost > self.balances.get(market.quote, Decimal(0)):
                return self._kraken_error("EOrder:Insufficient funds")
            order = self._new_order(
                market,
                params["type"],
                kind,
                amount,
                limit,
                stop,
                params.get("cl_ord_id", ""),
                params.get("timeinforce", "GTC"),
            )
            return self._kraken({"txid": [order.id], "descr": {"order": self._kraken_words(order)}})
        if method == "QueryOrders":
            result = {}
            for oid in params.get("txid", "").split(","):
                order = self.orders.get(oid)
                if order is not None:
                    result[oid] = self._kraken_order(order)
            if "cl_ord_id" in params:
                order = self.by_client_id(params["cl_ord_id"])
                if order is not None:
                    result[order.id] = self._kraken_order(order)
            if not result:
                return self._kraken_error("EOrder:Invalid order")
            return self._kraken(result)
        if method == "OpenOrders":
            return self._kraken(
                {"open": {o.id: self._kraken_order(o) for o in self.orders.values() if o.status == "open"}}
            )
        if method == "ClosedOrders":
            closed = {o.id: self._kraken_order(o) for o in self.orders.values() if o.status != "open"}
            return self._kraken({"closed": closed, "count": len(closed)})
        if method == "CancelOrder":
            order = self.orders.get(params.get("txid", ""))
            if order is None:
                return self._kraken_error("EOrder:Unknown order")
            if order.status != "open":
                return self._kraken_error("EOrder:Unknown order")
            order.status = "canceled"
            self._push_canceled(order)
            return self._kraken({"count": 1})
        if method == "CancelAll":
            count = 0
            for order in self.orders.values():
                if order.status == "open":
                    order.status, count = "canceled", count + 1
                    self._push_canceled(order)
            return self._kraken({"count": count})
        if method == "GetWebSocketsToken":
            return self._kraken({"token": self.ws_token, "expires": 900})
        if method == "CancelAllOrdersAfter":
            self.cancel_after = int(params["timeout"])
            return self._kraken(
                {
                    "currentTime": "2026-01-01T00:00:00Z",
                    "triggerTime": "2026-01-01T00:01:00Z" if self.cancel_after else "0",
                }
            )
        if method == "TradesHistory":
            start = float(params.get("start", 0))
            trades = {
                t.id: {
                    "ordertxid": t.order.id,
                    "postxid": "TKH2SE-M7IF5-CFI7LT",
                    "pair": t.order.market.kraken_pair,
                    "time": t.at,
                    "type": t.order.side,
                    "ordertype": t.order.kind,
                    "price": text(t.price, 5),
                    "cost": text(t.amount * t.price, 5),
                    "fee": text(t.fee, 5),
                    "vol": text(t.amount),
                    "margin": "0.00000",
                    "leverage": "0",
                    "misc": "",
                    "trade_id": int(t.id[1:7]),
                    "maker": False,
                }
                for t in self.trades
                if t.at >= start
            }
            return self._kraken({"trades": trades, "count": len(trades)})
        return self._kraken_error("EGeneral:Unknown method")

    # -- Kraken's v2 private websocket --------------------------------------------------------
    @staticmethod
    def _iso(at: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"

    def _ws_order(self, order: PeerOrder, exec_type: str) -> dict[str, Any]:
        """An order as the ``executions`` channel describes it when it is placed (and in a
        snapshot)."""
        return {
            "order_id": order.id,
            "order_userref": 0,
            "cl_ord_id": order.client_id,
            "symbol": f"{order.market.base}/{order.market.quote}",
            "order_qty": float(order.amount),
            "cum_qty": float(order.filled),
            "cum_cost": float(order.cost),
            "time_in_force": order.time_in_force,
            "exec_type": exec_type,
            "side": order.side,
            "order_type": order.kind,
            "limit_price_type": "static",
            "limit_price": float(order.price or 0),
            "stop_price": float(order.stop or 0),
            "order_status": "new" if exec_type == "new" and not order.filled else exec_type,
            "fee_usd_equiv": float(order.fee),
            "fee_ccy_pref": "fciq",
            "timestamp": self._iso(order.opened),
        }

    def _push(self, item: dict[str, Any]) -> None:
        if self.venue != "kraken":
            return
        message = {
            "channel": "executions",
            "type": "update",
            "data": [item],
            "sequence": next(self._sequence),
        }
        for queue in self._sockets.values():
            queue.put_nowait(message)

    def _push_new(self, order: PeerOrder) -> None:
        self._push(self._ws_order(order, "pending_new"))
        self._push(
            {
                "timestamp": self._iso(time.time()),
                "order_status": "new",
                "exec_type": "new",
                "order_userref": 0,
                "order_id": order.id,
            }
        )

    def _push_trade(self, trade: PeerTrade) -> None:
        order = trade.order
        status = "filled" if order.status == "closed" else "partially_filled"
        self._push(
            {
                "order_id": order.id,
                "exec_id": trade.id,
                "exec_type": "trade",
                "trade_id": int(trade.id[1:7]),
                "symbol": f"{order.market.base}/{order.market.quote}",
                "side": order.side,
                "last_qty": float(trade.amount),
                "last_price": float(trade.price),
                "liquidity_ind": "t",
                "cost": float(trade.amount * trade.price),
                "order_userref": 0,
                "order_status": status,
                "order_type": order.kind,
                "fee_usd_equiv": float(trade.fee),
                "fees": [{"asset": trade.fee_asset, "qty": float(trade.fee)}],
                "timestamp": self._iso(trade.at),
            }
        )
        if status == "filled":
            self._push(
                {
                    "timestamp": self._iso(trade.at),
                    "order_status": "filled",
                    "exec_type": "filled",
                    "order_userref": 0,
                    "order_id": order.id,
                    "cum_qty": float(order.filled),
                    "cum_cost": float(order.cost),
                    "fee_usd_equiv": float(order.fee),
                    "avg_price": float(order.cost / order.filled),
                }
            )

    def _push_canceled(self, order: PeerOrder) -> None:
        self._push(
            {
                "timestamp": self._iso(time.time()),
                "order_status": "canceled",
                "exec_type": "canceled",
                "order_userref": 0,
                "order_id": order.id,
                "cum_qty": float(order.filled),
                "cum_cost": float(order.cost),
                "fee_usd_equiv": float(order.fee),
                "avg_price": float(order.cost / order.filled) if order.filled else 0,
                "cancel_reason": "User requested",
                "reason": "User requested",
            }
        )

    async def ws_drop(self) -> None:
        """Close every socket, as a venue restarting its gateway would."""
        for socket, queue in list(self._sockets.items()):
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await socket.close()

    async def _kraken_ws(self, request: web.Request) -> web.StreamResponse:
        if self.ws_refuse:
            return web.Response(status=503, text="Service Unavailable")
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        await socket.send_json(
            {
                "channel": "status",
                "type": "update",
                "data": [{"api_version": "v2", "connection_id": 1, "system": "online", "version": "2.0.10"}],
            }
        )

        async def writer() -> None:
            while (message := await queue.get()) is not None:
                self.ws_messages.append(message)
                await socket.send_json(message)

        sender = asyncio.create_task(writer())
        try:
            async for frame in socket:
                if frame.type is not web.WSMsgType.TEXT:
                    continue
                message = frame.json()
                now = self._iso(time.time())
                if message.get("method") == "ping":
                    queue.put_nowait(
                        {"method": "pong", "req_id": message.get("req_id"), "time_in": now, "time_out": now}
                    )
                    continue
                params = message.get("params") or {}
                if message.get("method") != "subscribe" or params.get("channel") != "executions":
                    continue
                if params.get("token") != self.ws_token:
                    queue.put_nowait(
                        {
                            "error": "EAccount:Invalid permissions",
                            "method": "subscribe",
                            "req_id": message.get("req_id"),
                            "success": False,
                            "time_in": now,
                            "time_out": now,
                        }
                    )
                    continue
                self.ws_subscribes += 1
                queue.put_nowait(
                    {
                        "method": "subscribe",
                        "req_id": message.get("req_id"),
                        "result": {
                            "channel": "executions",
                            "maxratecount": 180,
                            "snapshot": True,
                            "snap_orders": bool(params.get("snap_orders")),
                            "snap_trades": bool(params.get("snap_trades")),
                        },
                        "success": True,
                        "time_in": now,
                        "time_out": now,
                    }
                )
                opened = [o for o in self.orders.values() if o.status == "open"]
                queue.put_nowait(
                    {
                        "channel": "executions",
                        "type": "snapshot",
                        "data": [self._ws_order(o, "new") for o in opened]
                        if params.get("snap_orders")
                        else [],
                        "sequence": next(self._sequence),
                    }
                )
                self._sockets[socket] = queue
        finally:
            self._sockets.pop(socket, None)
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return socket

    # -- Binance.US -------------------------------------------------------------------------
    def _binance_error(self, status: int, code: int, msg: str) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _binance_order(self, order: PeerOrder) -> dict[str, Any]:
        status = {
            "open": "PARTIALLY_FILLED" if order.filled else "NEW",
            "closed": "FILLED",
            "canceled": "CANCELED",
        }[order.status]
        kind = {"market": "MARKET", "limit": "LIMIT", "stop-loss-limit": "STOP_LOSS_LIMIT"}[order.kind]
        stamp = int(order.opened * 1000)
        return {
            "symbol": order.market.binance_symbol,
            "orderId": int(order.id),
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "price": text(order.price or Decimal(0)),
            "origQty": text(order.amount),
            "executedQty": text(order.filled),
            "cummulativeQuoteQty": text(order.cost),
            "status": status,
            "timeInForce": order.time_in_force,
            "type": kind,
            "side": order.side.upper(),
            "stopPrice": text(order.stop or Decimal(0)),
            "icebergQty": "0.00000000",
            "time": stamp,
            "updateTime": stamp,
            "isWorking": True,
            "workingTime": stamp,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "NONE",
        }

    def _binance_market(self, symbol: str | None) -> PeerMarket | None:
        return next((m for m in MARKETS if m.binance_symbol == symbol), None)

    async def _binance(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        query = request.query_string
        body = await request.text() if request.method in ("POST", "PUT", "DELETE") else ""
        signed_text = "&".join(part for part in (query, body) if part)
        params = dict(urllib.parse.parse_qsl(signed_text))
        if method == "exchangeInfo":
            return web.json_response(
                {
                    "timezone": "UTC",
                    "serverTime": int(time.time() * 1000),
                    "rateLimits": [],
                    "exchangeFilters": [],
                    "symbols": [
                        {
                            "symbol": m.binance_symbol,
                            "status": "TRADING",
                            "baseAsset": m.base,
                            "baseAssetPrecision": 8,
                            "quoteAsset": m.quote,
                            "quotePrecision": 4,
                            "quoteAssetPrecision": 4,
                            "baseCommissionPrecision": 8,
                            "quoteCommissionPrecision": 2,
                            "orderTypes": [
                                "LIMIT",
                                "LIMIT_MAKER",
                                "MARKET",
                                "STOP_LOSS_LIMIT",
                                "TAKE_PROFIT_LIMIT",
                            ],
                            "icebergAllowed": True,
                            "ocoAllowed": True,
                            "quoteOrderQtyMarketAllowed": True,
                            "allowTrailingStop": False,
                            "cancelReplaceAllowed": True,
                            "isSpotTradingAllowed": True,
                            "isMarginTradingAllowed": False,
                            "filters": [
                                {
                                    "filterType": "PRICE_FILTER",
                                    "minPrice": m.tick,
                                    "maxPrice": "1000000.00",
                                    "tickSize": m.tick,
                                },
                                {
                                    "filterType": "LOT_SIZE",
                                    "minQty": m.ordermin,
                                    "maxQty": "9000.00000000",
                                    "stepSize": "0.00001000",
                                },
                                {
                                    "filterType": "NOTIONAL",
                                    "minNotional": "10.00",
                                    "applyMinToMarket": True,
                                    "maxNotional": "9000000.00",
                                    "applyMaxToMarket": False,
                                    "avgPriceMins": 5,
                                },
                            ],
                            "permissions": ["SPOT"],
                            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                            "allowedSelfTradePreventionModes": [
                                "EXPIRE_TAKER",
                                "EXPIRE_MAKER",
                                "EXPIRE_BOTH",
                            ],
                        }
                        for m in MARKETS
                    ],
                }
            )
        if method == "ticker/24hr":
            wanted = [params["symbol"]] if "symbol" in params else None
            rows = []
            for m in MARKETS:
                if wanted is None or m.binance_symbol in wanted:
                    row = dict(self._ticker)
                    row.update({"symbol": m.binance_symbol, "lastPrice": text(m.price)})
                    rows.append(row)
            return web.json_response(rows[0] if "symbol" in params else rows)
        if method in ("time", "ping"):
            return web.json_response({"serverTime": int(time.time() * 1000)} if method == "time" else {})
        signature = params.pop("signature", "")
        unsigned = signed_text.replace(f"&signature={signature}", "").replace(f"signature={signature}", "")
        expected = hmac.new(SECRET.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if request.headers.get("X-MBX-APIKEY") != API_KEY or not hmac.compare_digest(expected, signature):
            return self._binance_error(401, -1022, "Signature for this request is not valid.")
        if method == "account":
            return web.json_response(
                {
                    "makerCommission": 10,
                    "takerCommission": 10,
                    "buyerCommission": 0,
                    "sellerCommission": 0,
                    "canTrade": True,
                    "canWithdraw": True,
                    "canDeposit": True,
                    "updateTime": int(time.time() * 1000),
                    "accountType": "SPOT",
                    "balances": [
                        {"asset": asset, "free": text(amount), "locked": "0.00000000"}
                        for asset, amount in self.balances.items()
                    ],
                    "permissions": ["SPOT"],
                }
            )
        if method == "order" and request.method == "POST":
            market = self._binance_market(params.get("symbol"))
            if market is None:
                return self._binance_error(400, -1121, "Invalid symbol.")
            kind = {"MARKET": "market", "LIMIT": "limit", "STOP_LOSS_LIMIT": "stop-loss-limit"}[
                params["type"]
            ]
            amount = Decimal(params["quantity"])
            price = Decimal(params["price"]) if "price" in params else None
            stop = Decimal(params["stopPrice"]) if "stopPrice" in params else None
            if params["side"] == "BUY" and amount * (price or market.price) > self.balances.get(
                market.quote, Decimal(0)
            ):
                return self._binance_error(
                    400, -2010, "Account has insufficient balance for requested action."
                )
            order = self._new_order(
                market,
                params["side"].lower(),
                kind,
                amount,
                price,
                stop,
                params.get("newClientOrderId", ""),
                params.get("timeInForce", "GTC"),
            )
            answer = self._binance_order(order)
            answer["transactTime"] = answer.pop("time")
            answer["fills"] = [
                {
                    "price": text(t.price),
                    "qty": text(t.amount),
                    "commission": text(t.fee),
                    "commissionAsset": t.fee_asset,
                    "tradeId": int(t.id[1:7]),
                }
                for t in self.trades
                if t.order is order
            ]
            return web.json_response(answer)
        if method == "order":
            order = self.orders.get(params.get("orderId", "")) or self.by_client_id(
                params.get("origClientOrderId", "")
            )
            if order is None:
                return self._binance_error(400, -2013, "Order does not exist.")
            if request.method == "DELETE":
                if order.status != "open":
                    return self._binance_error(400, -2011, "Unknown order sent.")
                order.status = "canceled"
            return web.json_response(self._binance_order(order))
        if method == "openOrders":
            symbol = params.get("symbol")
            chosen = [
                o
                for o in self.orders.values()
                if o.status == "open" and (symbol is None or o.market.binance_symbol == symbol)
            ]
            if request.method == "DELETE":
                for order in chosen:
                    order.status = "canceled"
            return web.json_response([self._binance_order(o) for o in chosen])
        if method == "allOrders":
            symbol = params.get("symbol")
            return web.json_response(
                [self._binance_order(o) for o in self.orders.values() if o.market.binance_symbol == symbol]
            )
        if method == "myTrades":
            symbol = params.get("symbol")
            start = int(params.get("startTime", 0))
            return web.json_response(
                [
                    {
                        "symbol": t.order.market.binance_symbol,
                        "id": int(t.id[1:7]),
                        "orderId": int(t.order.id),
                        "orderListId": -1,
                        "price": text(t.price),
                        "qty": text(t.amount),
                        "quoteQty": text(t.price * t.amount),
                        "commission": text(t.fee),
                        "commissionAsset": t.fee_asset,
                        "time": int(t.at * 1000),
                        "isBuyer": t.order.side == "buy",
                        "isMaker": False,
                        "isBestMatch": True,
                    }
                    for t in self.trades
                    if t.order.market.binance_symbol == symbol and t.at * 1000 >= start
                ]
            )
        return self._binance_error(404, -1000, f"unknown endpoint {method}")


@pytest.fixture(params=["kraken", "binanceus"], name="crypto_peer")
async def crypto_peer_fixture(request):
    peer = CryptoPeer(request.param)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(name="crypto")
async def crypto_broker_fixture(crypto_peer, memory_keyring):
    from brokers.credentials import set_secret
    from brokers.registry import BrokerFactory

    set_secret("crypto", "api_key", API_KEY)
    set_secret("crypto", "secret_key", SECRET)
    broker = BrokerFactory.create(crypto_peer.settings(live=True))
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.disconnect()
