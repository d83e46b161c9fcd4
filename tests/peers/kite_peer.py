"""A Kite Connect v3 server on 127.0.0.1 for adapter tests.

It speaks the wire protocol the real ``kiteconnect`` client expects: ``X-Kite-Version: 3``,
``Authorization: token api_key:access_token``, form-encoded order placement, and every answer in
the ``{"status": "success", "data": ...}`` / ``{"status": "error", "message", "error_type"}``
envelope with the HTTP status Kite uses. Behind it sits a small order book with the day's orders
(each with its status history), trades, net positions, holdings and margins.

Tests steer it: the next order can be filled, partly filled, left open, rejected by RMS, refused
with an error envelope, or accepted with the answer lost; a working order can be modified as
Kite's own app would; any endpoint can fail once with a given error, answers can be delayed, open
connections dropped, and the listener stopped and restarted on the same port.

GTT triggers (``/gtt/triggers``) are kept as Kite keeps them: a placement is checked as Kite
checks it (a two-leg trigger needs the last price between its trigger values), answered with the
body of kiteconnect-mocks' ``gtt_place_order.json`` (and ``gtt_modify_order.json``,
``gtt_delete_order.json``) under the new trigger id, and listed in the shape of
``gtt_get_order.json``. A price that crosses a trigger value places that leg's LIMIT order in the
book and leaves the trigger ``triggered``, as Kite does; tests may also set a trigger's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

IST = timezone(timedelta(hours=5, minutes=30))
KITE_TIME = "%Y-%m-%d %H:%M:%S"
PRE_OPEN_STATUSES = ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING")
WORKING_STATUSES = {"OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED", *PRE_OPEN_STATUSES}
TICK = Decimal("0.05")
# kiteconnect-mocks' GTT bodies (copied verbatim from the shared broker payloads).
GTT_FIXTURES = Path(__file__).resolve().parent.parent / "adapters" / "fixtures" / "zerodha"

DEFAULT_PRICES = {
    "NSE:INFY": Decimal("1500"),
    "NSE:RELIANCE": Decimal("2500"),
    "NSE:SBIN": Decimal("800"),
    "BSE:INFY": Decimal("1500.5"),
    "NFO:NIFTY24DECFUT": Decimal("24000"),
    "MCX:GOLDM24DECFUT": Decimal("76000"),
}
DEFAULT_HOLDINGS = (
    {
        "tradingsymbol": "TCS",
        "exchange": "NSE",
        "isin": "INE467B01029",
        "quantity": 4,
        "t1_quantity": 1,
        "average_price": 3300.0,
        "last_price": 3500.0,
        "close_price": 3490.0,
    },
)


def kite_time(when: datetime) -> str:
    return when.astimezone(IST).strftime(KITE_TIME)


def _num(value: Decimal) -> float | int:
    """Kite sends plain JSON numbers; whole values come as integers."""
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass
class Plan:
    """What the peer does with the next order it receives."""

    kind: str  # fill | partial | rest | reject | error | accept_then_drop | drop | delay
    quantity: int | None = None
    price: Decimal | None = None
    message: str = ""
    error_type: str = "InputException"
    http_status: int = 400
    seconds: float = 0.0


@dataclass
class Failure:
    """One scripted failure of an endpoint: an error envelope, a dropped connection or a delay."""

    method: str
    path_prefix: str
    kind: str = "error"  # error | drop | delay | html
    error_type: str = "GeneralException"
    http_status: int = 500
    message: str = "Something went wrong"
    seconds: float = 0.0
    times: int = 1


@dataclass
class PeerOrder:
    order_id: str
    variety: str
    exchange: str
    tradingsymbol: str
    transaction_type: str
    order_type: str
    product: str
    validity: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    tag: str | None
    market_protection: int
    placed_at: datetime
    status: str = "PUT ORDER REQ RECEIVED"
    status_message: str | None = None
    exchange_order_id: str | None = None
    filled_quantity: int = 0
    filled_value: Decimal = Decimal(0)
    cancelled_quantity: int = 0
    updated_at: datetime | None = None
    modified: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pending_quantity(self) -> int:
        if self.status in ("COMPLETE", "CANCELLED", "REJECTED"):
            return 0 if self.status != "CANCELLED" else self.quantity - self.filled_quantity
        return self.quantity - self.filled_quantity

    @property
    def working(self) -> bool:
        return self.status in WORKING_STATUSES

    @property
    def average_price(self) -> Decimal:
        return (self.filled_value / self.filled_quantity) if self.filled_quantity else Decimal(0)

    def payload(self) -> dict[str, Any]:
        exchange_time = kite_time(self.updated_at) if self.exchange_order_id and self.updated_at else None
        return {
            "account_id": "",
            "placed_by": "PEER01",
            "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id,
            "parent_order_id": None,
            "status": self.status,
            "status_message": self.status_message,
            "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.placed_at),
            "exchange_update_timestamp": exchange_time,
            "exchange_timestamp": exchange_time,
            "variety": self.variety,
            "modified": self.modified,
            "exchange": self.exchange,
            "tradingsymbol": self.tradingsymbol,
            "instrument_token": instrument_token(self.exchange, self.tradingsymbol),
            "order_type": self.order_type,
            "transaction_type": self.transaction_type,
            "validity": self.validity,
            "validity_ttl": 0,
            "product": self.product,
            "quantity": self.quantity,
            "disclosed_quantity": 0,
            "price": _num(self.price),
            "trigger_price": _num(self.trigger_price),
            "average_price": _num(self.average_price.quantize(Decimal("0.01"))),
            "filled_quantity": self.filled_quantity,
            "pending_quantity": self.pending_quantity,
            "cancelled_quantity": self.cancelled_quantity,
            "market_protection": self.market_protection,
            "meta": {},
            "tag": self.tag,
            "tags": [self.tag] if self.tag else None,
            "guid": f"peer-{self.order_id}",
        }


# The segment Kite keeps in an instrument token's low byte (KiteTicker reads prices by it).
SEGMENTS = {"NSE": 1, "NFO": 2, "CDS": 3, "BSE": 4, "BFO": 5, "BCD": 6, "MCX": 7}


def instrument_token(exchange: str, tradingsymbol: str) -> int:
    # Stable across runs, unlike hash(); the segment in the low byte as in Kite's own tokens.
    serial = sum((i + 1) * ord(ch) for i, ch in enumerate(f"{exchange}:{tradingsymbol}")) * 97
    return serial << 8 | SEGMENTS.get(exchange, 1)


def depth_levels(best: Decimal, step: Decimal, sign: int) -> list[dict[str, Any]]:
    """Five levels of one side of the book from its best price, as Kite's quote and ticks give them."""
    return [
        {"price": _num(best + sign * step * i), "quantity": 10 * (i + 1), "orders": i + 1} for i in range(5)
    ]


