"""The trading state in the console: the halt key's one door into the library, the one poller of
the flag, and the halt key while the brokers are still connecting; the confirmation built from
the execution layer's preview."""

from __future__ import annotations

import asyncio

import pytest
from console_support import console, demo, settled, submit, wait_for

from brokers.killswitch import FLAG_NAME
from brokers.runtime import Runtime, build_runtime
from console.tui.screens.order_confirm import OrderConfirmScreen

SIZE = (160, 48)


def gated(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold the runtime's start (brokers connecting) until the returned event is set."""
    gate = asyncio.Event()
    start = runtime.start

    async def held_start(*, connect: bool = True) -> None:
        await gate.wait()
        await start(connect=connect)

    monkeypatch.setattr(runtime, "start", held_start)
    return gate


async def test_the_service_polls_the_flag_once_started_and_the_console_stops_its_own(isolated_home):
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        assert app.trading.startup_over
        assert not app.trading.startup_polling
        (app.runtime.state_dir / FLAG_NAME).touch()
        await wait_for(lambda: app.banner.has_class("-halted"), pilot, within=1)


async def test_halt_key_while_the_brokers_connect_writes_the_flag_then_cancels_once_they_are_up(
    isolated_home, monkeypatch
):
    config = demo()
    runtime = build_runtime(config)
    gate = gated(runtime, monkeypatch)
    app = console(config, runtime=runtime)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not app.trading.startup_over and app.trading.startup_polling
        await pilot.press("f12")
        # On disk and on screen before any broker is connected.
        assert (runtime.state_dir / FLAG_NAME).exists()
        assert app.banner.has_class("-halted") and "halt key" in str(app.banner.render())
        assert app.banner.cancel_all_running and app.banner.outcomes is None
        gate.set()
        await app.wait_until_ready()
        await wait_for(lambda: app.banner.outcomes is not None, pilot)
        assert set(app.banner.outcomes) == {"paper-us", "paper-us-cash", "paper-in"}
        assert all(outcome.ok for outcome in app.banner.outcomes.values())
        assert not app.trading.startup_polling
        halts = [event for event in runtime.journal.events() if event.kind == "halt"]
        assert len(halts) == 1


async def test_a_flag_written_while_the_brokers_connect_shows_at_once(isolated_home, monkeypatch):
    config = demo()
    runtime = build_runtime(config)
    gate = gated(runtime, monkeypatch)
    app = console(config, runtime=runtime)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        (runtime.state_dir / FLAG_NAME).touch()
        await wait_for(lambda: app.banner.has_class("-halted"), pilot, within=1)
        gate.set()
        await app.wait_until_ready()
        assert app.banner.has_class("-halted")


async def test_a_runtime_that_fails_to_start_leaves_the_console_polling_the_flag(isolated_home, monkeypatch):
    config = demo()
    runtime = build_runtime(config)

    async def failing_start(*, connect: bool = True) -> None:
        raise RuntimeError("no state folder today")

    monkeypatch.setattr(runtime, "start", failing_start)
    app = console(config, runtime=runtime)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.runtime_error is not None and app.trading.startup_over, pilot)
        assert app.trading.startup_polling
        (runtime.state_dir / FLAG_NAME).touch()
        await wait_for(lambda: app.banner.has_class("-halted"), pilot, within=1)


async def test_a_split_that_gives_a_live_account_nothing_does_not_ask():
    app = console(demo(paper_in={"live": True}))
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await submit(app, pilot, symbol="AAPL", quantity="1", split=True)
        # Sent at once: the whole share goes to paper-us, the LIVE paper-in gets no part.
        await wait_for(lambda: len(app.blotter.orders) == 1, pilot)
        assert not isinstance(app.screen, OrderConfirmScreen)
        assert {order.account for order in app.blotter.orders.values()} == {"paper-us"}


async def test_a_split_confirmation_names_each_part_and_the_live_account():
    app = console(demo(paper_in={"live": True}))
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await submit(app, pilot, symbol="AAPL", quantity="3", split=True)
        await wait_for(lambda: isinstance(app.screen, OrderConfirmScreen), pilot)
        screen = app.screen
        assert screen.live_accounts == ["paper-in"]
        details = str(screen.query_one("#confirm-details").render())
        assert "split across: paper-us 1, paper-us-cash 1, paper-in 1 LIVE" in details
        assert "notional ≈ 682.50 USD" in details
        await pilot.press("y")
        await wait_for(lambda: len(app.blotter.orders) == 3, pilot)
