"""Console test helpers: the demo config without a price feed, a frozen clock, a fixed latency
and an app factory; ``settled`` waits until the accounts are connected and read, ``submit``
fills in the order pane and submits it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from support import until

from brokers.config import Config, demo_config, parse_config
from brokers.models import AccountStatus
from brokers.quote_board import QuoteBoard
from brokers.runtime import build_runtime
from console.tui.app import TradingConsoleApp, make_app

FROZEN = datetime(2025, 1, 2, 14, 30, 0, tzinfo=UTC)


def frozen_clock() -> datetime:
    return FROZEN


def demo(**account_changes: dict[str, Any]) -> Config:
    """The seeded demo with no moving prices; ``paper_in={"live": True}`` changes one account."""
    data = demo_config(seed=7, tick_interval=None).model_dump(mode="python", exclude_none=True)
    # The screen reads the accounts again only when a test asks (``settled``, ``show_snapshot``)
    # or an order changes: a periodic read landing during a screenshot would make what it
    # shows depend on how long the test took.
    data["ui"]["refresh_interval_seconds"] = 60
    for account in data["accounts"]:
        account.update(account_changes.get(account["name"].replace("-", "_"), {}))
    return parse_config(data, where="test")


FIXED_LATENCY_MS = 0.4


def fixed_latency(status: AccountStatus) -> float | None:
    """What a quick broker shows, whatever the machine's load made the real call take; an
    account never measured still shows none."""
    return None if status.latency_ms is None else FIXED_LATENCY_MS


def console(config: Config | None = None, **kwargs: Any) -> TradingConsoleApp:
    """The app on the seeded demo; the screen reads quotes from a board of its own, on the
    frozen clock and never started: it shows only the quotes a test hands it (``quote_support``),
    whatever the paper accounts' own quotes do meanwhile."""
    config = config or demo()
    kwargs.setdefault("clock", frozen_clock)
    kwargs.setdefault("latency", fixed_latency)
    kwargs.setdefault("start_feed", False)
    kwargs.setdefault("cursor_blink", False)
    if "quotes" not in kwargs:
        runtime = kwargs.get("runtime") or build_runtime(config)
        kwargs["runtime"] = runtime
        kwargs["quotes"] = QuoteBoard(runtime.manager, clock=frozen_clock)
    return make_app(config, **kwargs)


async def settled(app: TradingConsoleApp, pilot: Any) -> None:
    """Runtime started and the first refresh shown."""
    await app.wait_until_ready()
    await app.show_snapshot()
    await pilot.pause()


async def submit(app: TradingConsoleApp, pilot: Any, **values: str | bool) -> None:
    """Type ``values`` into the order pane, let it take them in, and submit it."""
    app.order_entry.set_values(**values)
    await pilot.pause()
    app.order_entry.action_submit()


async def wait_for(predicate: Callable[[], bool], pilot: Any = None, within: float = 5.0) -> None:
    """Let the app (or, without a pilot, the event loop) run until ``predicate()`` holds; fail
    after ``within`` seconds."""
    pause = asyncio.sleep if pilot is None else pilot.pause
    await until(predicate, within=within, step=0.02, pause=pause)
