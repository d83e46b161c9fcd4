"""What we ask Schwab about orders: place, cancel, look up and list, and the poll that keeps
every order we follow up to date. Schwab keeps no order id of ours, so an order whose submit
answer was lost cannot be found by its client id: it stays UNKNOWN until a person looks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from ...credentials import redact
from ...errors import BrokerAPIError, BrokerConnectionError, BrokerTimeoutError, OrderRejectedError
from ...models import BrokerCapabilities, Order, OrderRequest, utcnow
from .mirror import OrderMirror
from .session import MAYBE_PLACED, SchwabSession
from .wire import order_id_from, order_spec

# Orders are listed from a little before the oldest one still working: clocks disagree.
_SLACK = timedelta(minutes=5)


class DeskSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def capabilities(self) -> BrokerCapabilities: ...


class OrderDesk:
    def __init__(self, settings: DeskSettings, session: SchwabSession, mirror: OrderMirror) -> None:
        self._settings = settings
        self._session = session
        self._mirror = mirror

    async def place(self, request: OrderRequest) -> Order:
        name, session = self._settings.name, self._session
        refusal = self._settings.capabilities.supports(request)
        if refusal:
            raise OrderRejectedError(refusal, broker=name, code="UNSUPPORTED")
        client, account = session.require()
        answer = await session.call(
            client.place_order, account, order_spec(request), what="place the order", submit=True
        )
        oid = order_id_from(answer.headers.get("Location"))
        if oid is None:
            raise BrokerConnectionError(
                f"Schwab accepted the order but did not say its id{MAYBE_PLACED}", broker=name
            )
        try:
            payload = await session.call(client.get_order, oid, account, what="read the new order")
        except (BrokerTimeoutError, BrokerConnectionError, BrokerAPIError) as exc:
            # Placed for certain: follow it by its id and let the poll bring its state.
            order = self._mirror.ingest(
                {"orderId": oid, "status": "PENDING_ACKNOWLEDGEMENT"}, request=request
            )
            self._session.last_error = redact(exc)
            return order.snapshot()
        if not isinstance(payload, dict):
            payload = {"orderId": oid}
        payload.setdefault("orderId", oid)
        return self._mirror.ingest(payload, request=request).snapshot()

    async def cancel(self, broker_order_id: str) -> Order:
        client, account = self._session.require()
        try:
            await self._session.send(client.cancel_order, broker_order_id, account, what="cancel the order")
        except (BrokerAPIError, OrderRejectedError):
            order = await self.get(broker_order_id)
            if order.is_terminal:
                return order
            raise
        return await self.get(broker_order_id)

    async def modify(self, broker_order_id: str, request: OrderRequest) -> Order:
        # This adapter change no working order in place (``BrokerCapabilities.modify_orders`` is
        # off, so the execution layer never asks); said plainly if anything else does.
        raise OrderRejectedError(
            "this account cannot change a working order; cancel it and send a new one",
            broker=self._settings.name,
            code="UNSUPPORTED",
        )

    async def cancel_all(self) -> list[str]:
        """Schwab has no bulk cancel: each working order is cancelled in turn."""
        asked = []
        for order in await self.open_orders():
            if order.broker_order_id:
                client, account = self._session.require()
                await self._session.send(
                    client.cancel_order, order.broker_order_id, account, what="cancel an order"
                )
                asked.append(order.broker_order_id)
        return asked

    async def get(self, broker_order_id: str) -> Order:
        client, account = self._session.require()
        payload = await self._session.call(client.get_order, broker_order_id, account, what="read the order")
        if not isinstance(payload, dict):
            raise BrokerAPIError("Schwab sent an order that is not an object", broker=self._settings.name)
        return self._mirror.ingest(payload).snapshot()

    async def get_by_client_id(self, client_order_id: str) -> Order | None:
        known = self._mirror.by_client_id(client_order_id)
        if known is not None:
            return known
        raise BrokerAPIError(
            "Schwab keeps no client order id: an order whose answer was lost must be looked up by a "
            "person in the order list",
            broker=self._settings.name,
        )

    async def _listed(self, since_minutes: float | None = None) -> list[Any]:
        client, account = self._session.require()
        kwargs: dict[str, Any] = {}
        if since_minutes is not None:
            kwargs["from_entered_datetime"] = utcnow() - timedelta(minutes=since_minutes)
        listed = await self._session.call(
            client.get_orders_for_account, account, what="list the orders", **kwargs
        )
        return listed if isinstance(listed, list) else []

    async def open_orders(self) -> list[Order]:
        orders = [self._mirror.ingest_quietly(p) for p in await self._listed()]
        self._session.refreshed()
        return [o.snapshot() for o in orders if o is not None and o.is_working]

    async def sync(self) -> None:
        """One poll: the orders entered since the oldest one we follow that still works."""
        working = [o for _, o in self._mirror.followed() if o.is_working]
        if not working:
            self._session.refreshed()
            return
        oldest = min(o.created_at for o in working) - _SLACK
        minutes = max((utcnow() - oldest).total_seconds() / 60, 1.0)
        for payload in await self._listed(minutes):
            self._mirror.ingest_quietly(payload)
        self._session.refreshed()
