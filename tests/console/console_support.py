"""Console test helpers: the demo config without a price feed, a frozen clock, and an app
factory; ``settled`` waits until the accounts are connected and read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from support import until

from brokers.config import Config, demo_config, parse_config
from console.app import TradingConsoleApp, make_app

FROZEN = datetime(2025, 1, 2, 14, 30, 0, tzinfo=UTC)


def frozen_clock() -> datetime:
    return FROZEN


def demo(**account_changes: dict[str, Any]) -> Config:
    """The seeded demo with no moving prices; ``paper_in={"live": True}`` changes one account."""
    data = demo_config(seed=7, tick_interval=None).model_dump(mode="python", exclude_none=True)
    for account in data["accounts"]:
        account.update(account_changes.get(account["name"].replace("-", "_"), {}))
    return parse_config(data, where="test")


def console(config: Config | None = None, **kwargs: Any) -> TradingConsoleApp:
    kwargs.setdefault("clock", frozen_clock)
    kwargs.setdefault("start_feed", False)
    kwargs.setdefault("cursor_blink", False)
    return make_app(config or demo(), **kwargs)


async def settled(app: TradingConsoleApp, pilot: Any) -> None:
    """Runtime started, first refresh shown, and every account's latency reads "<1 ms" so
    screenshots do not depend on how busy the machine was at start-up."""
    await app.wait_until_ready()
    manager = app.runtime.manager
    for _ in range(20):
        statuses = manager.statuses().values()
        if all(s.latency_ms is None or s.latency_ms < 1 for s in statuses):
            break
        await manager.refresh()
    await app.show_snapshot()
    await pilot.pause()


async def wait_for(predicate: Callable[[], bool], pilot: Any, within: float = 5.0) -> None:
    """Let the app run until ``predicate()`` holds; fail after ``within`` seconds."""
    await until(predicate, within=within, step=0.02, pause=pilot.pause)
