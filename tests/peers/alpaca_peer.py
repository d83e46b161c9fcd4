"""A loopback Alpaca: the v2 trading REST API and the trade_updates websocket, on 127.0.0.1.

It speaks the wire format alpaca-py expects (JSON bodies with money and quantities as strings,
UUID order ids, RFC 3339 timestamps, ``{"code", "message"}`` errors, 207 from bulk cancel, the
``authenticate``/``listen`` handshake and binary JSON frames on the stream) and keeps enough state
to accept, fill, partially fill, reject, expire and cancel orders. Tests steer it:

- ``fill(order_id, qty, price)``, ``reject(order_id)``, ``expire(order_id)``;
- ``auto_fill = True`` fills marketable orders as soon as they arrive;
- ``fail_next(method, path, status, body)`` answers the next matching request with an error,
  ``answer_next(method, path, body)`` with a given payload;
- ``delay_next(method, path, seconds)`` answers late (after doing the work);
- ``drop_next(method, path)`` does the work, then closes the connection without answering;
- ``drop_streams()`` cuts every websocket; ``stream_online = False`` refuses new ones, and
  ``stream_refuses_auth = True`` answers their authentication with "unauthorized";
- ``place_external(...)`` places an order as another program would (by quantity, to 9 decimals,
  or by dollar amount with ``notional``); ``replay(message)`` sends a stream message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from peers.loopback import serve

API_KEY = "PKPEERTESTKEY0000001"
SECRET_KEY = "peer-secret-key-do-not-log-0001"

NINE_PLACES = Decimal("1e-9")
OPEN_STATUSES = {
    "new",
    "accepted",
    "pending_new",
    "pending_review",
    "partially_filled",
    "held",
    "pending_cancel",
    "pending_replace",
    "accepted_for_bidding",
    "stopped",
    "suspended",
    "calculated",
    "done_for_day",
}

ASSETS: dict[str, dict[str, Any]] = {
    "AAPL": {"class": "us_equity", "exchange": "NASDAQ", "fractionable": True},
    "SPY": {"class": "us_equity", "exchange": "ARCA", "fractionable": True},
    "MSFT": {"class": "us_equity", "exchange": "NASDAQ", "fractionable": True},
    "GME": {"class": "us_equity", "exchange": "NYSE", "fractionable": False},
    "BTC/USD": {"class": "crypto", "exchange": "CRYPTO", "fractionable": True},
    "ETH/USD": {"class": "crypto", "exchange": "CRYPTO", "fractionable": True},
}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as Alpaca sends


def money(value: Decimal) -> str:
    return format(value.normalize(), "f")


def error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"code": code, "message": message, **extra}, status=status)


@dataclass
class Fault:
    method: str
    path: str
    kind: str  # "answer" (a canned reply), "delay" or "drop"
    status: int = 500
    body: Any = None
    seconds: float = 0.0
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.method == method and path.startswith(self.path)


@dataclass
class PeerPosition:
    qty: Decimal = Decimal(0)
    avg: Decimal = Decimal(0)


@dataclass
class AlpacaPeer:
    api_key: str = API_KEY
    secret_key: str = SECRET_KEY
    cash: Decimal = Decimal("100000")
    prices: dict[str, Decimal] = field(
        default_factory=lambda: {
            "AAPL": Decimal("190.00"),
            "SPY": Decimal("500.00"),
            "MSFT": Decimal("410.00"),
            "GME": Decimal("20.00"),
            "BTC/USD": Decimal("60000.00"),
            "ETH/USD": Decimal("3000.00"),
        }
    )
    auto_fill: bool = False
    stream_online: bool = True
    stream_refuses_auth: bool = False
    account_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # What the peer trades, by symbol; a test may add one of a class the adapter does not model.
    assets: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(ASSETS))

    def __post_init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        # An exit leg's id -> its parent's id (order_class bracket, oto, oco).
        self.leg_parent: dict[str, str] = {}
        self.positions: dict[str, PeerPosition] = {}
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.sockets: set[web.WebSocketResponse] = set()
        self.listening: set[web.WebSocketResponse] = set()
        self.stream_auth_attempts = 0
        self._listen_changed = asyncio.Event()
        self.sent_updates: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> AlpacaPeer:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v2/account", self._account)
        app.router.add_get("/v2/positions", self._positions)
        app.router.add_get("/v2/orders", self._list_orders)
        app.router.add_post("/v2/orders", self._submit)
        app.router.add_delete("/v2/orders", self._cancel_all)
        app.router.add_get("/v2/orders:by_client_order_id", self._by_client_id)
        app.router.add_get("/v2/orders/{order_id}", self._get_order)
        app.router.add_delete("/v2/orders/{order_id}", self._cancel)
        app.router.add_patch("/v2/orders/{order_id}", self._replace)
        app.router.add_get("/v2/assets/{symbol}", self._asset)
        app.router.add_get("/stream", self._stream)
        self._runner, self.port = await serve(app)
        return self

    async def stop(self) -> None:
        await self.drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def settings(self, name: str = "alpaca-test", **extra: Any) -> dict[str, Any]:
        """An account config table pointing at this peer."""
        return {
            "type": "alpaca",
            "name": name,
            "base_url": self.base_url,
            "timeout": 2,
            "reconnect_delay": 0.05,
            **extra,
        }

    # -- steering -------------------------------------------------------------------------
    def fail_next(self, method: str, path: str, status: int, body: Any, times: int = 1) -> None:
        self.faults.append(Fault(method, path, "answer", status=status, body=body, times=times))

    def answer_next(self, method: str, path: str, body: Any, times: int = 1) -> None:
        """Answer the next matching request with this exact payload (a documented example)."""
        self.faults.append(Fault(method, path, "answer", status=200, body=body, times=times))

    def delay_next(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        self.faults.append(Fault(method, path, "delay", seconds=seconds, times=times))

    def drop_next(self, method: str, path: str, times: int = 1) -> None:
        self.faults.append(Fault(method, path, "drop", times=times))

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def order_by_client_id(self, client_order_id: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["client_order_id"] == client_order_id), None)

    async def fill(
        self, order_id: str, qty: Decimal | str | None = None, price: Decimal | str | None = None
    ) -> dict[str, Any]:
        order = self.orders[order_id]
        at = Decimal(str(price)) if price is not None else self._fill_price(order)
        if order["qty"] is None:
            # A notional order: as many shares as the dollar amount buys, to 9 decimals.
            order_qty = (Decimal(order["notional"]) / at).quantize(NINE_PLACES, ROUND_DOWN)
        else:
            order_qty = Decimal(order["qty"])
        remaining = order_qty - Decimal(order["filled_qty"])
        amount = Decimal(str(qty)) if qty is not None else remaining
        if amount <= 0 or amount > remaining:
            raise ValueError(f"cannot fill {amount} of {remaining} remaining")
        filled = Decimal(order["filled_qty"])
        average = Decimal(order["filled_avg_price"] or 0)
        total = filled + amount
        order["filled_avg_price"] = money((average * filled + at * amount) / total)
        order["filled_qty"] = money(total)
        timestamp = now_text()
        order["status"] = "filled" if total == order_qty else "partially_filled"
        order["updated_at"] = timestamp
        if order["status"] == "filled":
            order["filled_at"] = timestamp
        position = self._book(order["symbol"], order["side"], amount, at)
        event = "fill" if order["status"] == "filled" else "partial_fill"
        await self._publish(
            event,
            order,
            execution_id=str(uuid.uuid4()),
            price=money(at),
            qty=money(amount),
            position_qty=money(position.qty),
            timestamp=timestamp,
        )
        await self._after_fill(order)
        return order

    async def reject(self, order_id: str) -> None:
        await self._finish(order_id, "rejected", "failed_at")

    async def expire(self, order_id: str) -> None:
        await self._finish(order_id, "expired", "expired_at")

    async def replay(self, message: dict[str, Any]) -> None:
        """Send an update again, as a stream may after a reconnect."""
        frame = json.dumps(message).encode()
        for ws in list(self.listening):
            with contextlib.suppress(Exception):
                await ws.send_bytes(frame)

    async def drop_streams(self) -> None:
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                ws._writer.transport.abort()  # type: ignore[union-attr]  # a cut, not a goodbye
        self.sockets.clear()
        self.listening.clear()

    async def wait_listening(self, count: int = 1) -> None:
        """Until ``count`` sockets listen to trade_updates (wrap it in ``asyncio.timeout``)."""
        while len(self.listening) < count:
            self._listen_changed.clear()
            await self._listen_changed.wait()

    # -- internals ------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        self.requests.append((request.method, path))
        if path != "/stream":
            if (
                request.headers.get("APCA-API-KEY-ID") != self.api_key
                or request.headers.get("APCA-API-SECRET-KEY") != self.secret_key
            ):
                return error(401, 40110000, "request is not authorized")
        fault = next((f for f in self.faults if f.matches(request.method, path)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            if fault.kind == "answer":
                body = fault.body
                if isinstance(body, dict | list):
                    return web.json_response(body, status=fault.status)
                return web.Response(text=str(body), status=fault.status)
        response = await handler(request)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the work is done; the answer never leaves
        return response

    async def _asset(self, request: web.Request) -> web.Response:
        """GET /v2/assets/{symbol_or_asset_id}: the asset as Alpaca's documentation shows it, or
        404 with Alpaca's error body. A crypto pair is found with or without its slash."""
        asked = request.match_info["symbol"].upper()
        symbol = next((s for s in self.assets if s.replace("/", "") == asked.replace("/", "")), None)
        if symbol is None:
            return error(404, 40410000, f"asset not found for {asked}")
        asset = self.assets[symbol]
        crypto = asset["class"] == "crypto"
        return web.json_response(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)),
                "class": asset["class"],
                "exchange": asset["exchange"],
                "symbol": symbol,
                "name": asset.get("name", f"{symbol} Common Stock" if not crypto else symbol),
                "status": asset.get("status", "active"),
                "tradable": asset.get("tradable", True),
                "marginable": not crypto,
                "maintenance_margin_requirement": 100 if crypto else 30,
                "margin_requirement_long": "100" if crypto else "30",
                "margin_requirement_short": "100" if crypto else "30",
                "shortable": not crypto,
                "easy_to_borrow": not crypto,
                "fractionable": asset["fractionable"],
                "attributes": [],
                **(
                    {
                        "min_order_size": "0.000023",
                        "min_trade_increment": "0.000000001",
                        "price_increment": "1",
                    }
                    if crypto
                    else {}
                ),
            }
        )

    async def _account(self, request: web.Request) -> web.Response:
        long_value = sum((p.qty * self.prices[s] for s, p in self.positions.items() if p.qty > 0), Decimal(0))
        short_value = sum(
            (p.qty * self.prices[s] for s, p in self.positions.items() if p.qty < 0), Decimal(0)
        )
        equity = self.cash + long_value + short_value
        return web.json_response(
            {
                "id": self.account_id,
                "account_number": "PA3PEERTEST1",
                "status": "ACTIVE",
                "crypto_status": "ACTIVE",
                "currency": "USD",
                "buying_power": money(self.buying_power()),
                "regt_buying_power": money(self.buying_power()),
                "daytrading_buying_power": "0",
                "non_marginable_buying_power": money(max(self.cash, Decimal(0))),
                "cash": money(self.cash),
                "accrued_fees": "0",
                "pending_transfer_in": "0",
                "portfolio_value": money(equity),
                "pattern_day_trader": False,
                "trading_blocked": False,
                "transfers_blocked": False,
                "account_blocked": False,
                "created_at": "2024-01-02T15:04:05.123456Z",
                "trade_suspended_by_user": False,
                "multiplier": "1",
                "shorting_enabled": True,
                "equity": money(equity),
                "last_equity": money(equity),
                "long_market_value": money(long_value),
                "short_market_value": money(short_value),
                "initial_margin": money(long_value / 2),
                "maintenance_margin": money(long_value * Decimal("0.3")),
                "last_maintenance_margin": "0",
                "sma": "0",
                "daytrade_count": 0,
            }
        )

    def buying_power(self) -> Decimal:
        reserved = sum(
            (
                Decimal(o["notional"]) - Decimal(o["filled_qty"]) * Decimal(o["filled_avg_price"] or 0)
                if o["qty"] is None
                else (Decimal(o["qty"]) - Decimal(o["filled_qty"])) * self._reference_price(o)
            )
            for o in self.orders.values()
            if o["status"] in OPEN_STATUSES and o["side"] == "buy"
        )
        return max(self.cash - reserved, Decimal(0))

    async def _positions(self, request: web.Request) -> web.Response:
        rows = []
        for symbol, position in self.positions.items():
            if position.qty == 0:
                continue
            asset = self.assets[symbol]
            price = self.prices[symbol]
            rows.append(
                {
                    "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)),
                    "symbol": symbol.replace("/", "") if asset["class"] == "crypto" else symbol,
                    "exchange": asset["exchange"],
                    "asset_class": asset["class"],
                    "asset_marginable": True,
                    "avg_entry_price": money(position.avg),
                    "qty": money(position.qty),
                    "qty_available": money(position.qty),
                    "side": "long" if position.qty > 0 else "short",
                    "market_value": money(position.qty * price),
                    "cost_basis": money(position.qty * position.avg),
                    "unrealized_pl": money((price - position.avg) * position.qty),
                    "unrealized_plpc": "0",
                    "unrealized_intraday_pl": "0",
                    "unrealized_intraday_plpc": "0",
                    "current_price": money(price),
                    "lastday_price": money(price),
                    "change_today": "0",
                }
            )
        return web.json_response(rows)

    async def _list_orders(self, request: web.Request) -> web.Response:
        query = request.query
        status = query.get("status", "open")
        limit = int(query.get("limit", "50"))
        if not 1 <= limit <= 500:
            return error(422, 40010001, "limit must be between 1 and 500")
        after = _parse(query.get("after"))
        orders = list(self.orders.values())
        if status == "open":
            orders = [o for o in orders if o["status"] in OPEN_STATUSES]
        elif status == "closed":
            orders = [o for o in orders if o["status"] not in OPEN_STATUSES]
        elif status != "all":
            return error(422, 40010001, f"invalid status {status}")
        if after is not None:
            orders = [o for o in orders if _parse(o["submitted_at"]) > after]
        orders.sort(key=lambda o: o["submitted_at"], reverse=query.get("direction", "desc") == "desc")
        return web.json_response(orders[:limit])

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, 40010000, "request body format is invalid")
        if not isinstance(body, dict):
            return error(400, 40010000, "request body format is invalid")
        self.bodies.append(body)
        return self._create(body)

    async def place_external(self, **body: Any) -> dict[str, Any]:
        """An order placed elsewhere (the web dashboard, another program) on this account."""
        response = self._create({"time_in_force": "day", "type": "market", **body})
        if response.status != 200:
            raise ValueError(response.text)
        return self.orders[json.loads(response.text)["id"]]

    def _create(self, body: dict[str, Any]) -> web.Response:
        symbol = str(body.get("symbol") or "").upper()
        if symbol not in self.assets:
            return error(422, 40010001, f'could not find asset "{symbol}"')
        asset = self.assets[symbol]
        kind = body.get("type")
        tif = body.get("time_in_force")
        side = body.get("side")
        if kind not in ("market", "limit", "stop", "stop_limit", "trailing_stop") or side not in (
            "buy",
            "sell",
        ):
            return error(422, 40010001, "invalid order type or side")
        notional: Decimal | None = None
        try:
            if body.get("notional") is not None and body.get("qty") is None:
                notional = Decimal(str(body["notional"]))
                if notional <= 0:
                    return error(422, 40010001, "notional must be > 0")
                if kind != "market" or tif != "day":
                    return error(422, 40010001, "notional orders must be DAY market orders")
                qty = notional / self.prices[symbol]
            else:
                qty = Decimal(str(body["qty"]))
            prices = {
                key: Decimal(str(body[key]))
                for key in ("limit_price", "stop_price", "trail_price", "trail_percent")
                if key in body
            }
        except Exception:
            return error(422, 40010001, "qty and prices must be numbers")
        if qty <= 0:
            return error(422, 40010001, "qty must be > 0")
        client_id = str(body.get("client_order_id") or uuid.uuid4())
        if len(client_id) > 128:
            return error(422, 40010001, "client_order_id must be no more than 128 characters")
        if self.order_by_client_id(client_id) is not None:
            return error(422, 40010001, "client_order_id must be unique")
        if asset["class"] == "crypto":
            if tif not in ("gtc", "ioc"):
                return error(422, 40010001, "invalid crypto time_in_force")
        elif qty != qty.to_integral_value():
            if not asset["fractionable"]:
                return error(422, 40010001, f"asset {symbol} is not fractionable")
            if tif != "day":
                return error(422, 40010001, "fractional orders must be DAY orders")
        for key in ("limit_price", "stop_price"):
            if key in prices and asset["class"] == "us_equity":
                places = -prices[key].normalize().as_tuple().exponent
                if places > (2 if prices[key] >= 1 else 4):
                    return error(
                        422, 42210000, "sub-penny increment does not fulfill minimum pricing criteria"
                    )
        order_class = str(body.get("order_class") or "simple")
        exits: dict[str, Decimal] = {}
        if order_class != "simple":
            problem = self._advanced_problem(body, order_class, kind, tif, qty, side, prices, exits)
            if problem is not None:
                return error(422, 40010001, problem)
        if side == "buy":
            cost = qty * (prices.get("limit_price") or prices.get("stop_price") or self.prices[symbol])
            if cost > self.buying_power():
                return error(
                    403,
                    40310000,
                    "insufficient buying power",
                    buying_power=money(self.buying_power()),
                    cost_basis=money(cost),
                )
        timestamp = now_text()
        order_id = str(uuid.uuid4())
        order = {
            "id": order_id,
            "client_order_id": client_id,
            "created_at": timestamp,
            "updated_at": timestamp,
            "submitted_at": timestamp,
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)),
            "symbol": symbol,
            "asset_class": asset["class"],
            "notional": _opt(notional),
            "qty": None if notional is not None else money(qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "",
            "order_type": kind,
            "type": kind,
            "side": side,
            "position_intent": ("buy_to_open" if side == "buy" else "sell_to_close"),
            "time_in_force": tif,
            "limit_price": _opt(prices.get("limit_price")),
            "stop_price": _opt(prices.get("stop_price")),
            "status": "accepted",
            "extended_hours": False,
            "legs": None,
            "trail_percent": _opt(prices.get("trail_percent")),
            "trail_price": _opt(prices.get("trail_price")),
            "hwm": None,
        }
        if order_class != "simple":
            order["order_class"] = order_class
            order["legs"] = self._legs(order, order_class, exits)
        self.orders[order_id] = order
        answer = dict(order)
        if order["legs"]:
            answer["legs"] = [dict(leg) for leg in order["legs"]]
        order["status"] = "new"
        asyncio.get_running_loop().create_task(self._after_submit(order_id))
        return web.json_response(answer)

    def _advanced_problem(
        self,
        body: dict[str, Any],
        order_class: str,
        kind: str,
        tif: Any,
        qty: Decimal,
        side: str,
        prices: dict[str, Decimal],
        exits: dict[str, Decimal],
    ) -> str | None:
        """Alpaca's rules for order_class bracket, oto and oco; fills ``exits`` with the legs' prices."""
        if order_class not in ("bracket", "oto", "oco"):
            return f"invalid order_class {order_class}"
        if tif not in ("day", "gtc"):
            return "advanced orders must be DAY or GTC orders"
        if qty != qty.to_integral_value():
            return "fractional orders cannot be advanced orders"
        take_profit, stop_loss = body.get("take_profit"), body.get("stop_loss")
        try:
            if isinstance(take_profit, dict) and take_profit.get("limit_price") is not None:
                exits["take_profit"] = Decimal(str(take_profit["limit_price"]))
            if isinstance(stop_loss, dict) and stop_loss.get("stop_price") is not None:
                exits["stop_loss"] = Decimal(str(stop_loss["stop_price"]))
        except Exception:
            return "take_profit and stop_loss prices must be numbers"
        if order_class in ("bracket", "oco") and len(exits) != 2:
            return f"{order_class} orders require take_profit.limit_price and stop_loss.stop_price"
        if order_class == "oto" and len(exits) != 1:
            return "oto orders require exactly one of take_profit or stop_loss"
        if order_class == "oco" and kind != "limit":
            return "oco orders must be limit orders"
        if order_class == "oco":
            selling = side == "sell"
        else:
            selling = side == "buy"  # the exits of a buy sell
            base = prices.get("limit_price") or prices.get("stop_price")
            if base is not None:
                tp, sl = exits.get("take_profit"), exits.get("stop_loss")
                if tp is not None and (tp <= base if selling else tp >= base):
                    return "take_profit.limit_price must be beyond the base price"
                if sl is not None and (sl >= base if selling else sl <= base):
                    return "stop_loss.stop_price must be on the losing side of the base price"
        tp, sl = exits.get("take_profit"), exits.get("stop_loss")
        if tp is not None and sl is not None and (tp <= sl if selling else tp >= sl):
            return "take_profit.limit_price must be beyond stop_loss.stop_price"
        return None

    def _legs(
        self, parent: dict[str, Any], order_class: str, exits: dict[str, Decimal]
    ) -> list[dict[str, Any]]:
        """The exit orders Alpaca holds for ``parent``: "held" until a bracket's or OTO's entry
        fills; an OCO's stop works at once beside the limit."""
        legs = []
        exit_side = parent["side"] if order_class == "oco" else ("sell" if parent["side"] == "buy" else "buy")
        for name, price in exits.items():
            if order_class == "oco" and name == "take_profit":
                continue  # the OCO order itself is the take-profit
            leg_id = str(uuid.uuid4())
            kind = "limit" if name == "take_profit" else "stop"
            leg = {
                **parent,
                "id": leg_id,
                "client_order_id": str(uuid.uuid4()),
                "type": kind,
                "order_type": kind,
                "side": exit_side,
                "position_intent": "sell_to_close" if exit_side == "sell" else "buy_to_close",
                "limit_price": money(price) if kind == "limit" else None,
                "stop_price": money(price) if kind == "stop" else None,
                "status": "new" if order_class == "oco" else "held",
                "legs": None,
            }
            self.orders[leg_id] = leg
            self.leg_parent[leg_id] = parent["id"]
            legs.append(leg)
        return legs

    def legs_of(self, parent_id: str) -> list[dict[str, Any]]:
        return [self.orders[leg] for leg, parent in self.leg_parent.items() if parent == parent_id]

    async def _after_fill(self, order: dict[str, Any]) -> None:
        """A bracket's or OTO's filled entry releases its held legs; the first fill of an exit
        cancels the other exits of its order."""
        if order["status"] == "filled":
            for leg in self.legs_of(order["id"]):
                if leg["status"] == "held":
                    leg["status"] = "new"
                    leg["updated_at"] = now_text()
                    await self._publish("new", leg, timestamp=leg["updated_at"])
        parent_id = self.leg_parent.get(order["id"])
        if parent_id is not None:
            group = [self.orders[parent_id], *self.legs_of(parent_id)]
            if self.orders[parent_id]["order_class"] != "oco":
                group = group[1:]
        elif order.get("order_class") == "oco":
            group = [order, *self.legs_of(order["id"])]
        else:
            return
        for other in group:
            if other["id"] != order["id"] and other["status"] in OPEN_STATUSES:
                await self._finish(other["id"], "canceled", "canceled_at")

    async def _after_submit(self, order_id: str) -> None:
        order = self.orders[order_id]
        await self._publish("new", order, timestamp=order["updated_at"])
        if self.auto_fill and self._marketable(order):
            await self.fill(order_id)

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return error(404, 40410000, "order not found")
        return web.json_response(order)

    async def _by_client_id(self, request: web.Request) -> web.Response:
        order = self.order_by_client_id(request.query.get("client_order_id", ""))
        if order is None:
            return error(404, 40410000, "order not found")
        return web.json_response(order)

    async def _replace(self, request: web.Request) -> web.Response:
        """PATCH /v2/orders/{order_id}: Alpaca's replace. The answer is a new order (its own id,
        ``replaces`` naming the old one) with the fields given and the rest of the old order's;
        the old order becomes ``replaced`` (``replaced_by`` naming the new one). The stream
        sends ``replaced`` for the old order, then ``new`` for the new one."""
        old = self.orders.get(request.match_info["order_id"])
        if old is None:
            return error(404, 40410000, "order not found")
        try:
            body = await request.json()
        except ValueError:
            return error(400, 40010000, "request body format is invalid")
        if not isinstance(body, dict):
            return error(400, 40010000, "request body format is invalid")
        self.bodies.append(body)
        if old["status"] not in OPEN_STATUSES:
            return error(422, 42210000, f'order is already in "{old["status"]}" state')
        try:
            qty = Decimal(str(body.get("qty") or old["qty"]))
            prices = {key: Decimal(str(body[key])) for key in ("limit_price", "stop_price") if key in body}
        except Exception:
            return error(422, 40010001, "qty and prices must be numbers")
        if qty <= Decimal(old["filled_qty"]):
            return error(422, 40010001, "qty must be greater than the filled quantity")
        for key, value in prices.items():
            if old.get(key) is None:
                return error(422, 40010001, f"{key} cannot be set on a {old['type']} order")
            if -value.normalize().as_tuple().exponent > (2 if value >= 1 else 4):  # type: ignore[operator]
                return error(422, 42210000, "sub-penny increment does not fulfill minimum pricing criteria")
        client_id = str(body.get("client_order_id") or uuid.uuid4())
        if self.order_by_client_id(client_id) is not None:
            return error(422, 40010001, "client_order_id must be unique")
        timestamp = now_text()
        new_id = str(uuid.uuid4())
        new = {
            **old,
            "id": new_id,
            "client_order_id": client_id,
            "created_at": timestamp,
            "updated_at": timestamp,
            "submitted_at": timestamp,
            "replaces": old["id"],
            "replaced_by": None,
            "replaced_at": None,
            "qty": money(qty),
            "time_in_force": body.get("time_in_force") or old["time_in_force"],
            "status": "accepted",
            **{key: money(value) for key, value in prices.items()},
        }
        old["status"] = "replaced"
        old["replaced_at"] = timestamp
        old["replaced_by"] = new_id
        old["updated_at"] = timestamp
        self.orders[new_id] = new
        if old["id"] in self.leg_parent:
            # A replaced exit leg stays an exit of its order: it still cancels, and is cancelled
            # by, the other exits.
            self.leg_parent[new_id] = self.leg_parent[old["id"]]
        answer = dict(new)
        new["status"] = "new"
        await self._publish("replaced", old, timestamp=timestamp)
        asyncio.get_running_loop().create_task(self._after_submit(new_id))
        return web.json_response(answer)

    async def _cancel(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return error(404, 40410000, "order not found")
        if order["status"] not in OPEN_STATUSES:
            return error(422, 42210000, f'order is already in "{order["status"]}" state')
        await self._finish(order["id"], "canceled", "canceled_at")
        # Cancelling an order with exits cancels them; cancelling an exit cancels its pair.
        parent_id = self.leg_parent.get(order["id"], order["id"])
        for other in [self.orders[parent_id], *self.legs_of(parent_id)]:
            if other["status"] in OPEN_STATUSES:
                await self._finish(other["id"], "canceled", "canceled_at")
        return web.Response(status=204)

    async def _cancel_all(self, request: web.Request) -> web.Response:
        answers = []
        for order in list(self.orders.values()):
            if order["status"] in OPEN_STATUSES:
                await self._finish(order["id"], "canceled", "canceled_at")
                answers.append({"id": order["id"], "status": 200, "body": None})
        return web.json_response(answers, status=207)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if not self.stream_online:
            return web.Response(status=503, text="stream offline")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        authorized = False
        try:
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    data = json.loads(message.data)
                except ValueError:
                    await ws.send_bytes(
                        json.dumps({"action": "error", "data": {"error_message": "invalid syntax"}}).encode()
                    )
                    break
                action = data.get("action")
                if action in ("authenticate", "auth"):
                    self.stream_auth_attempts += 1
                    inner = data.get("data") or {}
                    key = inner.get("key_id") or data.get("key")
                    secret = inner.get("secret_key") or data.get("secret")
                    authorized = (
                        key == self.api_key and secret == self.secret_key and not self.stream_refuses_auth
                    )
                    status = "authorized" if authorized else "unauthorized"
                    await ws.send_bytes(
                        json.dumps(
                            {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
                        ).encode()
                    )
                    if not authorized:
                        break
                elif action == "listen":
                    if not authorized:
                        await ws.send_bytes(
                            json.dumps(
                                {
                                    "stream": "authorization",
                                    "data": {"status": "unauthorized", "action": "listen"},
                                }
                            ).encode()
                        )
                        break
                    streams = [s for s in (data.get("data") or {}).get("streams", []) if s == "trade_updates"]
                    if streams:
                        self.listening.add(ws)
                        self._listen_changed.set()
                    else:
                        self.listening.discard(ws)
                    await ws.send_bytes(
                        json.dumps({"stream": "listening", "data": {"streams": streams}}).encode()
                    )
        finally:
            self.sockets.discard(ws)
            self.listening.discard(ws)
        return ws

    async def _publish(self, event: str, order: dict[str, Any], **extra: Any) -> None:
        message = {"stream": "trade_updates", "data": {"event": event, "order": dict(order), **extra}}
        self.sent_updates.append(message)
        frame = json.dumps(message).encode()  # binary frames, as the paper endpoint sends
        for ws in list(self.listening):
            with contextlib.suppress(Exception):
                await ws.send_bytes(frame)

    async def _finish(self, order_id: str, status: str, stamp: str) -> None:
        order = self.orders[order_id]
        timestamp = now_text()
        order["status"] = status
        order[stamp] = timestamp
        order["updated_at"] = timestamp
        await self._publish(status, order, timestamp=timestamp)

    def _book(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> PeerPosition:
        position = self.positions.setdefault(symbol, PeerPosition())
        signed = qty if side == "buy" else -qty
        new_qty = position.qty + signed
        if position.qty == 0 or (position.qty > 0) == (signed > 0):
            position.avg = (position.avg * abs(position.qty) + price * qty) / abs(new_qty)
        elif new_qty != 0 and (new_qty > 0) != (position.qty > 0):
            position.avg = price
        position.qty = new_qty
        self.cash -= signed * price
        return position

    def _reference_price(self, order: dict[str, Any]) -> Decimal:
        for key in ("limit_price", "stop_price"):
            if order.get(key):
                return Decimal(order[key])
        return self.prices[order["symbol"]]

    def _fill_price(self, order: dict[str, Any]) -> Decimal:
        if order["type"] in ("limit", "stop_limit") and order.get("limit_price"):
            return Decimal(order["limit_price"])
        return self.prices[order["symbol"]]

    def _marketable(self, order: dict[str, Any]) -> bool:
        price = self.prices[order["symbol"]]
        if order["type"] == "market":
            return True
        if order["type"] == "limit":
            limit = Decimal(order["limit_price"])
            return price <= limit if order["side"] == "buy" else price >= limit
        return False


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text)


# Registered under short names; the function names differ so that importing them into a test
# module does not shadow the test functions' arguments.
KEYRING_SERVICE = "trading-console"


@pytest.fixture(name="peer")
async def alpaca_peer_fixture():
    peer = await AlpacaPeer().start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(name="keys")
def alpaca_keys_fixture(memory_keyring):
    """The peer's keys in the (in-memory) keyring, for the account ``AlpacaPeer.settings()`` names."""
    memory_keyring.set_password(KEYRING_SERVICE, "alpaca-test:api_key", API_KEY)
    memory_keyring.set_password(KEYRING_SERVICE, "alpaca-test:secret_key", SECRET_KEY)
    return memory_keyring


@pytest.fixture(name="broker")
async def alpaca_broker_fixture(peer, keys):
    """An AlpacaBroker connected to ``peer``; ``broker.events`` receives its updates."""
    from brokers.adapters.alpaca import AlpacaBroker
    from brokers.registry import BrokerFactory

    adapter = BrokerFactory.create(peer.settings())
    assert isinstance(adapter, AlpacaBroker)
    adapter.events = adapter.subscribe()  # type: ignore[attr-defined]
    await adapter.connect()
    try:
        yield adapter
    finally:
        await adapter.disconnect()


async def next_event(broker, want, within: float = 3.0):
    """The next event on ``broker.events`` for which ``want(event)`` holds."""
    async with asyncio.timeout(within):
        while True:
            event = await broker.events.get()
            if want(event):
                return event
