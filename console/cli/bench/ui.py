"""Console responsiveness: event-loop lag and halt-key reaction with 5,000 positions across four
paper accounts while prices tick. Run by ``trading-console bench``; not a test.

The console runs headless at 160x48 with its real runtime. Lag is how late a 10 ms sleep wakes
up while the screen reprices and refreshes; the halt key is timed from the key event to the
banner being shown (the flag already persisted; the next frame paints it), worst of five; the
external halt from the flag file appearing to the banner.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brokers.config import Config

ACCOUNTS = 4
POSITIONS_PER_ACCOUNT = 1250
TICK_INTERVAL = 0.25
MEASURE_SECONDS = 6.0
FRAME_MS = 1000 / 60
LAG_TARGET_MS = 50.0
EXTERNAL_HALT_TARGET_MS = 250.0
HALT_TRIALS = 5


def bench_config(state_dir: Path) -> Config:
    from brokers.config import parse_config

    accounts = []
    for index in range(ACCOUNTS):
        first = index * POSITIONS_PER_ACCOUNT
        symbols = [f"S{n:04d}" for n in range(first, first + POSITIONS_PER_ACCOUNT)]
        prices = {symbol: str(Decimal(50) + Decimal(n % 400)) for n, symbol in enumerate(symbols)}
        positions = {symbol: [str(10 + n % 90), prices[symbol]] for n, symbol in enumerate(symbols)}
        accounts.append(
            {
                "name": f"bench-{index + 1}",
                "type": "sim",
                "currency": "USD",
                "default": index == 0,
                "initial_cash": 10_000_000,
                "prices": prices,
                "initial_positions": positions,
                "seed": 100 + index,
                "tick_interval": TICK_INTERVAL,
            }
        )
    config = parse_config({"base_currency": "USD", "accounts": accounts}, where="bench")
    config.state_dir = state_dir
    return config


async def lag_probe(samples: list[float], stop: asyncio.Event, period: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(period)
        samples.append(max(0.0, (loop.time() - start - period) * 1000))


async def wait_until(predicate: Callable[[], bool], within: float) -> float:
    """Seconds until ``predicate()`` holds, checking at every turn of the event loop."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > within:
            return math.inf
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def run() -> dict[str, Any]:
    from textual import events

    from brokers.killswitch import KillSwitch
    from console.tui.app import make_app
    from console.tui.tuning import ProcessTuning

    with tempfile.TemporaryDirectory(prefix="tc-bench-ui-") as tmp:
        config = bench_config(Path(tmp))
        # Tuned as the console's launcher tunes its process, and put back afterwards.
        tuning = ProcessTuning()
        app = make_app(config, start_feed=True, cursor_blink=False, on_accounts_loaded=tuning.accounts_loaded)
        tuning.loaded()
        result: dict[str, Any] = {"positions": ACCOUNTS * POSITIONS_PER_ACCOUNT, "accounts": ACCOUNTS}
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                started = time.perf_counter()
                await app.wait_until_ready(within=60)
                result["first_snapshot_ms"] = round((time.perf_counter() - started) * 1000, 1)
                result["rows_shown"] = len(app.positions.rows)
                await pilot.pause(0.5)

                samples: list[float] = []
                stop = asyncio.Event()
                probe = asyncio.create_task(lag_probe(samples, stop))
                await asyncio.sleep(MEASURE_SECONDS)
                stop.set()
                await probe
                ordered = sorted(samples)
                result["lag_max_ms"] = round(ordered[-1], 2)
                result["lag_p99_ms"] = round(ordered[int(len(ordered) * 0.99) - 1], 2)
                result["lag_median_ms"] = round(statistics.median(ordered), 2)
                result["lag_ok"] = result["lag_max_ms"] < LAG_TARGET_MS

                # The halt key, delivered the way the terminal driver delivers it, a few times over
                # while prices keep ticking; resumed in between.
                reactions: list[float] = []
                for _ in range(HALT_TRIALS):
                    app.post_message(events.Key("f12", None))
                    reactions.append(await wait_until(lambda: app.banner.display, within=5) * 1000)
                    await pilot.pause(0.3)
                    await app.runtime.execution.resume("bench", "bench")
                    await wait_until(lambda: not app.banner.display, within=5)
                    await pilot.pause(0.3)
                worst = max(reactions)
                result["halt_reaction_ms"] = round(statistics.median(reactions), 2)
                result["halt_reaction_max_ms"] = round(worst, 2)
                result["halt_reaction_frames"] = max(1, math.ceil(worst / FRAME_MS))
                result["halt_reaction_ok"] = result["halt_reaction_frames"] <= 1

                # A halt written by someone else: the flag file, picked up by the poll. Started at
                # different points of the poll cycle; the worst counts.
                external: list[float] = []
                for trial in range(HALT_TRIALS):
                    await asyncio.sleep(0.037 * trial)
                    KillSwitch(app.runtime.state_dir, env={}).halt("bench: external", source="bench")
                    external.append(await wait_until(lambda: app.banner.display, within=5) * 1000)
                    await app.runtime.execution.resume("bench", "bench")
                    await wait_until(lambda: not app.banner.display, within=5)
                    await pilot.pause(0.2)
                result["external_halt_ms"] = round(max(external), 1)
                result["external_halt_median_ms"] = round(statistics.median(external), 1)
                result["external_halt_ok"] = max(external) < EXTERNAL_HALT_TARGET_MS
        finally:
            tuning.restore()
        return result


def main() -> None:
    for name, value in asyncio.run(run()).items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
