"""A loopback Coinbase Advanced Trade on 127.0.0.1, as the real ccxt client reaches it.

What ccxt asks for when it loads markets (``/api/v3/brokerage/market/products``,
``/api/v3/brokerage/transaction_summary``, ``/v2/currencies``, ``/v2/currencies/crypto``,
``/v2/exchange-rates``), the account's wallets (``/api/v3/brokerage/accounts``), prices
(``/api/v3/brokerage/products``), orders (``POST /api/v3/brokerage/orders``,
``/orders/batch_cancel``, ``/orders/historical/{id}``, ``/orders/historical/batch``) and fills
(``/orders/historical/fills``), in the Advanced Trade API's JSON shapes; order and fill records are
the recorded ones in ``shared/fixtures/broker-payloads/ccxt/response/coinbase.json`` with this
order's fields written over them.

Every private request is checked as Coinbase checks a CDP key: a bearer JWT signed ES256 with the
key's EC private key, ``kid`` and ``sub`` the key's name, ``iss`` "coinbase-cloud", ``aud``
["retail_rest_api_proxy"], valid now (``nbf`` .. ``exp``), and ``uri`` the method, host and path
of this very request (without the query). A request that fails any of it is answered 401.
The one allowance for plain HTTP on loopback: ccxt strips only ``https://`` from the uri it signs,
so a leading ``http://`` is taken off before comparing.

It also serves the Advanced Trade websocket's ``user`` channel (at ``/``, as
``wss://advanced-trade-ws.coinbase.com`` moved to the peer): a ``subscribe`` carrying a JWT
signed as above (no ``uri`` for a websocket) is answered with ``subscriptions`` and a ``snapshot`` of
open orders; then an ``update`` per change of an order (placed, filled further, cancelled) with
its cumulative quantity, average price and fees, as Coinbase documents the channel. ``ws_refuse``
refuses the upgrade, ``ws_drop()`` closes every socket, ``ws_messages`` keeps what was sent.

Steering: ``fill(order_id, qty, price, fee)``; ``venue_cancel(order_id)``; ``calls`` records (method, path, query, body);
``refused`` counts requests answered 401 (a bare ``Unauthorized``, as Coinbase's gateway answers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.broker_payloads import payload
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from peers.loopback import serve

KEY_NAME = "organizations/0f1e2d3c-peer-4b5a/apiKeys/9a8b7c6d-peer-0001"
_PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
SECRET = _PRIVATE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
).decode()
_PUBLIC_KEY = _PRIVATE_KEY.public_key()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass
class Product:
    base: str
    quote: str
    price: Decimal
    base_increment: str = "0.00000001"
    quote_increment: str = "0.01"
    base_min_size: str = "0.00000001"
    quote_min_size: str = "1"

    @property
    def id(self) -> str:
        return f"{self.base}-{self.quote}"


PRODUCTS = [Product("BTC", "USD", Decimal("60000")), Product("ETH", "USD", Decimal("3000"))]


@dataclass
class Order:
    id: str
    client_id: str
    product: Product
    side: str  # BUY / SELL
    configuration: dict[str, Any]
    amount: Decimal
    price: Decimal | None
    created: float = field(default_factory=time.time)
    status: str = "OPEN"
    filled: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    fills: list[dict[str, Any]] = field(default_factory=list)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"


class CoinbasePeer:
    def __init__(self) -> None:
        self.balances: dict[str, Decimal] = {"USD": Decimal("20000"), "BTC": Decimal("0.25")}
        self.orders: dict[str, Order] = {}
        self.calls: list[tuple[str, str, dict[str, str], str]] = []
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.root = ""
        self.host = ""
        recorded = payload("ccxt", "response/coinbase.json")["methods"]
        self._order_template = recorded["fetchClosedOrders"][0]["httpResponse"]["orders"][0]
        self._fill_template = recorded["fetchMyTrades"][0]["httpResponse"]["fills"][0]
        self._trade_ids = itertools.count(1)
        self.ws_refuse = False
        self.ws_messages: list[dict[str, Any]] = []
        self.ws_subscribes = 0
        self._sockets: dict[web.WebSocketResponse, asyncio.Queue[dict[str, Any] | None]] = {}
        self._sequence = itertools.count(1)

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/", self._ws)
        app.router.add_get("/api/v3/brokerage/market/products", self._products)
        app.router.add_get("/v2/currencies", self._fiat)
        app.router.add_get("/v2/currencies/crypto", self._crypto)
        app.router.add_get("/v2/exchange-rates", self._rates)
        app.router.add_route("*", "/api/v3/brokerage/{path:.*}", self._private)
        self._runner, port = await serve(app)
        self.host = f"127.0.0.1:{port}"
        self.root = f"http://{self.host}"

    async def stop(self) -> None:
        await self.ws_drop()
        if self._runner is not None:
            await self._runner.cleanup()

    def settings(self, name: str = "coin", **extra: Any) -> dict[str, Any]:
        return {
            "type": "ccxt",
            "name": name,
            "exchange": "coinbase",
            "live": True,
            "base_url": self.root,
            "poll_interval": 0.05,
            "timeout": 3,
            "request_interval": 0.0,
            **extra,
        }

    # -- steering -------------------------------------------------------------------------
    def by_client_id(self, client_id: str) -> Order | None:
        return next((o for o in self.orders.values() if o.client_id == client_id), None)

    def fill(self, order_id: str, qty: Decimal, price: Decimal, fee: Decimal) -> str:
        order = self.orders[order_id]
        trade_id = f"{next(self._trade_ids):08d}-peer-fill"
        fill = copy.deepcopy(self._fill_template)
        fill.update(
            {
                "entry_id": uuid.uuid4().hex,
                "trade_id": trade_id,
                "order_id": order.id,
                "trade_time": _iso(time.time()),
                "sequence_timestamp": _iso(time.time()),
                "price": text(price),
                "size": text(qty),
                "commission": text(fee),
                "product_id": order.product.id,
                "side": order.side,
            }
        )
        order.fills.append(fill)
        order.filled += qty
        order.value += qty * price
        order.fees += fee
        if order.filled >= order.amount:
            order.status = "FILLED"
        self._push(order)
        sign = 1 if order.side == "BUY" else -1
        self.balances[order.product.base] = self.balances.get(order.product.base, Decimal(0)) + sign * qty
        self.balances[order.product.quote] -= sign * qty * price + fee
        return trade_id

    def venue_cancel(self, order_id: str) -> None:
        """Coinbase cancels an order by itself."""
        order = self.orders[order_id]
        order.status = "CANCELLED"
        self._push(order)

    # -- the user channel -----------------------------------------------------------------
    def _ws_order(self, order: Order) -> dict[str, Any]:
        terms = next(iter(order.configuration.values()))
        return {
            "avg_price": text(order.value / order.filled) if order.filled else "0",
            "cancel_reason": "",
            "client_order_id": order.client_id,
            "completion_percentage": text(order.filled / order.amount * 100),
            "contract_expiry_type": "UNKNOWN_CONTRACT_EXPIRY_TYPE",
            "cumulative_quantity": text(order.filled),
            "filled_value": text(order.value),
            "leaves_quantity": text(order.amount - order.filled) if order.status == "OPEN" else "0",
            "limit_price": terms.get("limit_price", "0"),
            "number_of_fills": str(len(order.fills)),
            "order_id": order.id,
            "order_side": order.side,
            "order_type": "Limit" if order.price is not None else "Market",
            "outstanding_hold_amount": "0",
            "post_only": "false",
            "product_id": order.product.id,
            "product_type": "SPOT",
            "reject_Reason": "",
            "retail_portfolio_id": "5f8a1b2c-peer-portfolio",
            "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE",
            "status": order.status,
            "stop_price": terms.get("stop_price", ""),
            "time_in_force": "GOOD_UNTIL_CANCELLED",
            "total_fees": text(order.fees),
            "total_value_after_fees": text(order.value - order.fees),
            "trigger_status": "INVALID_ORDER_TYPE",
            "creation_time": _iso(order.created),
            "end_time": "0001-01-01T00:00:00Z",
            "start_time": "0001-01-01T00:00:00Z",
        }

    def _user(self, kind: str, orders: list[Order]) -> dict[str, Any]:
        return {
            "channel": "user",
            "client_id": "",
            "timestamp": _iso(time.time()),
            "sequence_num": next(self._sequence),
            "events": [{"type": kind, "orders": [self._ws_order(o) for o in orders]}],
        }

    def _push(self, order: Order) -> None:
        for queue in self._sockets.values():
            queue.put_nowait(self._user("update", [order]))

    async def ws_drop(self) -> None:
        for socket, queue in list(self._sockets.items()):
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await socket.close()

    def _token_ok(self, token: str, *, uri: str | None) -> bool:
        """A CDP key's JWT as Coinbase checks it; ``uri`` None for a websocket (it names none)."""
        try:
            head_b64, claims_b64, signature_b64 = token.split(".")
            head = json.loads(_b64(head_b64))
            claims = json.loads(_b64(claims_b64))
            raw = _b64(signature_b64)
            if head.get("alg") != "ES256" or head.get("kid") != KEY_NAME or len(raw) != 64:
                return False
            signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            _PUBLIC_KEY.verify(signature, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except Exception:
            return False
        now = time.time()
        return (
            claims.get("sub") == KEY_NAME
            and claims.get("iss") == "coinbase-cloud"
            and claims.get("aud") == ["retail_rest_api_proxy"]
            and claims.get("nbf", now + 1) <= now + 5
            and now < claims.get("exp", 0)
            and (uri is None or str(claims.get("uri", "")).replace(" http://", " ", 1) == uri)
        )

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.ws_refuse:
            return web.Response(status=503, text="Service Unavailable")
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

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
                if message.get("type") != "subscribe" or message.get("channel") != "user":
                    continue
                if not self._token_ok(str(message.get("jwt", "")), uri=None):
                    queue.put_nowait({"type": "error", "message": "authentication failure"})
                    continue
                self.ws_subscribes += 1
                queue.put_nowait(
                    {
                        "channel": "subscriptions",
                        "client_id": "",
                        "timestamp": _iso(time.time()),
                        "sequence_num": next(self._sequence),
                        "events": [{"subscriptions": {"user": ["dbcb91e7-2bc9-5152-bb6f-72d6677e6727"]}}],
                    }
                )
                opened = [o for o in self.orders.values() if o.status == "OPEN"]
                queue.put_nowait(self._user("snapshot", opened))
                self._sockets[socket] = queue
        finally:
            self._sockets.pop(socket, None)
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return socket

    # -- plumbing -------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.text() if request.can_read_body else ""
        self.calls.append((request.method, request.path, dict(request.query), body))
        return await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        return self._token_ok(
            header.removeprefix("Bearer "), uri=f"{request.method} {self.host}{request.path}"
        )

    # -- public ---------------------------------------------------------------------------
    def _product(self, product: Product) -> dict[str, Any]:
        return {
            "product_id": product.id,
            "price": text(product.price),
            "price_percentage_change_24h": "1.2",
            "volume_24h": "10967.87426597",
            "volume_percentage_change_24h": "3.1",
            "base_increment": product.base_increment,
            "quote_increment": product.quote_increment,
            "quote_min_size": product.quote_min_size,
            "quote_max_size": "150000000",
            "base_min_size": product.base_min_size,
            "base_max_size": "3400",
            "base_name": product.base,
            "quote_name": "US Dollar",
            "watched": False,
            "is_disabled": False,
            "new": False,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": product.quote,
            "base_currency_id": product.base,
            "fcm_trading_session_details": None,
            "mid_market_price": "",
            "alias": "",
            "alias_to": [],
            "base_display_symbol": product.base,
            "quote_display_symbol": product.quote,
            "view_only": False,
            "price_increment": product.quote_increment,
            "display_name": product.id,
            "product_venue": "CBE",
        }

    async def _products(self, request: web.Request) -> web.Response:
        wanted = request.query.getall("product_ids", [])
        chosen = [p for p in PRODUCTS if not wanted or p.id in wanted]
        return web.json_response(
            {"products": [self._product(p) for p in chosen], "num_products": len(chosen)}
        )

    async def _fiat(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]})

    async def _crypto(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "data": [
                    {
                        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, p.base)),
                        "code": p.base,
                        "name": p.base,
                        "color": "#F7931A",
                        "sort_index": 100 + i,
                        "exponent": 8,
                        "type": "crypto",
                        "address_regex": "^.+$",
                    }
                    for i, p in enumerate(PRODUCTS)
                ]
            }
        )

    async def _rates(self, request: web.Request) -> web.Response:
        rates = {p.base: text(1 / p.price) for p in PRODUCTS} | {"USD": "1"}
        return web.json_response({"data": {"currency": "USD", "rates": rates}})

    # -- private --------------------------------------------------------------------------
    def _order_record(self, order: Order) -> dict[str, Any]:
        record = copy.deepcopy(self._order_template)
        record.update(
            {
                "order_id": order.id,
                "product_id": order.product.id,
                "order_configuration": order.configuration,
                "side": order.side,
                "client_order_id": order.client_id,
                "status": order.status,
                "time_in_force": "GOOD_UNTIL_CANCELLED",
                "created_time": _iso(order.created),
                "completion_percentage": text(order.filled / order.amount * 100),
                "filled_size": text(order.filled),
                "average_filled_price": text(order.value / order.filled) if order.filled else "0",
                "number_of_fills": str(len(order.fills)),
                "filled_value": text(order.value),
                "total_fees": text(order.fees),
                "total_value_after_fees": text(order.value - order.fees),
                "order_type": "LIMIT" if order.price is not None else "MARKET",
                "outstanding_hold_amount": text((order.amount - order.filled) * (order.price or 0))
                if order.status == "OPEN" and order.side == "BUY"
                else "0",
                "last_fill_time": order.fills[-1]["trade_time"] if order.fills else None,
            }
        )
        return record

    def _held(self, currency: str) -> Decimal:
        return sum(
            (
                (o.amount - o.filled) * (o.price or o.product.price)
                for o in self.orders.values()
                if o.status == "OPEN" and o.side == "BUY" and o.product.quote == currency
            ),
            Decimal(0),
        )

    async def _private(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self.refused += 1
            # Coinbase's gateway answers a JWT it does not take with a bare 401, not JSON.
            return web.Response(status=401, text="Unauthorized\n")
        path = request.match_info["path"]
        if path == "transaction_summary":
            return web.json_response(
                {
                    "total_volume": 0,
                    "total_fees": 0,
                    "fee_tier": {
                        "pricing_tier": "Advanced 1",
                        "usd_from": "0",
                        "usd_to": "1000",
                        "taker_fee_rate": "0.012",
                        "maker_fee_rate": "0.006",
                    },
                    "margin_rate": None,
                    "goods_and_services_tax": None,
                    "advanced_trade_only_volume": 0,
                    "advanced_trade_only_fees": 0,
                    "coinbase_pro_volume": 0,
                    "coinbase_pro_fees": 0,
                }
            )
        if path == "accounts":
            accounts = []
            for currency, amount in self.balances.items():
                held = self._held(currency)
                accounts.append(
                    {
                        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "wallet-" + currency)),
                        "name": f"{currency} Wallet",
                        "currency": currency,
                        "available_balance": {"value": text(amount - held), "currency": currency},
                        "default": True,
                        "active": True,
                        "created_at": "2024-01-02T03:04:05.000Z",
                        "updated_at": _iso(time.time()),
                        "deleted_at": None,
                        "type": "ACCOUNT_TYPE_FIAT" if currency == "USD" else "ACCOUNT_TYPE_CRYPTO",
                        "ready": True,
                        "hold": {"value": text(held), "currency": currency},
                        "retail_portfolio_id": "5f8a1b2c-peer-portfolio",
                    }
                )
            return web.json_response(
                {"accounts": accounts, "has_next": False, "cursor": "", "size": len(accounts)}
            )
        if path == "products":
            return await self._products(request)
        if path == "orders" and request.method == "POST":
            return self._create(await request.json())
        if path == "orders/batch_cancel" and request.method == "POST":
            results = []
            for oid in (await request.json()).get("order_ids", []):
                order = self.orders.get(oid)
                if order is None or order.status != "OPEN":
                    results.append(
                        {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": oid}
                    )
                    continue
                order.status = "CANCELLED"
                self._push(order)
                results.append(
                    {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": oid}
                )
            return web.json_response({"results": results})
        if path == "orders/historical/batch":
            statuses = request.query.getall("order_status", [])
            chosen = [o for o in self.orders.values() if not statuses or o.status in statuses]
            return web.json_response(
                {
                    "orders": [self._order_record(o) for o in chosen],
                    "sequence": "0",
                    "has_next": False,
                    "cursor": "",
                }
            )
        if path == "orders/historical/fills":
            wanted = request.query.getall("order_ids", []) or request.query.getall("order_id", [])
            products = request.query.getall("product_ids", []) or request.query.getall("product_id", [])
            fills = [
                f
                for o in self.orders.values()
                for f in o.fills
                if (not wanted or o.id in wanted) and (not products or o.product.id in products)
            ]
            return web.json_response({"fills": fills, "cursor": ""})
        if path.startswith("orders/historical/"):
            order = self.orders.get(path.rsplit("/", 1)[1])
            if order is None:
                return web.json_response(
                    {
                        "error": "NOT_FOUND",
                        "error_details": "order with this orderID was not found",
                        "message": "order with this orderID was not found",
                    },
                    status=404,
                )
            return web.json_response({"order": self._order_record(order)})
        return web.json_response({"error": "NOT_FOUND", "message": f"no route {path}"}, status=404)

    def _create(self, body: dict[str, Any]) -> web.Response:
        product = next((p for p in PRODUCTS if p.id == body.get("product_id")), None)
        if product is None:
            return web.json_response(
                {
                    "success": False,
                    "failure_reason": "UNKNOWN_FAILURE_REASON",
                    "order_id": "",
                    "error_response": {
                        "error": "INVALID_PRODUCT_ID",
                        "message": "Invalid product_id",
                        "error_details": "",
                        "preview_failure_reason": "PREVIEW_INVALID_PRODUCT_ID",
                    },
                }
            )
        configuration = body.get("order_configuration") or {}
        ((kind, terms),) = configuration.items()
        amount = Decimal(terms["base_size"])
        price = Decimal(terms["limit_price"]) if "limit_price" in terms else None
        side = body["side"]
        if side == "BUY" and amount * (price or product.price) > self.balances["USD"] - self._held("USD"):
            return web.json_response(
                {
                    "success": False,
                    "failure_reason": "UNKNOWN_FAILURE_REASON",
                    "order_id": "",
                    "error_response": {
                        "error": "INSUFFICIENT_FUND",
                        "message": "Insufficient balance in source account",
                        "error_details": "",
                        "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
                    },
                    "order_configuration": configuration,
                }
            )
        order = Order(
            str(uuid.uuid4()),
            str(body.get("client_order_id", "")),
            product,
            side,
            configuration,
            amount,
            price,
        )
        self.orders[order.id] = order
        self._push(order)
        return web.json_response(
            {
                "success": True,
                "failure_reason": "UNKNOWN_FAILURE_REASON",
                "order_id": order.id,
                "success_response": {
                    "order_id": order.id,
                    "product_id": product.id,
                    "side": side,
                    "client_order_id": order.client_id,
                },
                "order_configuration": configuration,
            }
        )
