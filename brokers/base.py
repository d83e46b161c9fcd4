"""The Broker interface every adapter implements."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Protocol, Self

from .errors import OrderRejectedError
from .events import ManagerEvent
from .fanout import CancelAllResult
from .fx import Money
from .instruments import Instrument
from .listing import Listings
from .models import (
    Balance,
    BrokerCapabilities,
    ConnectionState,
    Fill,
    MarginInfo,
    Order,
    OrderRequest,
    Position,
    utcnow,
)
from .pubsub import EventHub
from .quotes import Listing, OutageSink, Quote, QuoteLimits, QuoteSink, QuoteState, StreamOutage

log = logging.getLogger(__name__)

BrokerEvent = Order | Fill
"""What a broker's update stream yields: a new snapshot of an order, or a fill."""

BrokerListener = Callable[[BrokerEvent], object]


# An account's config keys that are the manager's business, not the broker's: every adapter's
# ``from_config`` passes over them.
ACCOUNT_KEYS = frozenset({"type", "default", "weight", "risk", "label"})


class Broker(ABC):
    """One account at one broker. All I/O is async; nothing here may block the event loop.

    ``place_order`` returns the order as the broker acknowledged it (SUBMITTED, ACCEPTED, or
    already FILLED/REJECTED). A definite refusal raises an ``OrderRejectedError`` subclass; a lost
    answer raises ``BrokerTimeoutError`` or ``BrokerConnectionError``.
    """

    broker_type: str = "base"
    """The name this adapter is registered under (``type`` in an account's config)."""

    late_order_window: float = 0.0
    """Seconds after a lost submit during which the broker may still report the order: only
    once they have passed does "the broker never saw it" count as an answer."""

    def __init__(self, name: str, *, live: bool = False, currency: str = "USD") -> None:
        self.name = name
        self.live = live
        self.currency = currency
        self._hub: EventHub[BrokerEvent] = EventHub(name)
        self._quote_sink: QuoteSink | None = None
        self._outage_sink: OutageSink | None = None
        self._listings = Listings()

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> Self:
        """Build from an account's config (``type`` already removed). By default every setting
        is passed to the constructor by keyword; adapters with their own rules override this."""
        factory: Callable[..., Self] = cls
        return factory(**settings)

    # -- connection -----------------------------------------------------------------------
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def disconnect(self) -> None: ...

    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    def connection_state(self) -> ConnectionState:
        """The adapter's own view of its connection. Adapters that repair their own feed (a
        stream reconnect, an order-book poll) report RESYNCING or DEGRADED here while they do;
        the default follows ``is_connected``."""
        return ConnectionState.CONNECTED if self.is_connected() else ConnectionState.DISCONNECTED

    @property
    def last_error(self) -> str | None:
        """Why the adapter last reported trouble, in a sentence free of secrets; None if it has not."""
        return None

    @property
    def session_expires_at(self) -> datetime | None:
        """When the broker session (e.g. Kite's daily token) stops working, if it does."""
        return None

    @property
    def figures_as_of(self) -> datetime | None:
        """When the positions and balance this broker reports were true, if the broker says
        (a position export: the file's time); None when they are as of the moment they are read."""
        return None

    # -- orders ---------------------------------------------------------------------------
    @abstractmethod
    async def place_order(self, request: OrderRequest) -> Order: ...

    @abstractmethod
    async def cancel_order(self, broker_order_id: str) -> Order: ...

    async def modify_order(self, broker_order_id: str, request: OrderRequest) -> Order:
        """Give a working order the terms of ``request`` (its quantity, limit and stop prices,
        time in force; the same client order id, symbol, side and type) with the broker's own
        replace, so that at no moment are two orders working. Returns the order as the broker
        now holds it. A definite refusal raises an ``OrderRejectedError``; a lost answer raises
        ``BrokerTimeoutError`` or ``BrokerConnectionError``.

        Adapters whose ``capabilities.modify_orders`` is true override this; the rest refuse."""
        raise OrderRejectedError(
            f"{self.name} cannot change a working order; cancel it and place a new one",
            broker=self.name,
            code="UNSUPPORTED",
        )

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

    async def get_last_price(self, instrument: Instrument) -> Decimal | None:
        """Last traded price of ``instrument`` if the adapter knows it cheaply; None otherwise."""
        return None

    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        """Last price of ``instrument`` already held in memory, without I/O (used on the order
        path). Never the price of another instrument with the same symbol: an AAPL option or
        CFD has its own price, not the share's."""
        return None

    @property
    def remembers_since(self) -> datetime | None:
        """From when this account knows its orders and positions: None for a broker that keeps
        them itself across this program's restarts (every real broker). The paper broker keeps
        them in this process only, from its creation on: orders and fills journaled before
        that are not at this account, whatever the journal says."""
        return None

    # -- quotes ---------------------------------------------------------------------------
    @property
    def quote_limits(self) -> QuoteLimits:
        """How many instruments this account may stream; the default streams none."""
        return QuoteLimits(streamed=0)

    def trades(self, instrument: Instrument) -> bool:
        """Whether this account can quote and trade ``instrument`` (a market it lists, a
        currency it settles in). The default: an instrument in this account's currency, or one
        that names no currency."""
        return instrument.currency is None or instrument.currency == self.currency

    async def stream_quotes(self, instruments: frozenset[Instrument]) -> None:
        """Stream exactly these instruments from now on (subscribe the new ones, drop the rest);
        each quote goes to the sink set by ``set_quote_sink``. Never more than
        ``quote_limits.streamed``; the default streams nothing."""
        return None

    async def get_quote(self, instrument: Instrument) -> Quote | None:
        """A one-off quote of ``instrument``, marked SNAPSHOT. The default builds one from the
        last price when the adapter knows it."""
        price = await self.get_last_price(instrument)
        if price is None:
            return None
        return Quote(instrument, self.name, utcnow(), last=price, state=QuoteState.SNAPSHOT)

    def set_quote_sink(self, sink: QuoteSink | None) -> None:
        self._quote_sink = sink

    def _emit_quote(self, quote: Quote) -> None:
        """Hand a streamed quote to the sink. Call on the event loop thread only."""
        sink = self._quote_sink
        if sink is not None:
            try:
                sink(quote)
            except Exception:
                log.exception("%s: quote sink failed", self.name)

    def set_outage_sink(self, sink: OutageSink | None) -> None:
        """Where this broker reports that instruments it was asked to stream are not streaming
        (``StreamOutage``), and that they are again (an outage with no instruments)."""
        self._outage_sink = sink

    def _report_outage(self, outage: StreamOutage) -> None:
        """Hand a change of the stream's outage to the sink. Call on the event loop thread only."""
        sink = self._outage_sink
        if sink is not None:
            try:
                sink(outage)
            except Exception:
                log.exception("%s: outage sink failed", self.name)

    # -- listings -------------------------------------------------------------------------
    async def listing(self, instrument: Instrument) -> Listing | None:
        """Whether this broker lists ``instrument``: LISTED, NOT_TRADABLE (listed, but it takes
        no orders for it now) or NOT_LISTED; None when it cannot tell now (not connected, no
        answer, or an adapter that cannot ask). A definite answer is kept per instrument (see
        ``brokers.listing``), so asking again costs nothing. For the screen, never for the order
        path: nothing that sends an order waits on this."""
        return await self._listings.ask(instrument, self._look_up_listing)

    def listing_nowait(self, instrument: Instrument) -> Listing | None:
        """The answer ``listing`` already holds for ``instrument``, without I/O."""
        return self._listings.known(instrument)

    async def _look_up_listing(self, instrument: Instrument) -> Listing | None:
        """Ask the broker itself (``listing`` keeps the answer). The default cannot tell."""
        return None

    async def get_fx_rates(self) -> dict[str, Decimal]:
        """Rates the broker reports, as {"EURUSD": Decimal(...)} (1 EUR in USD). Usually none."""
        return {}

    # -- update stream --------------------------------------------------------------------
    def updates(self) -> AsyncIterator[BrokerEvent]:
        """Order snapshots and fills as the broker reports them, in arrival order."""
        return self._hub.stream()

    def subscribe(self) -> asyncio.Queue[BrokerEvent]:
        """A queue that receives every event from now on; pair with ``unsubscribe``."""
        return self._hub.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[BrokerEvent]) -> None:
        self._hub.unsubscribe(queue)

    def add_listener(self, listener: BrokerListener) -> None:
        """Call ``listener(event)`` for every event from now on, synchronously inside ``_emit``
        (on the event loop thread), before the call that caused the event returns.

        For a consumer that only passes events on, such as the manager: it saves a queue and a
        task switch per event. A listener must be quick and must not await; an exception from
        it is logged and dropped, never raised into the broker.
        """
        self._hub.add_listener(listener)

    def remove_listener(self, listener: BrokerListener) -> None:
        self._hub.remove_listener(listener)

    def _emit(self, event: BrokerEvent) -> None:
        """Deliver an event to every subscriber and listener. Call on the event loop thread only."""
        self._hub.publish(event)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}{' LIVE' if self.live else ''}>"


