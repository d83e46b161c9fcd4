"""A Broker assembled from parts: a session that holds the link, an order desk and the account
reads. The adapters differ in their parts and in how they connect; what the Broker says of its
link and how it hands orders and reads to its parts is the same for all, and is written here."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Protocol, TypeVar

from ..base import Broker
from ..models import AccountStatus, Balance, ConnectionState, MarginInfo, Order, OrderRequest, Position


class Link(Protocol):
    """The state of the connection to the broker, as its session keeps it."""

    @property
    def state(self) -> ConnectionState: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_refresh(self) -> datetime | None: ...
    @property
    def latency_ms(self) -> float | None: ...
    def is_connected(self) -> bool: ...


class Desk(Protocol):
    """Placing, looking up and listing orders. Cancelling one is left to each adapter: Kite's
    takes a refresh of the order book as well."""

    async def place(self, request: OrderRequest) -> Order: ...
    async def modify(self, broker_order_id: str, request: OrderRequest) -> Order: ...
    async def cancel_all(self) -> list[str]: ...
    async def get(self, broker_order_id: str) -> Order: ...
    async def get_by_client_id(self, client_order_id: str) -> Order | None: ...
    async def open_orders(self) -> list[Order]: ...


class Reads(Protocol):
    """Balance, margin and positions."""

    async def balance(self) -> Balance: ...
    async def margin(self) -> MarginInfo: ...
    async def positions(self) -> list[Position]: ...


SessionT = TypeVar("SessionT", bound=Link)
DeskT = TypeVar("DeskT", bound=Desk)
ReadsT = TypeVar("ReadsT", bound=Reads)


class ComposedBroker(Broker, Generic[SessionT, DeskT, ReadsT]):
    """A Broker whose ``__init__`` sets ``_session``, ``_orders`` and ``_account``."""

    _session: SessionT
    _orders: DeskT
    _account: ReadsT

    # -- connection -----------------------------------------------------------------------
    @property
    def connection_state(self) -> ConnectionState:
        return self._session.state

    @property
    def last_error(self) -> str | None:
        return self._session.last_error

    def is_connected(self) -> bool:
        return self._session.is_connected()

    def status(self) -> AccountStatus:
        """The account's health as this adapter sees it."""
        session = self._session
        return AccountStatus(
            name=self.name,
            broker_type=self.broker_type,
            live=self.live,
            state=session.state,
            last_error=session.last_error,
            last_refresh=session.last_refresh,
            latency_ms=session.latency_ms,
            session_expires_at=self.session_expires_at,
            currency=self.currency,
        )

    # -- orders ---------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> Order:
        return await self._orders.place(request)

    async def modify_order(self, broker_order_id: str, request: OrderRequest) -> Order:
        return await self._orders.modify(broker_order_id, request)

    async def cancel_all_orders(self) -> list[str]:
        return await self._orders.cancel_all()

    async def get_order(self, broker_order_id: str) -> Order:
        return await self._orders.get(broker_order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        return await self._orders.get_by_client_id(client_order_id)

    async def get_open_orders(self) -> list[Order]:
        return await self._orders.open_orders()

    # -- account --------------------------------------------------------------------------
    async def get_balance(self) -> Balance:
        return await self._account.balance()

    async def get_margin(self) -> MarginInfo:
        return await self._account.margin()

    async def get_positions(self) -> list[Position]:
        return await self._account.positions()
