"""A loopback Charles Schwab Trader API on 127.0.0.1, for schwab-py's asynchronous client.

It answers the paths schwab-py calls (``/trader/v1/accounts/accountNumbers``,
``/trader/v1/accounts/{hash}``, ``.../orders``, ``.../orders/{id}``, ``/trader/v1/userPreference``)
and the OAuth token endpoint (``/v1/oauth/token``) that renews the access token. Bearer tokens are
checked; an order placed answers 201 with its URL in ``Location``, as Schwab does. Order records
have the shape of the filled order in schwab-py's own tests (``tests/utils.py`` ``real_order``):
``orderLegCollection``, ``orderActivityCollection`` with ``executionLegs``; the user preferences
are schwab-py's recorded ``preferences.json``.

Tests steer it with ``fill(order_id, qty, price)``, ``expire_access_token()``, and
``refuse_refresh = True`` (the refresh token has expired at Schwab).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from adapters.broker_payloads import payload
from aiohttp import web

from peers.loopback import serve

APP_KEY = "peer-schwab-app-key-0001"
APP_SECRET = "peer-schwab-app-secret-0001"
ACCOUNT_NUMBER = "12345678"
ACCOUNT_HASH = "E5B2C8D9A1F34B6C9E0D7A3B2C1F4E5D"


def stamp(at: float | None = None) -> str:
    return datetime.fromtimestamp(at or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def token(access: str, refresh: str, *, expires_in: int = 1800) -> dict[str, Any]:
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": "api",
        "expires_at": int(time.time()) + expires_in,
    }


@dataclass
class PeerOrder:
    id: int
    spec: dict[str, Any]
    entered: float = field(default_factory=time.time)
    status: str = "WORKING"
    fills: list[tuple[Decimal, Decimal, float]] = field(default_factory=list)

    @property
    def quantity(self) -> Decimal:
        return Decimal(str(self.spec["orderLegCollection"][0]["quantity"]))

    @property
    def filled(self) -> Decimal:
        return sum((q for q, _, _ in self.fills), Decimal(0))


class SchwabPeer:
    def __init__(self) -> None:
        self.access_token = "peer-access-token-0001"
        self.refresh_token = "peer-refresh-token-0001"
        self.refresh_count = 0
        self.refuse_refresh = False
        self.login_code = "peer-login-code-0001"
        self.cash = Decimal("25000")
        self.positions: dict[str, tuple[Decimal, Decimal, Decimal]] = {
            "AAPL": (Decimal(10), Decimal(150), Decimal("227.50")),
        }
        # Option positions: (OCC symbol, putCall, contracts (negative: short), averagePrice per
        # share, last price per share, optionMultiplier or None to leave it out).
        self.option_positions: list[tuple[str, str, Decimal, Decimal, Decimal, int | None]] = []
        self.orders: dict[int, PeerOrder] = {}
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1001)
        self._runner: web.AppRunner | None = None
        self.root = ""

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/oauth/token", self._token)
        app.router.add_get("/trader/v1/accounts/accountNumbers", self._numbers)
        app.router.add_get("/trader/v1/userPreference", self._preferences)
        app.router.add_get("/trader/v1/accounts/{hash}", self._account)
        app.router.add_get("/trader/v1/accounts/{hash}/orders", self._list)
        app.router.add_post("/trader/v1/accounts/{hash}/orders", self._place)
        app.router.add_get("/trader/v1/accounts/{hash}/orders/{id}", self._get)
        app.router.add_delete("/trader/v1/accounts/{hash}/orders/{id}", self._cancel)
        self._runner, port = await serve(app)
        self.root = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stored_token(self, *, created: float | None = None, expires_in: int = 1800) -> str:
        """The token as schwab-py writes it after a login."""
        return json.dumps(
            {
                "creation_timestamp": int(created if created is not None else time.time()),
                "token": token(self.access_token, self.refresh_token, expires_in=expires_in),
            }
        )

    def settings(self, name: str = "schwab", **extra: Any) -> dict[str, Any]:
        return {
            "type": "schwab",
            "name": name,
            "base_url": self.root,
            "poll_interval": 0.05,
            "timeout": 3,
            **extra,
        }

    # -- steering -------------------------------------------------------------------------
    def fill(self, order_id: str, qty: Decimal, price: Decimal) -> None:
        order = self.orders[int(order_id)]
        order.fills.append((Decimal(qty), Decimal(price), time.time()))
        if order.filled >= order.quantity:
            order.status = "FILLED"

    def expire_access_token(self) -> None:
        self.access_token = f"peer-access-token-{next(self._ids)}"

    # -- plumbing -------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if request.path != "/v1/oauth/token":
            if request.headers.get("Authorization") != f"Bearer {self.access_token}":
                return web.json_response({"message": "Client not authorized"}, status=401)
            if "hash" in request.match_info and request.match_info["hash"] != ACCOUNT_HASH:
                return web.json_response({"message": "Invalid account number"}, status=400)
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = "Basic " + base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") == "authorization_code":
            if form.get("code") != self.login_code:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "bad code"}, status=400
                )
            self.refresh_token = "peer-refresh-token-login"
            self.access_token = "peer-access-token-login"
            body = token(self.access_token, self.refresh_token)
            body.pop("expires_at")
            return web.json_response(body)
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") != self.refresh_token
            or self.refuse_refresh
        ):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "refresh token expired"}, status=400
            )
        self.refresh_count += 1
        self.access_token = f"peer-access-token-r{self.refresh_count}"
        body = token(self.access_token, self.refresh_token)
        body.pop("expires_at")
        return web.json_response(body)

    async def _numbers(self, request: web.Request) -> web.Response:
        return web.json_response([{"accountNumber": ACCOUNT_NUMBER, "hashValue": ACCOUNT_HASH}])

    async def _preferences(self, request: web.Request) -> web.Response:
        return web.json_response(payload("schwab", "preferences.json"))

    async def _account(self, request: web.Request) -> web.Response:
        worth = sum((q * last for q, _, last in self.positions.values()), Decimal(0)) + sum(
            (q * last * (m or 100) for _, _, q, _, last, m in self.option_positions), Decimal(0)
        )
        securities: dict[str, Any] = {
            "type": "MARGIN",
            "accountNumber": ACCOUNT_NUMBER,
            "roundTrips": 0,
            "isDayTrader": False,
            "isClosingOnlyRestricted": False,
            "currentBalances": {
                "cashBalance": float(self.cash),
                "liquidationValue": float(self.cash + worth),
                "buyingPower": float(self.cash * 2),
                "availableFunds": float(self.cash),
                "maintenanceRequirement": float(worth * Decimal("0.25")),
                "equity": float(self.cash + worth),
            },
        }
        if "positions" in request.query.get("fields", ""):
            securities["positions"] = [
                {
                    "shortQuantity": 0.0,
                    "averagePrice": float(avg),
                    "longQuantity": float(qty),
                    "settledLongQuantity": float(qty),
                    "instrument": {"assetType": "EQUITY", "cusip": "037833100", "symbol": symbol},
                    "marketValue": float(qty * last),
                }
                for symbol, (qty, avg, last) in self.positions.items()
            ] + [self._option_row(*option) for option in self.option_positions]
        return web.json_response({"securitiesAccount": securities, "aggregatedBalance": {}})

    @staticmethod
    def _option_row(
        symbol: str, put_call: str, qty: Decimal, avg: Decimal, last: Decimal, multiplier: int | None
    ) -> dict[str, Any]:
        """An option position as the Trader API's accounts endpoint writes it (AccountOption
        instrument; averagePrice per share, marketValue for the whole position)."""
        root = symbol[:6].strip()
        instrument: dict[str, Any] = {
            "assetType": "OPTION",
            "cusip": f"0{root}.{symbol[8:12]}{symbol[13:18]}",
            "symbol": symbol,
            "description": f"{root} {put_call.title()}",
            "netChange": -0.12,
            "type": "VANILLA",
            "putCall": put_call,
            "underlyingSymbol": root,
        }
        if multiplier is not None:
            instrument["optionMultiplier"] = multiplier
        size = multiplier or 100
        return {
            "shortQuantity": float(-qty) if qty < 0 else 0.0,
            "averagePrice": float(avg),
            "currentDayProfitLoss": 0.0,
            "currentDayProfitLossPercentage": 0.0,
            "longQuantity": float(qty) if qty > 0 else 0.0,
            "settledLongQuantity": float(qty) if qty > 0 else 0.0,
            "settledShortQuantity": float(-qty) if qty < 0 else 0.0,
            "instrument": instrument,
            "marketValue": float(qty * last * size),
            "maintenanceRequirement": float(abs(qty) * last * size) if qty < 0 else 0.0,
            "averageLongPrice": float(avg) if qty > 0 else 0.0,
            "averageShortPrice": float(avg) if qty < 0 else 0.0,
            "longOpenProfitLoss": float((last - avg) * qty * size) if qty > 0 else 0.0,
            "shortOpenProfitLoss": float((last - avg) * qty * size) if qty < 0 else 0.0,
            "previousSessionLongQuantity": float(qty) if qty > 0 else 0.0,
            "currentDayCost": 0.0,
        }

    def _record(self, order: PeerOrder) -> dict[str, Any]:
        spec = order.spec
        leg = spec["orderLegCollection"][0]
        filled = order.filled
        record: dict[str, Any] = {
            "session": spec.get("session", "NORMAL"),
            "duration": spec.get("duration", "DAY"),
            "orderType": spec["orderType"],
            "complexOrderStrategyType": "NONE",
            "quantity": float(order.quantity),
            "filledQuantity": float(filled),
            "remainingQuantity": float(order.quantity - filled),
            "destinationLinkName": "AUTO",
            "orderLegCollection": [
                {
                    "orderLegType": "EQUITY",
                    "legId": 1,
                    "instrument": {
                        "assetType": "EQUITY",
                        "cusip": "126650100",
                        "symbol": leg["instrument"]["symbol"],
                    },
                    "instruction": leg["instruction"],
                    "positionEffect": "OPENING",
                    "quantity": float(order.quantity),
                }
            ],
            "orderStrategyType": "SINGLE",
            "orderId": order.id,
            "cancelable": order.status == "WORKING",
            "editable": False,
            "status": order.status,
            "enteredTime": stamp(order.entered),
            "tag": "API_TDAM:App",
            "accountId": int(ACCOUNT_NUMBER),
            "orderActivityCollection": [
                {
                    "activityType": "EXECUTION",
                    "executionType": "FILL",
                    "quantity": float(q),
                    "orderRemainingQuantity": float(
                        order.quantity - sum((f[0] for f in order.fills[: i + 1]), Decimal(0))
                    ),
                    "executionLegs": [
                        {
                            "legId": 1,
                            "quantity": float(q),
                            "mismarkedQuantity": 0.0,
                            "price": float(p),
                            "time": stamp(t),
                        }
                    ],
                }
                for i, (q, p, t) in enumerate(order.fills)
            ],
        }
        for key in ("price", "stopPrice"):
            if key in spec:
                record[key] = float(spec[key])
        if order.status != "WORKING":
            record["closeTime"] = stamp()
        return record

    async def _list(self, request: web.Request) -> web.Response:
        since = request.query.get("fromEnteredTime")
        start = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp() if since else 0
        return web.json_response([self._record(o) for o in self.orders.values() if o.entered >= start])

    async def _place(self, request: web.Request) -> web.Response:
        spec = await request.json()
        leg = spec["orderLegCollection"][0]
        if leg["instrument"]["symbol"] == "NOPE":
            return web.json_response({"message": "Symbol NOPE is not valid"}, status=400)
        price = Decimal(str(spec.get("price", "227.50")))
        if leg["instruction"] == "BUY" and Decimal(str(leg["quantity"])) * price > self.cash * 2:
            return web.json_response({"message": "Insufficient funds for this order"}, status=400)
        order = PeerOrder(next(self._ids), spec)
        self.orders[order.id] = order
        location = f"https://api.schwabapi.com/trader/v1/accounts/{ACCOUNT_HASH}/orders/{order.id}"
        return web.Response(status=201, headers={"Location": location})

    async def _get(self, request: web.Request) -> web.Response:
        order = self.orders.get(int(request.match_info["id"]))
        if order is None:
            return web.json_response({"message": "Order not found"}, status=404)
        return web.json_response(self._record(order))

    async def _cancel(self, request: web.Request) -> web.Response:
        order = self.orders.get(int(request.match_info["id"]))
        if order is None:
            return web.json_response({"message": "Order not found"}, status=404)
        if order.status != "WORKING":
            return web.json_response({"message": "Order cannot be canceled"}, status=400)
        order.status = "CANCELED"
        return web.Response(status=200)


@pytest.fixture(name="schwab_peer")
async def schwab_peer_fixture():
    peer = SchwabPeer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(name="schwab_keys")
def schwab_keys_fixture(schwab_peer, memory_keyring):
    from brokers.credentials import SERVICE

    memory_keyring.set_password(SERVICE, "schwab:api_key", APP_KEY)
    memory_keyring.set_password(SERVICE, "schwab:secret_key", APP_SECRET)
    memory_keyring.set_password(SERVICE, "schwab:token", schwab_peer.stored_token())
    return memory_keyring


@pytest.fixture(name="schwab")
async def schwab_broker_fixture(schwab_peer, schwab_keys):
    from brokers.registry import BrokerFactory

    broker = BrokerFactory.create(schwab_peer.settings())
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.disconnect()
