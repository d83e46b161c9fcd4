"""Calling brokers under a time limit, and the per-account results of calls that fan out.

A broker call that overruns its limit is abandoned rather than awaited, so one slow or hanging
broker never holds up the caller; the abandoned call is still tracked so shutdown can wait for
it briefly instead of leaving it running unseen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["BoundedCalls", "CallResult", "CancelAllResult", "describe_error"]

T = TypeVar("T")

# Error text ends up on an account's status line, where a whole error page from a broker would not fit.
_ERROR_MAX_LEN = 300


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= _ERROR_MAX_LEN else text[: _ERROR_MAX_LEN - 1] + "…"


@dataclass(frozen=True, slots=True)
class CallResult(Generic[T]):
    """One broker's answer in a fan-out: a value, or the error that took its place."""

    account: str
    ok: bool
    value: T | None = None
    error: str | None = None
    elapsed_ms: float = 0.0
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class CancelAllResult:
    account: str
    ok: bool
    order_ids: tuple[str, ...] = ()
    error: str | None = None
    elapsed_ms: float = 0.0

    @property
    def cancelled(self) -> int:
        return len(self.order_ids)


class BoundedCalls:
    """Awaits calls for a limited time and keeps hold of the ones it gave up on."""

    def __init__(self) -> None:
        # Calls abandoned after their timeout; cancelled, and awaited on shutdown.
        self.abandoned: set[asyncio.Future[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()

    async def bounded(self, awaitable: Awaitable[T], limit: float) -> T:
        """Await for at most ``limit`` seconds. The call runs as its own task behind a shield, so a broker
        call that ignores cancellation is abandoned on time instead of holding the caller."""
        task = asyncio.ensure_future(awaitable)
        try:
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except BaseException:
            self.abandon(task)
            raise

    def abandon(self, task: asyncio.Future[T]) -> None:
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" noise
            return
        task.cancel()
        self.abandoned.add(task)

        def _forget(done: asyncio.Future[T]) -> None:
            self.abandoned.discard(done)
            if not done.cancelled():
                done.exception()

        task.add_done_callback(_forget)

    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def call(self, account: str, start: Callable[[], Awaitable[T]], limit: float) -> CallResult[T]:
        """``await start()`` for at most ``limit`` seconds; whatever happens becomes a result."""
        started = time.perf_counter()
        try:
            value = await self.bounded(start(), limit)
        except TimeoutError:
            return CallResult(
                account,
                False,
                None,
                f"no answer within {limit:g} s",
                (time.perf_counter() - started) * 1000,
                True,
            )
        except Exception as exc:
            return CallResult(
                account, False, None, describe_error(exc), (time.perf_counter() - started) * 1000
            )
        return CallResult(account, True, value, None, (time.perf_counter() - started) * 1000)
