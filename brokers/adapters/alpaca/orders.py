"""What we ask Alpaca about orders: place, cancel, cancel all, look up, and the listings that
bring every order we follow up to date after connecting or a gap in the stream. What Alpaca
answers is taken in by the ``mirror``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from alpaca.common.enums import Sort
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from ...credentials import redact
from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerTimeoutError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...legs import leg_parent_id
from ...models import BrokerCapabilities, Order, OrderRequest, new_client_order_id
from .mirror import OrderMirror
from .session import MAYBE_PLACED, AlpacaSession
from .wire import alpaca_refusal, check_order_id, order_fields, payload_dict, wire_decimal

log = logging.getLogger(__name__)

_LIST_LIMIT = 500  # Alpaca's largest page for GET /v2/orders
# Orders listed after a stream gap are asked for from a little before it: clocks disagree.
_CLOCK_SLACK = timedelta(seconds=60)


def replace_fields(request: OrderRequest, client_order_id: str) -> dict[str, str]:
    """The PATCH /v2/orders/{id} body: the new quantity, prices and time in force, exact, and a
    client order id for the new order Alpaca makes of it (client ids are unique there)."""
    fields = {
        "qty": wire_decimal(request.units),
        "time_in_force": request.time_in_force.value.lower(),
        "client_order_id": client_order_id,
    }
    if request.limit_price is not None:
        fields["limit_price"] = wire_decimal(request.limit_price)
    if request.stop_price is not None:
        fields["stop_price"] = wire_decimal(request.stop_price)
    trail = request.trail_amount if request.trail_amount is not None else request.trail_percent
    if trail is not None:
        fields["trail"] = wire_decimal(trail)
    return fields


class DeskSettings(Protocol):
    """What the desk is told by its owner, read each time it is used."""

    @property
    def name(self) -> str: ...
    @property
    def capabilities(self) -> BrokerCapabilities: ...


class OrderDesk:
    """The order requests of one account, sent through ``session`` and followed in ``mirror``."""

    def __init__(self, settings: DeskSettings, session: AlpacaSession, mirror: OrderMirror) -> None:
        self._settings = settings
        self._session = session
        self._mirror = mirror

    async def place(self, request: OrderRequest) -> Order:
        name, session, mirror = self._settings.name, self._session, self._mirror
        refusal = self._settings.capabilities.supports(request) or alpaca_refusal(request)
        if refusal:
            raise OrderRejectedError(refusal, broker=name, code="UNSUPPORTED")
        client = session.require_client()
        fields = order_fields(request)
        mirror.expect(request)
        try:
            payload = await session.call(client.post, "/orders", fields, op="submit", what="place the order")
        except (BrokerTimeoutError, BrokerConnectionError):
            # The order may exist: keep the request so a later sighting is matched to it.
            raise
        except BaseException:
            mirror.forget(request)
            raise
        try:
            order = mirror.ingest(payload_dict(payload, "order"), request=request, history=True)
        except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
            raise BrokerConnectionError(
                f"Alpaca's answer to the order cannot be read{MAYBE_PLACED}: {redact(exc)[:200]}",
                broker=name,
            ) from None
        return order.snapshot()

    async def modify(self, broker_order_id: str, request: OrderRequest) -> Order:
        """Alpaca's replace (PATCH /v2/orders/{id}): Alpaca answers with a new order, its own
        id and ``replaces`` naming the old one, and marks the old one ``replaced``. The mirror
        carries our order over to the new id, so it stays one order here, with the new terms."""
        name, session, mirror = self._settings.name, self._session, self._mirror
        client = session.require_client()
        check_order_id(broker_order_id, name)
        current = mirror.order(broker_order_id)
        if current is not None and current.filled_quantity > 0:
            # The replacement's fills would count from zero again beside the old order's.
            raise OrderRejectedError(
                f"order {broker_order_id} has filled {current.filled_quantity} already; a partly "
                f"filled order is not replaced here: cancel the rest and place a new order",
                broker=name,
                code="UNSUPPORTED",
            )
        fields = replace_fields(request, new_client_order_id())
        mirror.expect_replacement(broker_order_id, request)
        try:
            payload = await session.call(
                client.patch, f"/orders/{broker_order_id}", fields, op="replace", what="replace the order"
            )
        except BaseException:
            mirror.forget_replacement(broker_order_id)
            raise
        try:
            order = mirror.ingest(payload_dict(payload, "order"), history=True)
        except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
            raise BrokerConnectionError(
                f"Alpaca's answer to the replace cannot be read: {redact(exc)[:200]}", broker=name
            ) from None
        return order.snapshot()

    async def cancel(self, broker_order_id: str) -> Order:
        client = self._session.require_client()
        check_order_id(broker_order_id, self._settings.name)
        try:
            await self._session.call(
                client.cancel_order_by_id, broker_order_id, op="cancel", what="cancel the order"
            )
        except OrderRejectedError:
            # Alpaca answers 422 when the order can no longer be cancelled: say where it stands.
            order = await self.get(broker_order_id)
            if order.is_terminal:
                return order
            raise
        return await self.get(broker_order_id)

    async def cancel_all(self) -> list[str]:
        client = self._session.require_client()
        answers = await self._session.call(client.cancel_orders, op="cancel", what="cancel all orders")
        asked: list[str] = []
        for answer in answers if isinstance(answers, list) else []:
            if not isinstance(answer, dict) or not answer.get("id"):
                continue
            asked.append(str(answer["id"]))
            status = answer.get("status")
            if isinstance(status, int) and status >= 400:
                log.warning(
                    "%s: Alpaca could not cancel order %s (HTTP %s)",
                    self._settings.name,
                    answer["id"],
                    status,
                )
        return asked

    async def get(self, broker_order_id: str) -> Order:
        client = self._session.require_client()
        check_order_id(broker_order_id, self._settings.name)
        payload = await self._session.read(client.get_order_by_id, broker_order_id, what="read the order")
        return self._mirror.ingest_read(payload)

    async def get_by_client_id(self, client_order_id: str) -> Order | None:
        client = self._session.require_client()
        try:
            payload = await self._session.read(
                client.get_order_by_client_id, client_order_id, what="find the order"
            )
        except OrderNotFoundError:
            parent_id = leg_parent_id(client_order_id)
            return None if parent_id is None else await self._leg_by_name(parent_id, client_order_id)
        return self._mirror.ingest_read(payload)

    async def _leg_by_name(self, parent_id: str, client_order_id: str) -> Order | None:
        """An exit Alpaca holds for our order ``parent_id`` is known to Alpaca by an id of its own
        making: found through its parent (after a restart, say), and followed by our name."""
        client = self._session.require_client()
        try:
            payload = await self._session.read(
                client.get_order_by_client_id, parent_id, what="find the order's exits"
            )
        except OrderNotFoundError:
            return None
        self._mirror.ingest_read(payload)
        legs = payload_dict(payload, "order").get("legs")
        if isinstance(legs, list):
            self._mirror.name_legs(parent_id, legs)
        return self._mirror.by_client_id(client_order_id)

    async def open_orders(self) -> list[Order]:
        client = self._session.require_client()
        listed = await self._session.read(
            client.get_orders,
            GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_LIST_LIMIT),
            what="list open orders",
        )
        orders = [self._mirror.ingest_quietly(payload, history=False) for payload in listed]
        self._session.refreshed()
        return [order.snapshot() for order in orders if order is not None and order.is_working]

    async def resync(self, since: datetime | None) -> None:
        """Bring every order we know up to date. ``since`` marks the start of a stream gap:
        orders placed after it are listed too, and their fills are news."""
        session, mirror = self._session, self._mirror
        client = session.require_client()
        history = since is not None
        listed = await session.read(
            client.get_orders,
            GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_LIST_LIMIT),
            what="list open orders",
        )
        if since is not None:
            listed += await session.read(
                client.get_orders,
                GetOrdersRequest(
                    status=QueryOrderStatus.ALL,
                    limit=_LIST_LIMIT,
                    after=since - _CLOCK_SLACK,
                    direction=Sort.ASC,
                ),
                what="list recent orders",
            )
        seen: set[str] = set()
        for payload in listed:
            order = mirror.ingest_quietly(payload, history=history)
            if order is not None and order.broker_order_id:
                seen.add(order.broker_order_id)
        for broker_id, order in mirror.followed():
            if order.is_working and broker_id not in seen:
                payload = await session.read(client.get_order_by_id, broker_id, what="read an order")
                mirror.ingest_quietly(payload, history=history)
        session.refreshed()
