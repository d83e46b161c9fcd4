"""What we ask Kite about orders: place, cancel, cancel all, look up, list, and the day's trades.
What Kite answers is taken in by the ``mirror``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ...credentials import redact
from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    OrderNotFoundError,
    OrderRejectedError,
    is_transient,
)
from ...models import AssetClass, BrokerCapabilities, Fill, Order, OrderClass, OrderRequest, TimeInForce
from .exits import ExitDesk
from .gtt import parse_leg_broker_id
from .mirror import OrderMirror
from .session import KiteSession
from .wire import CASH_EXCHANGES, KITE_ORDER_TYPE, instrument, tag_for

log = logging.getLogger(__name__)


class OrderDesk:
    """The order requests of one account, sent through ``session`` and followed in ``mirror``,
    with the exchange, product and variety the account trades by default. Exits held by Kite
    (an OCO pair, a GTT trigger) are the ``exits`` desk's, and their broker order ids name them."""

    def __init__(
        self,
        account: str,
        session: KiteSession,
        mirror: OrderMirror,
        exits: ExitDesk,
        *,
        capabilities: BrokerCapabilities,
        exchange: str,
        product: str,
        variety: str,
    ) -> None:
        self._account = account
        self._session = session
        self._mirror = mirror
        self._exits = exits
        self._capabilities = capabilities
        self._exchange = exchange
        self._product = product
        self._variety = variety

    def _order_params(self, request: OrderRequest) -> dict[str, Any]:
        account = self._account
        exchange, tradingsymbol = instrument(request.symbol, request.exchange, self._exchange, account)
        if request.currency not in (None, "INR"):
            raise OrderRejectedError(f"Kite trades in INR only, not {request.currency}", broker=account)
        if exchange in CASH_EXCHANGES and request.asset_class in (AssetClass.FUTURE, AssetClass.OPTION):
            raise OrderRejectedError(
                f"{request.asset_class.value} contracts trade on NFO, BFO, MCX or CDS, not {exchange}",
                broker=account,
            )
        if exchange == "MCX" and request.time_in_force is TimeInForce.IOC:
            raise OrderRejectedError("MCX takes no IOC orders from algorithms; use DAY", broker=account)
        # CNC is delivery of shares; on a derivatives segment its counterpart is NRML.
        product = "NRML" if self._product == "CNC" and exchange not in CASH_EXCHANGES else self._product
        kite_type = KITE_ORDER_TYPE[request.order_type]
        params: dict[str, Any] = {
            "variety": self._variety,
            "exchange": exchange,
            "tradingsymbol": tradingsymbol,
            "transaction_type": request.side.value,
            "quantity": int(request.units),
            "product": product,
            "order_type": kite_type,
            "validity": request.time_in_force.value,
            "tag": tag_for(request.client_order_id),
        }
        if request.limit_price is not None:
            params["price"] = str(request.limit_price)
        if request.stop_price is not None:
            params["trigger_price"] = str(request.stop_price)
        if kite_type in ("MARKET", "SL-M"):
            # Exchange rules refuse algo market and SL-M orders without a protection band; -1 lets
            # Kite apply the standard one.
            params["market_protection"] = -1
        return params

    async def place(self, request: OrderRequest) -> Order:
        account, session, mirror = self._account, self._session, self._mirror
        reason = self._capabilities.supports(request)
        if reason is not None:
            raise OrderRejectedError(reason, broker=account, code="UNSUPPORTED")
        params = self._order_params(request)
        if request.legs is OrderClass.OCO:
            return await self._exits.place_oco(
                request,
                exchange=params["exchange"],
                tradingsymbol=params["tradingsymbol"],
                product=params["product"],
            )
        if not session.is_connected():
            raise BrokerConnectionError("not connected to Kite; the order was not sent", broker=account)
        mirror.expect(params["tag"], request)
        order_id = str(await session.call("place_order", op="place", **params))
        tracked = mirror.placed(order_id, request)
        try:
            # Kite answers a placement before its risk checks run; one read shows an RMS refusal.
            history = await session.call("order_history", order_id)
            if history:
                mirror.absorb_and_emit(history[-1])
        except BrokerError as exc:
            log.info("%s: could not read order %s back after placing it: %s", account, order_id, exc)
        return tracked.order.snapshot()

    async def modify(self, order_id: str, request: OrderRequest) -> Order:
        """Kite's modify_order (PUT /orders/{variety}/{order_id}) with the new quantity, prices
        and validity; then one read of the order shows what Kite holds now. A GTT leg's new
        price or quantity goes to its trigger (modify_gtt)."""
        account = self._account
        if parse_leg_broker_id(order_id) is not None:
            return await self._exits.modify(order_id, request)
        tracked = self._mirror.get(order_id)
        if tracked is None:
            await self.get(order_id)
            tracked = self._mirror.require(order_id)
        if tracked.order.is_terminal:
            raise OrderRejectedError(
                f"order {order_id} is {tracked.order.status.value} and can no longer be changed",
                broker=account,
            )
        kite_type = KITE_ORDER_TYPE[request.order_type]
        params: dict[str, Any] = {
            "quantity": int(request.units),
            "order_type": kite_type,
            "validity": request.time_in_force.value,
        }
        if request.limit_price is not None:
            params["price"] = str(request.limit_price)
        if request.stop_price is not None:
            params["trigger_price"] = str(request.stop_price)
        if kite_type in ("MARKET", "SL-M"):
            params["market_protection"] = -1
        if not self._session.is_connected():
            raise BrokerConnectionError("not connected to Kite; the change was not sent", broker=account)
        await self._session.call(
            "modify_order",
            tracked.variety,
            order_id,
            parent_order_id=tracked.parent_order_id,
            op="modify",
            **params,
        )
        history = await self._session.call("order_history", order_id)
        if history:
            self._mirror.absorb_and_emit(history[-1])
        return tracked.order.snapshot()

    async def cancel(self, order_id: str, *, refresh: bool) -> Order:
        """Cancel one order; ``refresh`` reads it back afterwards to show where it stands. A
        GTT leg's trigger is deleted (both legs of an OCO pair end); once it has fired, the
        order it placed is cancelled."""
        if parse_leg_broker_id(order_id) is not None:
            leg = await self._exits.get(order_id)
            placed = self._exits.placed_order_id(order_id)
            if placed is None or not leg.is_working:
                return await self._exits.delete(order_id)
            await self.cancel(placed, refresh=refresh)
            return await self._exits.get(order_id)
        tracked = self._mirror.get(order_id)
        if tracked is None:
            await self.get(order_id)
            tracked = self._mirror.require(order_id)
        if tracked.order.is_terminal:
            return tracked.order.snapshot()
        try:
            await self._session.call(
                "cancel_order",
                tracked.variety,
                order_id,
                parent_order_id=tracked.parent_order_id,
                op="cancel",
            )
        except BrokerAPIError:
            current = await self.get(order_id)
            if current.is_terminal:  # filled or gone before the cancel arrived: nothing to cancel
                return current
            raise
        if refresh:
            with contextlib.suppress(BrokerError):
                return await self.get(order_id)
        return tracked.order.snapshot()

    async def cancel_all(self) -> list[str]:
        """Kite has no bulk cancel: every working order is cancelled on its own, a few at a time,
        and every active GTT trigger is deleted (exits included: a halt cancels every leg). The
        triggers go first, so that none places an order while the book is being emptied."""
        failures: list[BrokerError] = []
        asked: list[str] = []
        for step in (self._exits.delete_all, self._cancel_working):
            try:
                asked += await step()
            except BrokerError as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise BrokerAPIError(
                "; ".join(redact(exc) for exc in failures),
                broker=self._account,
                retryable=any(is_transient(exc) for exc in failures),
            )
        return asked

    async def _cancel_working(self) -> list[str]:
        book = await self._session.read("orders")
        working = []
        for data in book:
            order = self._mirror.absorb_safely(data, emit=True)
            if order is not None and order.is_working:
                working.append(str(order.broker_order_id))
        gate = asyncio.Semaphore(4)

        async def cancel(order_id: str) -> Order:
            async with gate:
                return await self.cancel(order_id, refresh=False)

        results = await asyncio.gather(*(cancel(oid) for oid in working), return_exceptions=True)
        failures = [(oid, r) for oid, r in zip(working, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            detail = "; ".join(f"{oid}: {redact(exc)}" for oid, exc in failures)
            raise BrokerAPIError(
                f"cancel failed for {len(failures)} of {len(working)} orders ({detail})",
                broker=self._account,
                retryable=any(is_transient(exc) for _, exc in failures),
            )
        return working

    async def get(self, broker_order_id: str) -> Order:
        if parse_leg_broker_id(broker_order_id) is not None:
            return await self._exits.get(broker_order_id)
        history = await self._session.read("order_history", str(broker_order_id))
        if not history:
            raise OrderNotFoundError(f"Kite has no order {broker_order_id}", broker=self._account)
        return self._mirror.absorb_and_emit(history[-1]).snapshot()

    async def get_by_client_id(self, client_order_id: str) -> Order | None:
        tag = tag_for(client_order_id)
        matches = [
            d
            for d in await self._session.read("orders")
            if d.get("tag") == tag or tag in (d.get("tags") or ())
        ]
        if not matches:
            return await self._exits.by_client_id(client_order_id)
        data = matches[-1]
        tracked = self._mirror.get(str(data.get("order_id")))
        if tracked is not None and tracked.order.client_order_id != client_order_id:
            tracked.order.request = tracked.order.request.model_copy(
                update={"client_order_id": client_order_id}
            )
        order = self._mirror.absorb_and_emit(data, client_order_id=client_order_id)
        self._mirror.adopt(tag, order.request)
        return order.snapshot()

    async def open_orders(self) -> list[Order]:
        result = []
        for data in await self._session.read("orders"):
            order = self._mirror.absorb_safely(data, emit=True)
            if order is not None and order.is_working:
                result.append(order.snapshot())
        return result + await self._exits.open_legs()

    async def fills(self) -> list[Fill]:
        """Today's executions at Kite (its trade book)."""
        fills = []
        for data in await self._session.read("trades"):
            fill = self._mirror.fill_from(data)
            if fill is not None:
                fills.append(fill)
        return fills
