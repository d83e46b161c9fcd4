"""What we ask the venue about orders: place (after checking the market's precision and
minimums), cancel, cancel all, look up and list, and the poll that keeps every order we follow up
to date. What the venue answers is taken in by the ``mirror``."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Protocol

from ...credentials import redact
from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerTimeoutError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...models import BrokerCapabilities, Order, OrderRequest, OrderType, Side
from .mirror import OrderMirror
from .session import MAYBE_PLACED, CcxtSession, Exchange
from .settings import Venue
from .wire import TICK_SIZE, market_refusal, market_symbol, order_call

log = logging.getLogger(__name__)


class DeskSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def capabilities(self) -> BrokerCapabilities: ...
    @property
    def venue(self) -> Venue: ...


class Prices(Protocol):
    """Last prices held in memory, by market symbol."""

    def last(self, symbol: str) -> Decimal | None: ...


class OrderDesk:
    def __init__(
        self, settings: DeskSettings, session: CcxtSession, mirror: OrderMirror, prices: Prices
    ) -> None:
        self._settings = settings
        self._session = session
        self._mirror = mirror
        self._prices = prices

    def _market(self, exchange: Exchange, symbol: str) -> dict[str, Any]:
        markets = exchange.markets or {}
        market = markets.get(symbol)
        if not isinstance(market, dict):
            raise InvalidSymbolError(
                f"{self._settings.venue.title} has no market {symbol}",
                broker=self._settings.name,
                code="INVALID_SYMBOL",
            )
        return market

    def quote_of(self, symbol: str) -> str | None:
        exchange = self._session.require()
        market = (exchange.markets or {}).get(symbol)
        return str(market.get("quote")) if isinstance(market, dict) and market.get("quote") else None

    async def place(self, request: OrderRequest) -> Order:
        settings, session, mirror = self._settings, self._session, self._mirror
        name = settings.name
        refusal = settings.capabilities.supports(request)
        if refusal:
            raise OrderRejectedError(refusal, broker=name, code="UNSUPPORTED")
        if (
            request.order_type is OrderType.MARKET
            and request.side is Side.BUY
            and not settings.venue.market_buy_by_quantity
        ):
            raise OrderRejectedError(
                f"{settings.venue.title} sizes a market buy in the money to spend, not in coins; "
                "send a limit order (IOC for one that fills now or not at all)",
                broker=name,
                code="UNSUPPORTED",
            )
        exchange = session.require()
        symbol = market_symbol(request.symbol)
        market = self._market(exchange, symbol)
        if str(market.get("quote") or "") != settings.currency:
            raise OrderRejectedError(
                f"{symbol} is quoted in {market.get('quote')}; this account trades markets quoted in "
                f"{settings.currency}",
                broker=name,
                code="CURRENCY_MISMATCH",
            )
        mode = int(exchange.precisionMode or TICK_SIZE)
        reference = self._prices.last(symbol)
        problem = market_refusal(request, market, mode, reference, settings.venue.title)
        if problem:
            raise OrderRejectedError(problem, broker=name, code="MARKET_LIMITS")
        call = order_call(request, settings.venue)
        mirror.expect(request)
        try:
            payload = await session.call(
                exchange.create_order,
                call.symbol,
                call.type,
                call.side,
                call.amount,
                call.price,
                call.params,
                what="place the order",
                submit=True,
            )
        except (BrokerTimeoutError, BrokerConnectionError):
            raise  # the order may exist: keep the request so a later sighting is matched to it
        except BaseException:
            mirror.forget(request)
            raise
        try:
            if not isinstance(payload, dict):
                raise BrokerAPIError("an answer that is not an order", broker=name)
            order = mirror.ingest(payload, request=request, symbol=symbol)
        except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
            raise BrokerConnectionError(
                f"the venue's answer to the order cannot be read{MAYBE_PLACED}: {redact(exc)[:200]}",
                broker=name,
            ) from None
        return order.snapshot()

    async def cancel(self, broker_order_id: str) -> Order:
        exchange = self._session.require()
        symbol = self._symbol_of(broker_order_id)
        try:
            await self._session.call(exchange.cancel_order, broker_order_id, symbol, what="cancel the order")
        except (OrderRejectedError, BrokerAPIError, OrderNotFoundError):
            # Already done or gone: say where it stands.
            order = await self.get(broker_order_id)
            if order.is_terminal:
                return order
            raise
        return await self.get(broker_order_id)

    async def modify(self, broker_order_id: str, request: OrderRequest) -> Order:
        # The venues here change no working order in place (``BrokerCapabilities.modify_orders`` is
        # off, so the execution layer never asks); said plainly if anything else does.
        raise OrderRejectedError(
            "this account cannot change a working order; cancel it and send a new one",
            broker=self._settings.name,
            code="UNSUPPORTED",
        )

    async def cancel_all(self) -> list[str]:
        session, venue = self._session, self._settings.venue
        exchange = session.require()
        listed = await session.call(exchange.fetch_open_orders, what="list open orders")
        ids = [str(o.get("id")) for o in listed if isinstance(o, dict) and o.get("id")]
        if venue.cancel_all_per_symbol:
            for symbol in sorted(
                {str(o.get("symbol")) for o in listed if isinstance(o, dict) and o.get("symbol")}
            ):
                await session.call(exchange.cancel_all_orders, symbol, what=f"cancel all orders in {symbol}")
        elif exchange.has.get("cancelAllOrders"):
            await session.call(exchange.cancel_all_orders, what="cancel all orders")
        else:
            for order in listed:
                if isinstance(order, dict) and order.get("id"):
                    await session.call(
                        exchange.cancel_order, str(order["id"]), order.get("symbol"), what="cancel an order"
                    )
        return ids

    async def get(self, broker_order_id: str) -> Order:
        exchange = self._session.require()
        symbol = self._symbol_of(broker_order_id)
        payload = await self._session.call(
            exchange.fetch_order, broker_order_id, symbol, what="read the order"
        )
        if not isinstance(payload, dict):
            raise BrokerAPIError("the venue sent an order that is not an object", broker=self._settings.name)
        return self._mirror.ingest(payload, symbol=symbol or "").snapshot()

    async def get_by_client_id(self, client_order_id: str) -> Order | None:
        known = self._mirror.by_client_id(client_order_id)
        if known is not None:
            return known
        session = self._session
        exchange = session.require()
        listed = await session.call(exchange.fetch_open_orders, what="list open orders")
        request = self._mirror.pending(client_order_id)
        if request is not None or not self._settings.venue.cancel_all_per_symbol:
            symbol = market_symbol(request.symbol) if request is not None else None
            listed = listed + await session.call(
                exchange.fetch_closed_orders, symbol, what="list closed orders"
            )
        for payload in listed:
            if isinstance(payload, dict) and payload.get("clientOrderId") == client_order_id:
                return self._mirror.ingest(payload, request=request).snapshot()
        return None

    async def open_orders(self) -> list[Order]:
        exchange = self._session.require()
        listed = await self._session.call(exchange.fetch_open_orders, what="list open orders")
        orders = [self._mirror.ingest_quietly(payload) for payload in listed]
        self._session.refreshed()
        return [order.snapshot() for order in orders if order is not None and order.is_working]

    async def sync(self) -> bool:
        """One poll: every order we follow brought up to date, and the trades of those that
        filled read as fills. Returns whether any order is still working."""
        session, mirror = self._session, self._mirror
        exchange = session.require()
        listed = await session.call(exchange.fetch_open_orders, what="list open orders")
        seen = set()
        for payload in listed:
            order = mirror.ingest_quietly(payload)
            if order is not None and order.broker_order_id:
                seen.add(order.broker_order_id)
        for oid, symbol, order in mirror.followed():
            if order.is_working and oid not in seen:
                payload = await session.call(exchange.fetch_order, oid, symbol or None, what="read an order")
                mirror.ingest_quietly(payload)
        for symbol, since in mirror.awaiting_trades().items():
            trades = await session.call(
                exchange.fetch_my_trades, symbol or None, since, what="read the trades"
            )
            mirror.take_trades(trades, self.quote_of)
        session.refreshed()
        return any(order.is_working for _, _, order in mirror.followed())

    def _symbol_of(self, broker_order_id: str) -> str | None:
        for oid, symbol, _ in self._mirror.followed():
            if oid == broker_order_id:
                return symbol or None
        return None
