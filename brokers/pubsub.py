"""One place that hands events to whoever listens: queues for consumers that read at their own
pace, and listeners for quick synchronous relays. Brokers and the manager each own one.

``TurnBatch`` is the one way the library defers work to the end of the current turn of the
event loop, so that everything that arrives in one turn is handled at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


class EventHub(Generic[E]):
    def __init__(self, owner: str) -> None:
        self.owner = owner
        # Tuples, replaced whole on every change: a publish walks what was there when it
        # began, without a copy per event, whoever subscribes or leaves meanwhile.
        self.queues: tuple[asyncio.Queue[E], ...] = ()
        self.listeners: tuple[Callable[[E], object], ...] = ()

    def __bool__(self) -> bool:
        """Whether anybody listens: events nobody hears need not be built."""
        return bool(self.queues or self.listeners)

    def subscribe(self) -> asyncio.Queue[E]:
        queue: asyncio.Queue[E] = asyncio.Queue()
        self.queues = (*self.queues, queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[E]) -> None:
        self.queues = tuple(known for known in self.queues if known is not queue)

    async def stream(self) -> AsyncIterator[E]:
        queue = self.subscribe()
        try:
            while True:
                yield await queue.get()
        finally:
            self.unsubscribe(queue)

    def add_listener(self, listener: Callable[[E], object]) -> None:
        if listener not in self.listeners:
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: Callable[[E], object]) -> None:
        if listener in self.listeners:
            listeners = list(self.listeners)
            listeners.remove(listener)
            self.listeners = tuple(listeners)

    def publish(self, event: E) -> None:
        """Deliver to every queue and listener. Call on the event loop thread only."""
        # try/except rather than contextlib.suppress: this runs for every order update and fill,
        # and a context manager per event costs as much as the delivery.
        for queue in self.queues:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                pass
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("%s: an event listener failed", self.owner)


T = TypeVar("T")


class TurnBatch(Generic[T]):
    """Items gathered during one turn of the event loop and handed to ``deliver`` together, from
    one ``call_soon`` callback at the end of that turn.

    A burst (an order's acceptance and its fills, a client library's callbacks for one message)
    costs one callback, not a queue round trip and a task switch per item; and whatever arrives
    in the same turn is seen together, in arrival order. While paused, items wait until
    ``resume``. ``add`` must be called on the event loop thread.
    """

    __slots__ = ("_deliver", "_handle", "_items", "_paused")

    def __init__(self, deliver: Callable[[list[T]], object], *, paused: bool = False) -> None:
        self._deliver = deliver
        self._items: list[T] = []
        self._handle: asyncio.Handle | None = None
        self._paused = paused

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items.append(item)
        if self._handle is None and not self._paused:
            self._handle = asyncio.get_running_loop().call_soon(self.flush)

    def pause(self) -> None:
        """Hold items from now on until ``resume``; a delivery already scheduled is called off."""
        self._paused = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def resume(self) -> None:
        """Deliver what waits at the end of this turn, and batch by turn again from now on."""
        self._paused = False
        if self._items and self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Deliver what waits now rather than at the end of the turn."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._items:
            return
        items, self._items = self._items, []
        self._deliver(items)

    def discard(self) -> None:
        """Drop what waits, undelivered."""
        self._items = []
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
