"""The Broker interface every adapter implements."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

from .models import Balance, BrokerCapabilities, Fill, MarginInfo, Order, OrderRequest, Position

log = logging.getLogger(__name__)

BrokerEvent = Order | Fill
"""What a broker's update stream yields: a new snapshot of an order, or a fill."""

BrokerListener = Callable[[BrokerEvent], object]


class Broker(ABC):
    """One account at one broker. All I/O is async; nothing here may block the event loop.

    ``place_order`` returns the order as the broker acknowledged it (SUBMITTED, ACCEPTED, or
    already FILLED/REJECTED). A definite refusal raises an ``OrderRejectedError`` subclass; a lost
    answer raises ``BrokerTimeoutError`` or ``BrokerConnectionError``.
    """

    broker_type: str = "base"

    def __init__(self, name: str, *, live: bool = False, currency: str = "USD") -> None:
        self.name = name
        self.live = live
        self.currency = currency
        self._subscribers: set[asyncio.Queue[BrokerEvent]] = set()
        self._listeners: list[BrokerListener] = []

    # -- connection -----------------------------------------------------------------------
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def disconnect(self) -> None: ...

    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    def session_expires_at(self) -> datetime | None:
        """When the broker session (e.g. Kite's daily token) stops working, if it does."""
        return None

    # -- orders ---------------------------------------------------------------------------
    @abstractmethod
    async def place_order(self, request: OrderRequest) -> Order: ...

    @abstractmethod
    async def cancel_order(self, broker_order_id: str) -> Order: ...

    @abstractmethod
    async def cancel_all_orders(self) -> list[str]:
        """Ask the broker to cancel every working order; returns the broker order ids asked."""

    @abstractmethod
    async def get_order(self, broker_order_id: str) -> Order: ...

    @abstractmethod
    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order we sent with this client id, or None if the broker never saw it."""

    @abstractmethod
    async def get_open_orders(self) -> list[Order]: ...

    # -- account --------------------------------------------------------------------------
    @abstractmethod
    async def get_balance(self) -> Balance: ...

    @abstractmethod
    async def get_positions(self) -> list[Position]: ...

    @abstractmethod
    async def get_margin(self) -> MarginInfo: ...

    @property
    @abstractmethod
    def capabilities(self) -> BrokerCapabilities: ...

    async def get_last_price(self, symbol: str) -> Decimal | None:
        """Last traded price if the adapter knows it cheaply; None otherwise."""
        return None

    def last_price_nowait(self, symbol: str) -> Decimal | None:
        """Last price already held in memory, without I/O (used on the order path)."""
        return None

    async def get_fx_rates(self) -> dict[str, Decimal]:
        """Rates the broker reports, as {"EURUSD": Decimal(...)} (1 EUR in USD). Usually none."""
        return {}

    # -- update stream --------------------------------------------------------------------
    async def updates(self) -> AsyncIterator[BrokerEvent]:
        """Order snapshots and fills as the broker reports them, in arrival order."""
        queue: asyncio.Queue[BrokerEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def subscribe(self) -> asyncio.Queue[BrokerEvent]:
        """A queue that receives every event from now on; pair with ``unsubscribe``."""
        queue: asyncio.Queue[BrokerEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[BrokerEvent]) -> None:
        self._subscribers.discard(queue)

    def add_listener(self, listener: BrokerListener) -> None:
        """Call ``listener(event)`` for every event from now on, synchronously inside ``_emit``
        (on the event loop thread), before the call that caused the event returns.

        For a consumer that only passes events on, such as the manager: it saves a queue and a
        task switch per event. A listener must be quick and must not await; an exception from
        it is logged and dropped, never raised into the broker.
        """
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: BrokerListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: BrokerEvent) -> None:
        """Deliver an event to every subscriber and listener. Call on the event loop thread only."""
        # try/except rather than contextlib.suppress: this runs for every order update and fill,
        # and a context manager per event costs as much as the delivery.
        if self._subscribers:
            for queue in tuple(self._subscribers):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    pass
        if self._listeners:
            for listener in tuple(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("%s: an update listener failed", self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}{' LIVE' if self.live else ''}>"