# -- what the execution layer relies on ------------------------------------------------------
# Structural types, so that the execution layer states what it uses of its collaborators and
# any object with those members (the manager, a test double) will do.


class FxSource(Protocol):
    """Converts money into the base currency (``brokers.fx.FxRates``)."""

    def convert(self, amount: Decimal | None, currency: str, to: str | None = None) -> Money: ...


class PriceSource(Protocol):
    """Prices held in memory and the accounts they belong to: what the book values positions
    with. Must not do I/O: it is read on the order path."""

    def last_price(self, instrument: Instrument | str, account: str | None = None) -> Decimal | None:
        """The price of ``instrument`` (a plain symbol is a stock). Raises ``KeyError`` for an
        unknown account."""

    def get(self, name: str) -> Broker:
        """Raises ``KeyError`` for an unknown account."""


class AccountDirectory(PriceSource, Protocol):
    """What the execution layer uses of ``brokers.manager.MultiBrokerManager``."""

    @property
    def fx(self) -> FxSource: ...

    @property
    def default_account(self) -> str | None: ...

    def names(self) -> list[str]: ...

    def weights(self) -> dict[str, float]: ...

    def is_available(self, name: str) -> bool: ...

    def unavailable_reason(self, name: str) -> str | None: ...

    async def cancel_all_orders(
        self, accounts: Iterable[str] | None = None, *, per_broker_timeout: float | None = None
    ) -> dict[str, CancelAllResult]: ...

    def add_listener(self, listener: Callable[[ManagerEvent], object]) -> None: ...

    def remove_listener(self, listener: Callable[[ManagerEvent], object]) -> None: ...

    def add_resync_hook(self, hook: Callable[[str], Awaitable[object]]) -> None: ...

    def remove_resync_hook(self, hook: Callable[[str], Awaitable[object]]) -> None: ...


class RecordedEvent(Protocol):
    """One journal row as the kill switch reads it back (``brokers.journal.JournalEvent``)."""

    @property
    def id(self) -> int: ...

    @property
    def time(self) -> datetime: ...

    @property
    def kind(self) -> str: ...

    @property
    def data(self) -> Mapping[str, object]: ...


class EventRecorder(Protocol):
    """Where the kill switch writes halts and resumes, and reads back the last of them
    (``brokers.journal.Journal``)."""

    def record(self, kind: str, *, data: dict[str, object] | None = None) -> object: ...

    def last_halt_or_resume(self) -> RecordedEvent | None: ...
