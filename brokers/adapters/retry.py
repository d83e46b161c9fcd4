"""How adapters read: retried with backoff on transient failures only (the last failure raised
as itself), and identical reads in flight at once sharing one request. Orders are never
retried (see ``brokers.execution``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ..errors import is_transient


def read_retrying(attempts: int, first_wait: float) -> AsyncRetrying:
    """``async for attempt in read_retrying(...): with attempt: ...``: up to ``attempts`` tries,
    waiting ``first_wait`` seconds after the first failure, then doubling, at most 2 s."""
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_wait, max=2),
        reraise=True,
    )


class SharedReads:
    """Identical reads in flight at once share one request: the manager's refresh asks for the
    balance and the positions together, and a broker whose balance needs the positions too
    then sends one positions request, not two."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def read(self, key: str, start: Callable[[], Awaitable[Any]]) -> Any:
        shared = self._inflight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(start())
            self._inflight[key] = shared
            shared.add_done_callback(
                lambda done: (self._inflight.pop(key, None), done.cancelled() or done.exception())
            )
        # Shielded: one caller giving up does not cancel the request the others wait for.
        return await asyncio.shield(shared)
