"""One place that hands events to whoever listens: queues for consumers that read at their own
pace, and listeners for quick synchronous relays. Brokers and the manager each own one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


class EventHub(Generic[E]):
    def __init__(self, owner: str) -> None:
        self.owner = owner
        # Tuples, replaced whole on every change: a publish walks what was there when it
        # began, without a copy per event, whoever subscribes or leaves meanwhile.
        self.queues: tuple[asyncio.Queue[E], ...] = ()
        self.listeners: tuple[Callable[[E], Any], ...] = ()

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

    def add_listener(self, listener: Callable[[E], Any]) -> None:
        if listener not in self.listeners:
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: Callable[[E], Any]) -> None:
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
