"""What tests in every folder share. ``from support import until`` works from any of them: the
pytest configuration puts ``tests/`` on ``sys.path``, as it does for the loopback ``peers``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from brokers.execution import ExecutionService
from brokers.manager import MultiBrokerManager


async def until(
    condition: Callable[[], object],
    *,
    within: float = 5.0,
    step: float = 0.005,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
    failure: str | Callable[[], str] = "condition not met in time",
) -> None:
    """Wait until ``condition()`` is true: brokers, peers and the app answer on their own schedule.

    The condition is checked at once, then after every ``pause(step)``, and once more after the
    deadline has passed, so a slow machine fails only a condition that truly never held. Raises
    ``TimeoutError`` with ``failure`` (a string, or a function called at that moment to describe
    the state that was seen) after ``within`` seconds. ``pause`` is what lets the rest of the
    program run meanwhile: ``asyncio.sleep`` by default, ``pilot.pause`` for a Textual app so its
    messages are processed between checks.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(failure() if callable(failure) else failure)
        await pause(step)


@contextlib.asynccontextmanager
async def running(manager: MultiBrokerManager, service: ExecutionService) -> AsyncIterator[None]:
    """A manager and its execution service connected and started for a test, stopped after it."""
    await manager.connect_all()
    await manager.start()
    await service.start()
    try:
        yield
    finally:
        await service.stop()
        await manager.stop()
        await manager.disconnect_all()
