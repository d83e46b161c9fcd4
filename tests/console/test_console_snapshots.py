"""How the console looks, compared with accepted screenshots (pytest-textual-snapshot).

Deterministic by construction: fixed terminal sizes, a frozen clock, seeded prices with no
price feed, no cursor blink, and a halt flag file with a fixed time. Update with
``uv run pytest tests/console/test_console_snapshots.py --snapshot-update`` after looking at the
report, never blindly.
"""

from __future__ import annotations

import json
import math

from console_support import console, demo, settled, wait_for
from textual.widgets import Input

from brokers.killswitch import FLAG_NAME
from console.tui.screens.order_confirm import OrderConfirmScreen
from console.tui.screens.resume import ResumeScreen

WIDE = (160, 48)
NARROW = (100, 30)
SMALL = (80, 24)


async def ready(pilot) -> None:
    await settled(pilot.app, pilot)


def write_halt_flag(home) -> None:
    state = home / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / FLAG_NAME).write_text(
        json.dumps(
            {"time": "2025-01-02T14:29:05+00:00", "reason": "risk desk: market gapped", "source": "cli"}
        ),
        encoding="utf-8",
    )


def test_main_screen_wide(snap_compare):
    assert snap_compare(console(), terminal_size=WIDE, run_before=ready)


def test_main_screen_narrow(snap_compare):
    assert snap_compare(console(), terminal_size=NARROW, run_before=ready)


def test_main_screen_80x24(snap_compare):
    assert snap_compare(console(), terminal_size=SMALL, run_before=ready)


def test_halted_screen(snap_compare, isolated_home):
    write_halt_flag(isolated_home)
    assert snap_compare(console(), terminal_size=WIDE, run_before=ready)


def test_halted_screen_narrow(snap_compare, isolated_home):
    write_halt_flag(isolated_home)
    assert snap_compare(console(), terminal_size=NARROW, run_before=ready)


def test_order_confirmation_modal(snap_compare):
    async def run_before(pilot) -> None:
        app = pilot.app
        await settled(app, pilot)
        app.order_entry.set_values(symbol="MSFT", quantity="200", type="LIMIT")
        await pilot.pause()
        app.order_entry.set_values(limit="415.00")
        await pilot.pause()
        app.order_entry.action_submit()
        await wait_for(lambda: isinstance(app.screen, OrderConfirmScreen), pilot)

    assert snap_compare(console(demo(paper_us={"live": True})), terminal_size=NARROW, run_before=run_before)


def test_resume_modal(snap_compare, isolated_home):
    write_halt_flag(isolated_home)

    async def run_before(pilot) -> None:
        app = pilot.app
        await settled(app, pilot)
        await pilot.press("ctrl+r")
        await wait_for(lambda: isinstance(app.screen, ResumeScreen), pilot)
        await pilot.press(*"resume")  # lower case: refused, and the modal says why
        app.screen.query_one("#resume-reason", Input).focus()
        await pilot.pause()

    assert snap_compare(console(), terminal_size=NARROW, run_before=run_before)


def test_failed_broker(snap_compare):
    app = console(demo(paper_in={"faults": {"fail_connects": math.inf}}))
    # One failed attempt on screen, not a retry racing the screenshot.
    app.runtime.manager.backoff.initial = 3600
    app.runtime.manager.backoff.maximum = 3600
    assert snap_compare(app, terminal_size=WIDE, run_before=ready)