def envelope(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def error(http_status: int, error_type: str, message: str) -> web.Response:
    return web.json_response(
        {"status": "error", "message": message, "data": None, "error_type": error_type}, status=http_status
    )


class KitePeer:
    """The server and its book. ``await start()`` / ``await stop()``; ``root`` for ``KiteConnect``."""

    def __init__(
        self,
        *,
        api_key: str = "peerkey01",
        access_token: str = "peertoken0123456789",
        cash: Decimal = Decimal("500000"),
        prices: dict[str, Decimal] | None = None,
    ) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.cash = cash
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self.holdings = [dict(h) for h in DEFAULT_HOLDINGS]
        self.orders: dict[str, PeerOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.form_posts: list[dict[str, str]] = []
        self.modify_puts: list[dict[str, str]] = []  # PUT /orders/{variety}/{order_id} bodies
        self.plans: deque[Plan] = deque()
        self.failures: list[Failure] = []
        self.delay = 0.0
        self.down = False
        self.fixtures: dict[tuple[str, str], tuple[int, Any]] = {}
        self.gtts: dict[int, dict[str, Any]] = {}
        self.gtt_posts: list[dict[str, str]] = []  # POST /gtt/triggers bodies
        self.gtt_puts: list[dict[str, str]] = []  # PUT /gtt/triggers/{id} bodies, with "trigger_id"
        self.gtt_deletes: list[int] = []
        self.gtt_failure: str | None = None  # the next triggered leg's order is refused with this
        self.gtt_lose_answer = False  # the next trigger is made, and its answer lost
        self._gtt_ids = itertools.count(105100)
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/user/profile", self._profile)
        app.router.add_get("/user/margins", self._margins)
        app.router.add_get("/user/margins/{segment}", self._margins)
        app.router.add_post("/orders/{variety}", self._place)
        app.router.add_put("/orders/{variety}/{order_id}", self._modify_request)
        app.router.add_delete("/orders/{variety}/{order_id}", self._cancel)
        app.router.add_get("/orders", self._orders)
        app.router.add_get("/orders/{order_id}", self._order_history)
        app.router.add_get("/orders/{order_id}/trades", self._order_trades)
        app.router.add_get("/trades", self._trades)
        app.router.add_get("/portfolio/positions", self._positions)
        app.router.add_get("/portfolio/holdings", self._holdings)
        app.router.add_get("/quote/ltp", self._ltp)
        app.router.add_get("/quote", self._quote)
        app.router.add_post("/gtt/triggers", self._gtt_place)
        app.router.add_get("/gtt/triggers", self._gtt_list)
        app.router.add_get("/gtt/triggers/{trigger_id}", self._gtt_info)
        app.router.add_put("/gtt/triggers/{trigger_id}", self._gtt_modify)
        app.router.add_delete("/gtt/triggers/{trigger_id}", self._gtt_delete)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await self.start_listening()

    async def start_listening(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop_listening(self) -> None:
        """Refuse new connections and cut the open ones, as a server that went away would."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self.drop_connections()

    def drop_connections(self) -> None:
        server = self._runner.server if self._runner else None
        for handler in list(getattr(server, "connections", ()) or ()):
            transport = handler.transport
            if transport is not None:
                transport.abort()

    async def stop(self) -> None:
        if self._runner is not None:
            self.drop_connections()
            await self._runner.cleanup()
            self._runner = None

    # -- steering -------------------------------------------------------------------------
    def plan(self, kind: str, **details: Any) -> None:
        self.plans.append(Plan(kind, **details))

    def fail(self, method: str, path_prefix: str, **details: Any) -> None:
        self.failures.append(Failure(method.upper(), path_prefix, **details))

    def expire_token(self) -> None:
        self.access_token = "expired-" + self.access_token

    def set_price(self, instrument: str, price: Decimal | str | int) -> None:
        self.prices[instrument] = Decimal(str(price))
        for order in list(self.orders.values()):
            if f"{order.exchange}:{order.tradingsymbol}" == instrument:
                self._match(order)
        for gtt in list(self.gtts.values()):
            condition = gtt["condition"]
            if (
                gtt["status"] == "active"
                and f"{condition['exchange']}:{condition['tradingsymbol']}" == instrument
            ):
                self._gtt_cross(gtt, self.prices[instrument])

    def set_gtt_status(self, trigger_id: int, status: str) -> None:
        """A trigger's status changed at Kite (disabled, expired, an undocumented one, ...)."""
        self.gtts[trigger_id]["status"] = status
        self.gtts[trigger_id]["updated_at"] = kite_time(datetime.now(UTC))

    def fill(self, order_id: str, quantity: int | None = None, price: Decimal | None = None) -> None:
        order = self.orders[order_id]
        assert order.working, f"order {order_id} is {order.status}"
        self._execute(order, quantity or order.quantity - order.filled_quantity, price)

    def modify(
        self, order_id: str, *, quantity: int | None = None, price: Decimal | str | None = None
    ) -> None:
        """A change made outside the adapter (Kite's web app, another program). The history shows
        it as kiteconnect-mocks' order_info does: MODIFY VALIDATION PENDING, MODIFY PENDING,
        MODIFIED, then the order again with its new values."""
        order = self.orders[order_id]
        assert order.working, f"order {order_id} is {order.status}"
        resumed = order.status
        for status in ("MODIFY VALIDATION PENDING", "MODIFY PENDING", "MODIFIED"):
            self._set_status(order, status)
        if quantity is not None:
            assert quantity > order.filled_quantity
            order.quantity = quantity
        if price is not None:
            order.price = Decimal(str(price))
        order.modified = True
        self._set_status(order, resumed)
        self._match(order)

    def exchange_cancel(self, order_id: str, message: str | None = None) -> None:
        """The exchange drops what is left of an order (IOC remainder, end of day)."""
        order = self.orders[order_id]
        order.cancelled_quantity = order.quantity - order.filled_quantity
        self._set_status(order, "CANCELLED", message)

    def order_by_tag(self, tag: str) -> PeerOrder | None:
        return next((o for o in self.orders.values() if o.tag == tag), None)

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    def serve_fixture(self, method: str, path: str, document: Any, http_status: int = 200) -> None:
        """Answer ``method path`` with a stored document (a full envelope) instead of the book."""
        self.fixtures[(method.upper(), path)] = (http_status, document)

    # -- HTTP plumbing --------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.down:
            return self._abort(request)
        failure = self._take_failure(request)
        if failure is not None:
            if failure.kind == "drop":
                return self._abort(request)
            if failure.kind == "delay":
                await asyncio.sleep(failure.seconds)
            elif failure.kind == "html":
                return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")
            else:
                return error(failure.http_status, failure.error_type, failure.message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("X-Kite-Version") != "3":
            return error(400, "InputException", "Invalid or missing X-Kite-Version header.")
        if request.headers.get("Authorization") != f"token {self.api_key}:{self.access_token}":
            return error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        canned = self.fixtures.get((request.method, request.path))
        if canned is not None:
            http_status, document = canned
            return web.json_response(document, status=http_status)
        return await handler(request)

    def _take_failure(self, request: web.Request) -> Failure | None:
        for failure in self.failures:
            if failure.method == request.method and request.path.startswith(failure.path_prefix):
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure
        return None

    @staticmethod
    def _abort(request: web.Request) -> web.Response:
        # No answer at all: the client sees the connection reset mid-call.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    # -- handlers -------------------------------------------------------------------------
    async def _profile(self, request: web.Request) -> web.Response:
        return envelope(
            {
                "user_id": "PEER01",
                "user_type": "individual",
                "email": "peer@example.invalid",
                "user_name": "Peer Trader",
                "user_shortname": "Peer",
                "broker": "ZERODHA",
                "exchanges": ["NSE", "BSE", "NFO", "MCX"],
                "products": ["CNC", "NRML", "MIS"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "avatar_url": None,
                "meta": {"demat_consent": "physical"},
            }
        )

    async def _place(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.form_posts.append(form)
        plan = self.plans.popleft() if self.plans else None
        if plan is not None and plan.kind == "drop":
            return self._abort(request)
        if plan is not None and plan.kind == "delay":
            await asyncio.sleep(plan.seconds)
        if plan is not None and plan.kind == "error":
            return error(plan.http_status, plan.error_type, plan.message)
        variety = request.match_info["variety"]
        refusal = self._validate(variety, form)
        if refusal is not None:
            return refusal
        order = PeerOrder(
            order_id=f"2412{next(self._ids):011d}",
            variety=variety,
            exchange=form["exchange"],
            tradingsymbol=form["tradingsymbol"],
            transaction_type=form["transaction_type"],
            order_type=form["order_type"],
            product=form["product"],
            validity=form.get("validity", "DAY"),
            quantity=int(form["quantity"]),
            price=Decimal(form.get("price", "0")),
            trigger_price=Decimal(form.get("trigger_price", "0")),
            tag=form.get("tag"),
            market_protection=int(form.get("market_protection", "0")),
            placed_at=datetime.now(UTC),
        )
        self.orders[order.order_id] = order
        for status in PRE_OPEN_STATUSES[:2]:
            self._set_status(order, status)
        self._route(order, plan)
        if plan is not None and plan.kind == "accept_then_drop":
            return self._abort(request)
        return envelope({"order_id": order.order_id})

    def _validate(self, variety: str, form: dict[str, str]) -> web.Response | None:
        if variety not in ("regular", "amo", "co", "iceberg", "auction"):
            return error(400, "InputException", "Invalid `variety`.")
        for key in ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"):
            if not form.get(key):
                return error(400, "InputException", f"Missing `{key}`.")
        instrument = f"{form['exchange']}:{form['tradingsymbol']}"
        if instrument not in self.prices:
            return error(400, "InputException", "Invalid `tradingsymbol`.")
        if form["transaction_type"] not in ("BUY", "SELL"):
            return error(400, "InputException", "Invalid `transaction_type`.")
        if form["order_type"] not in ("MARKET", "LIMIT", "SL", "SL-M"):
            return error(400, "InputException", "Invalid `order_type`.")
        if form["product"] not in ("CNC", "MIS", "NRML"):
            return error(400, "InputException", "Invalid `product`.")
        if form["product"] == "CNC" and form["exchange"] not in ("NSE", "BSE"):
            return error(400, "InputException", "CNC orders are allowed only for equity.")
        if form.get("validity", "DAY") not in ("DAY", "IOC", "TTL"):
            return error(400, "InputException", "Invalid `validity`.")
        if not form["quantity"].isdigit() or int(form["quantity"]) <= 0:
            return error(400, "InputException", "Invalid `quantity`.")
        tag = form.get("tag")
        if tag is not None and (len(tag) > 20 or not tag.isalnum()):
            return error(400, "InputException", "Invalid `tag`. Tag should be alphanumeric and max 20 chars.")
        needs_price = form["order_type"] in ("LIMIT", "SL")
        needs_trigger = form["order_type"] in ("SL", "SL-M")
        for key, needed in (("price", needs_price), ("trigger_price", needs_trigger)):
            value = form.get(key)
            if needed and not value:
                return error(400, "InputException", f"Missing `{key}`.")
            if value:
                amount = Decimal(value)
                if amount <= 0 or amount % TICK:
                    return error(
                        400,
                        "InputException",
                        f"Tick size for this script is {TICK}. Kindly enter {key.replace('_', ' ')} "
                        "in the multiple of tick size for this script.",
                    )
        protection = form.get("market_protection")
        if protection is not None and not (
            protection == "-1" or protection.isdigit() and int(protection) <= 100
        ):
            return error(400, "InputException", "Invalid `market_protection`.")
        if form["order_type"] in ("MARKET", "SL-M") and protection in (None, "0"):
            return error(
                400,
                "InputException",
                "Market orders without market protection are not allowed via "
                "API. Please set market protection or use a Limit order.",
            )
        return None

    def _route(self, order: PeerOrder, plan: Plan | None) -> None:
        if plan is not None and plan.kind == "reject":
            self._set_status(order, "REJECTED", plan.message or "RMS: rule violated")
            return
        required, available = self._required_margin(order), self._available(excluding=order)
        if order.transaction_type == "BUY" and required > available:
            self._set_status(
                order,
                "REJECTED",
                f"Insufficient funds. Required margin is {required:.2f} but available margin is "
                f"{available:.2f}. Check the orderbook for open orders.",
            )
            return
        if order.variety == "amo":
            self._set_status(order, "AMO REQ RECEIVED")
            return
        self._set_status(order, "OPEN PENDING")
        order.exchange_order_id = f"1100{order.order_id[-12:]}"
        self._set_status(order, "TRIGGER PENDING" if order.order_type in ("SL", "SL-M") else "OPEN")
        if plan is not None and plan.kind == "partial":
            self._execute(order, plan.quantity or max(1, order.quantity // 2), plan.price)
        elif plan is not None and plan.kind == "fill":
            self._execute(order, order.quantity, plan.price)
        elif plan is None or plan.kind not in ("rest",):
            self._match(order)

    def _match(self, order: PeerOrder) -> None:
        if not order.working or order.status == "AMO REQ RECEIVED":
            return
        last = self.prices[f"{order.exchange}:{order.tradingsymbol}"]
        buy = order.transaction_type == "BUY"
        if order.status == "TRIGGER PENDING":
            if (last >= order.trigger_price) if buy else (last <= order.trigger_price):
                self._set_status(order, "OPEN")
            else:
                return
        if order.order_type in ("MARKET", "SL-M"):
            self._execute(order, order.quantity - order.filled_quantity, last)
        elif (last <= order.price) if buy else (last >= order.price):
            self._execute(order, order.quantity - order.filled_quantity, last)
        elif order.validity == "IOC":
            self.exchange_cancel(order.order_id)

    def _execute(self, order: PeerOrder, quantity: int, price: Decimal | None) -> None:
        quantity = min(quantity, order.quantity - order.filled_quantity)
        price = price if price is not None else self.prices[f"{order.exchange}:{order.tradingsymbol}"]
        now = datetime.now(UTC)
        order.filled_quantity += quantity
        order.filled_value += price * quantity
        self.trades.append(
            {
                "trade_id": f"{next(self._trade_ids) + 50_000_000}",
                "order_id": order.order_id,
                "exchange": order.exchange,
                "tradingsymbol": order.tradingsymbol,
                "instrument_token": instrument_token(order.exchange, order.tradingsymbol),
                "product": order.product,
                "average_price": _num(price),
                "quantity": quantity,
                "exchange_order_id": order.exchange_order_id,
                "transaction_type": order.transaction_type,
                "fill_timestamp": kite_time(now),
                "order_timestamp": now.astimezone(IST).strftime("%H:%M:%S"),
                "exchange_timestamp": kite_time(now),
            }
        )
        self._set_status(order, "COMPLETE" if order.filled_quantity == order.quantity else "OPEN")

    def _set_status(self, order: PeerOrder, status: str, message: str | None = None) -> None:
        order.status = status
        order.status_message = message
        order.updated_at = datetime.now(UTC)
        order.history.append(order.payload())

    async def _modify_request(self, request: web.Request) -> web.Response:
        """PUT /orders/{variety}/{order_id}: Kite's modify. The answer is the order id (as in
        kiteconnect-mocks' order_modify.json); the history shows MODIFY VALIDATION PENDING,
        MODIFY PENDING, MODIFIED, then the order again with its new values."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.modify_puts.append(form)
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return error(404, "GeneralException", "Couldn't find that `order_id`.")
        if not order.working:
            verb = {"COMPLETE": "completed", "CANCELLED": "cancelled", "REJECTED": "rejected"}[order.status]
            return error(400, "InputException", f"Order cannot be modified as it is {verb}.")
        quantity = form.get("quantity")
        if quantity is not None and (not quantity.isdigit() or int(quantity) <= order.filled_quantity):
            return error(400, "InputException", "Invalid `quantity`.")
        for key in ("price", "trigger_price"):
            value = form.get(key)
            if value and (Decimal(value) <= 0 or Decimal(value) % TICK):
                return error(
                    400,
                    "InputException",
                    f"Tick size for this script is {TICK}. Kindly enter {key.replace('_', ' ')} "
                    "in the multiple of tick size for this script.",
                )
        if form.get("validity") is not None:
            order.validity = form["validity"]
        if form.get("trigger_price"):
            order.trigger_price = Decimal(form["trigger_price"])
        self.modify(
            order.order_id,
            quantity=int(quantity) if quantity is not None else None,
            price=form.get("price") or None,
        )
        return envelope({"order_id": order.order_id})

    async def _cancel(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return error(404, "GeneralException", "Couldn't find that `order_id`.")
        if not order.working:
            verb = {"COMPLETE": "completed", "CANCELLED": "cancelled", "REJECTED": "rejected"}[order.status]
            return error(400, "InputException", f"Order cannot be cancelled as it is {verb}.")
        order.cancelled_quantity = order.quantity - order.filled_quantity
        self._set_status(order, "CANCELLED")
        return envelope({"order_id": order.order_id})

    async def _orders(self, request: web.Request) -> web.Response:
        return envelope([order.payload() for order in self.orders.values()])

    async def _order_history(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return error(404, "GeneralException", "Couldn't find that `order_id`.")
        return envelope(order.history)

    async def _order_trades(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        return envelope([t for t in self.trades if t["order_id"] == order_id])

    async def _trades(self, request: web.Request) -> web.Response:
        return envelope(list(self.trades))

    async def _ltp(self, request: web.Request) -> web.Response:
        data = {}
        for instrument in request.query.getall("i", []):
            if instrument in self.prices:
                exchange, _, symbol = instrument.partition(":")
                data[instrument] = {
                    "instrument_token": instrument_token(exchange, symbol),
                    "last_price": _num(self.prices[instrument]),
                }
        return envelope(data)

    async def _quote(self, request: web.Request) -> web.Response:
        """GET /quote: the full quote (last, OHLC with the previous close, five levels of depth,
        the exchange's timestamp in IST) of each instrument the peer prices."""
        data = {}
        for instrument in request.query.getall("i", []):
            if instrument not in self.prices:
                continue
            exchange, _, symbol = instrument.partition(":")
            last = self.prices[instrument]
            data[instrument] = {
                "instrument_token": instrument_token(exchange, symbol),
                "timestamp": kite_time(datetime.now(UTC)),
                "last_trade_time": kite_time(datetime.now(UTC)),
                "last_price": _num(last),
                "last_quantity": 5,
                "volume": 7360198,
                "ohlc": {"open": _num(last), "high": _num(last), "low": _num(last), "close": _num(last - 10)},
                "depth": {
                    "buy": depth_levels(last - TICK, TICK, -1),
                    "sell": depth_levels(last + TICK, TICK, 1),
                },
            }
        return envelope(data)

    async def _positions(self, request: web.Request) -> web.Response:
        rows = self._position_rows()
        return envelope({"net": rows, "day": rows})

    async def _holdings(self, request: web.Request) -> web.Response:
        rows = []
        for holding in self.holdings:
            quantity = holding["quantity"] + holding["t1_quantity"]
            rows.append(
                {
                    **holding,
                    "instrument_token": instrument_token(holding["exchange"], holding["tradingsymbol"]),
                    "product": "CNC",
                    "price": 0,
                    "used_quantity": 0,
                    "realised_quantity": holding["quantity"],
                    "authorised_quantity": 0,
                    "authorised_date": "2024-12-09 00:00:00",
                    "opening_quantity": quantity,
                    "collateral_quantity": 0,
                    "collateral_type": "",
                    "discrepancy": False,
                    "pnl": round((holding["last_price"] - holding["average_price"]) * quantity, 2),
                    "day_change": round(holding["last_price"] - holding["close_price"], 2),
                    "day_change_percentage": round(
                        (holding["last_price"] - holding["close_price"]) / holding["close_price"] * 100, 4
                    ),
                }
            )
        return envelope(rows)

    async def _margins(self, request: web.Request) -> web.Response:
        equity = self._segment(self.cash, self._debits())
        commodity = self._segment(Decimal(0), Decimal(0))
        segment = request.match_info.get("segment")
        if segment == "equity":
            return envelope(equity)
        if segment == "commodity":
            return envelope(commodity)
        if segment:
            return error(400, "InputException", "Invalid segment.")
        return envelope({"equity": equity, "commodity": commodity})

    # -- book keeping ---------------------------------------------------------------------
    def _position_rows(self) -> list[dict[str, Any]]:
        books: dict[tuple[str, str, str], dict[str, Decimal]] = {}
        for trade in self.trades:
            key = (trade["exchange"], trade["tradingsymbol"], trade["product"])
            book = books.setdefault(
                key, {"bq": Decimal(0), "bv": Decimal(0), "sq": Decimal(0), "sv": Decimal(0)}
            )
            value = Decimal(str(trade["average_price"])) * trade["quantity"]
            side = "b" if trade["transaction_type"] == "BUY" else "s"
            book[side + "q"] += trade["quantity"]
            book[side + "v"] += value
        rows = []
        for (exchange, symbol, product), b in books.items():
            last = self.prices[f"{exchange}:{symbol}"]
            quantity = b["bq"] - b["sq"]
            buy_price = b["bv"] / b["bq"] if b["bq"] else Decimal(0)
            sell_price = b["sv"] / b["sq"] if b["sq"] else Decimal(0)
            average = buy_price if quantity > 0 else sell_price if quantity < 0 else Decimal(0)
            pnl = b["sv"] - b["bv"] + quantity * last
            unrealised = (last - average) * quantity if quantity else Decimal(0)
            rows.append(
                {
                    "tradingsymbol": symbol,
                    "exchange": exchange,
                    "instrument_token": instrument_token(exchange, symbol),
                    "product": product,
                    "quantity": _num(quantity),
                    "overnight_quantity": 0,
                    "multiplier": 1,
                    "average_price": _num(average.quantize(Decimal("0.01"))),
                    "close_price": 0,
                    "last_price": _num(last),
                    "value": _num(b["sv"] - b["bv"]),
                    "pnl": _num(pnl.quantize(Decimal("0.01"))),
                    "m2m": _num(pnl.quantize(Decimal("0.01"))),
                    "unrealised": _num(unrealised.quantize(Decimal("0.01"))),
                    "realised": _num((pnl - unrealised).quantize(Decimal("0.01"))),
                    "buy_quantity": _num(b["bq"]),
                    "buy_price": _num(buy_price.quantize(Decimal("0.01"))),
                    "buy_value": _num(b["bv"]),
                    "buy_m2m_value": _num(b["bv"]),
                    "sell_quantity": _num(b["sq"]),
                    "sell_price": _num(sell_price.quantize(Decimal("0.01"))),
                    "sell_value": _num(b["sv"]),
                    "sell_m2m_value": _num(b["sv"]),
                    "day_buy_quantity": _num(b["bq"]),
                    "day_buy_price": _num(buy_price.quantize(Decimal("0.01"))),
                    "day_buy_value": _num(b["bv"]),
                    "day_sell_quantity": _num(b["sq"]),
                    "day_sell_price": _num(sell_price.quantize(Decimal("0.01"))),
                    "day_sell_value": _num(b["sv"]),
                }
            )
        return rows

    def _required_margin(self, order: PeerOrder) -> Decimal:
        price = order.price or self.prices[f"{order.exchange}:{order.tradingsymbol}"]
        if order.exchange not in ("NSE", "BSE"):
            return price * order.quantity * Decimal("0.15")  # roughly SPAN plus exposure on futures
        leverage = Decimal(5) if order.product == "MIS" else Decimal(1)
        return price * order.quantity / leverage

    def _debits(self, excluding: PeerOrder | None = None) -> Decimal:
        spent = sum(
            (
                Decimal(str(t["average_price"]))
                * t["quantity"]
                * (1 if t["transaction_type"] == "BUY" else -1)
                for t in self.trades
            ),
            Decimal(0),
        )
        blocked = sum(
            (
                self._required_margin(o) * (o.quantity - o.filled_quantity) / o.quantity
                for o in self.orders.values()
                if o.working and o.transaction_type == "BUY" and o is not excluding
            ),
            Decimal(0),
        )
        return max(Decimal(0), spent) + blocked

    def _available(self, excluding: PeerOrder | None = None) -> Decimal:
        return self.cash - self._debits(excluding)

    @staticmethod
    def _segment(cash: Decimal, debits: Decimal) -> dict[str, Any]:
        return {
            "enabled": True,
            "net": _num(cash - debits),
            "available": {
                "adhoc_margin": 0,
                "cash": _num(cash),
                "opening_balance": _num(cash),
                "live_balance": _num(cash - debits),
                "collateral": 0,
                "intraday_payin": 0,
            },
            "utilised": {
                "debits": _num(debits),
                "exposure": 0,
                "m2m_realised": 0,
                "m2m_unrealised": 0,
                "option_premium": 0,
                "payout": 0,
                "span": 0,
                "holding_sales": 0,
                "turnover": 0,
                "liquid_collateral": 0,
                "stock_collateral": 0,
                "delivery": 0,
            },
        }

    # -- GTT triggers ---------------------------------------------------------------------
    def _gtt_form(
        self, form: dict[str, str], *, last_check: bool
    ) -> tuple[dict[str, Any], list[Any]] | web.Response:
        kind = form.get("type")
        if kind not in ("single", "two-leg"):
            return error(400, "InputException", "Invalid `type`.")
        try:
            condition = json.loads(form["condition"])
            orders = json.loads(form["orders"])
        except (KeyError, ValueError):
            return error(400, "InputException", "Invalid `condition` or `orders`.")
        for key in ("exchange", "tradingsymbol", "trigger_values", "last_price"):
            if key not in condition:
                return error(400, "InputException", f"Missing `{key}` in condition.")
        instrument = f"{condition['exchange']}:{condition['tradingsymbol']}"
        if instrument not in self.prices:
            return error(400, "InputException", "Invalid `tradingsymbol`.")
        triggers = [Decimal(str(v)) for v in condition["trigger_values"]]
        if len(triggers) != (2 if kind == "two-leg" else 1) or len(orders) != len(triggers):
            return error(400, "InputException", "Invalid number of `trigger_values` or `orders`.")
        last = Decimal(str(condition["last_price"]))
        if kind == "two-leg" and last_check and not (triggers[0] < last < triggers[1]):
            return error(
                400, "InputException", "The last price should lie between the lower and upper trigger prices."
            )
        if kind == "single" and last_check and triggers[0] == last:
            return error(400, "InputException", "Trigger price should not be equal to the last price.")
        for order in orders:
            if order.get("transaction_type") not in ("BUY", "SELL"):
                return error(400, "InputException", "Invalid `transaction_type`.")
            if order.get("order_type") != "LIMIT":
                return error(400, "InputException", "GTT orders must be LIMIT orders.")
            if order.get("product") not in ("CNC", "MIS", "NRML"):
                return error(400, "InputException", "Invalid `product`.")
            if not isinstance(order.get("quantity"), int) or order["quantity"] <= 0:
                return error(400, "InputException", "Invalid `quantity`.")
            price = Decimal(str(order.get("price")))
            if price <= 0 or price % TICK:
                return error(
                    400,
                    "InputException",
                    f"Tick size for this script is {TICK}. Kindly enter price in the multiple of tick size.",
                )
        return condition, orders

    def _gtt_record(
        self, trigger_id: int, kind: str, condition: dict[str, Any], orders: list[Any]
    ) -> dict[str, Any]:
        """A trigger in the shape of kiteconnect-mocks' gtt_get_order.json."""
        record = json.loads(json.dumps(load_fixture(GTT_FIXTURES / "gtt_get_order.json")["data"]))
        now = datetime.now(UTC)
        template_order = record["orders"][0]
        record.update(
            {
                "id": trigger_id,
                "user_id": "PEER01",
                "type": kind,
                "created_at": kite_time(now),
                "updated_at": kite_time(now),
                "expires_at": kite_time(now + timedelta(days=365)),
                "status": "active",
                "condition": {
                    **record["condition"],
                    "exchange": condition["exchange"],
                    "tradingsymbol": condition["tradingsymbol"],
                    "trigger_values": condition["trigger_values"],
                    "last_price": condition["last_price"],
                    "instrument_token": instrument_token(condition["exchange"], condition["tradingsymbol"]),
                },
                "orders": [{**template_order, **order, "result": None} for order in orders],
                "meta": None,
            }
        )
        return record

    @staticmethod
    def _gtt_answer(name: str, trigger_id: int) -> web.Response:
        body = load_fixture(GTT_FIXTURES / name)
        body["data"]["trigger_id"] = trigger_id
        return web.json_response(body)

    async def _gtt_place(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.gtt_posts.append(form)
        checked = self._gtt_form(form, last_check=True)
        if isinstance(checked, web.Response):
            return checked
        condition, orders = checked
        trigger_id = next(self._gtt_ids)
        self.gtts[trigger_id] = self._gtt_record(trigger_id, form["type"], condition, orders)
        if self.gtt_lose_answer:
            self.gtt_lose_answer = False
            return self._abort(request)
        return self._gtt_answer("gtt_place_order.json", trigger_id)

    async def _gtt_list(self, request: web.Request) -> web.Response:
        return envelope(list(self.gtts.values()))

    def _gtt_of(self, request: web.Request) -> dict[str, Any] | None:
        raw = request.match_info["trigger_id"]
        return self.gtts.get(int(raw)) if raw.isdigit() else None

    async def _gtt_info(self, request: web.Request) -> web.Response:
        gtt = self._gtt_of(request)
        if gtt is None:
            return error(404, "GeneralException", "Trigger not found.")
        return envelope(gtt)

    async def _gtt_modify(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.gtt_puts.append({"trigger_id": request.match_info["trigger_id"], **form})
        gtt = self._gtt_of(request)
        if gtt is None:
            return error(404, "GeneralException", "Trigger not found.")
        if gtt["status"] != "active":
            return error(400, "InputException", "Only active triggers can be modified.")
        checked = self._gtt_form(form, last_check=True)
        if isinstance(checked, web.Response):
            return checked
        condition, orders = checked
        fresh = self._gtt_record(gtt["id"], form["type"], condition, orders)
        gtt.update({k: fresh[k] for k in ("type", "condition", "orders", "updated_at")})
        return self._gtt_answer("gtt_modify_order.json", gtt["id"])

    async def _gtt_delete(self, request: web.Request) -> web.Response:
        gtt = self._gtt_of(request)
        if gtt is None:
            return error(404, "GeneralException", "Trigger not found.")
        self.gtt_deletes.append(gtt["id"])
        if gtt["status"] == "deleted":
            return error(400, "InputException", "Trigger has already been deleted.")
        gtt["status"] = "deleted"
        gtt["updated_at"] = kite_time(datetime.now(UTC))
        return self._gtt_answer("gtt_delete_order.json", gtt["id"])

    def _gtt_cross(self, gtt: dict[str, Any], last: Decimal) -> None:
        """Fire the leg whose trigger value ``last`` has reached, as Kite does: its LIMIT order
        is placed (no tag: Kite's own), the outcome kept as the leg's ``result``."""
        condition = gtt["condition"]
        triggers = [Decimal(str(v)) for v in condition["trigger_values"]]
        if len(triggers) == 2:
            index = 0 if last <= triggers[0] else 1 if last >= triggers[1] else None
        else:
            rising = Decimal(str(condition["last_price"])) < triggers[0]
            index = 0 if (last >= triggers[0] if rising else last <= triggers[0]) else None
        if index is None:
            return
        leg = gtt["orders"][index]
        now = datetime.now(UTC)
        outcome: dict[str, Any]
        if self.gtt_failure is not None:
            outcome = {"status": "failed", "order_id": "", "rejection_reason": self.gtt_failure}
            self.gtt_failure = None
        else:
            order = PeerOrder(
                order_id=f"2412{next(self._ids):011d}",
                variety="regular",
                exchange=leg["exchange"],
                tradingsymbol=leg["tradingsymbol"],
                transaction_type=leg["transaction_type"],
                order_type="LIMIT",
                product=leg["product"],
                validity="DAY",
                quantity=int(leg["quantity"]),
                price=Decimal(str(leg["price"])),
                trigger_price=Decimal(0),
                tag=None,
                market_protection=0,
                placed_at=now,
            )
            self.orders[order.order_id] = order
            for status in PRE_OPEN_STATUSES[:2]:
                self._set_status(order, status)
            self._route(order, None)
            outcome = {"status": "success", "order_id": order.order_id, "rejection_reason": ""}
        leg["result"] = {
            "account_id": "PEER01",
            "exchange": leg["exchange"],
            "tradingsymbol": leg["tradingsymbol"],
            "validity": "DAY",
            "product": leg["product"],
            "order_type": "LIMIT",
            "transaction_type": leg["transaction_type"],
            "quantity": leg["quantity"],
            "price": leg["price"],
            "meta": json.dumps({"app_id": 12617, "gtt": gtt["id"]}),
            "timestamp": kite_time(now),
            "triggered_at": _num(last),
            "order_result": outcome,
        }
        gtt["status"] = "triggered"
        gtt["updated_at"] = kite_time(now)


def load_fixture(path: Any) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@contextlib.asynccontextmanager
async def running_peer(**kwargs: Any) -> AsyncIterator[KitePeer]:
    peer = KitePeer(**kwargs)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
async def kite_peer() -> AsyncIterator[KitePeer]:
    async with running_peer() as peer:
        yield peer
