"""The command palette's entries: every action the keys reach, findable by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

if TYPE_CHECKING:
    from .app import TradingConsoleApp


def console_commands(app: TradingConsoleApp) -> Iterator[SystemCommand]:
    key = app.key_label
    yield SystemCommand("HALT trading", f"Halt and cancel open orders ({key('halt')})", app.action_halt)
    yield SystemCommand("Resume trading", f"Type RESUME and a reason ({key('resume')})", app.action_resume)
    yield SystemCommand(
        "Reduce-only",
        f"Accept only orders that shrink a position ({key('reduce_only')})",
        app.action_reduce_only,
    )
    yield SystemCommand("Submit order", "Send the order in the order entry", app.action_submit)
    yield SystemCommand(
        "Cancel selected order",
        f"Cancel the order selected in the blotter ({key('cancel_order')})",
        app.action_cancel_order,
    )
    yield SystemCommand("Focus order entry", key("focus_order_entry"), app.action_focus_order_entry)
    yield SystemCommand("Focus blotter", key("focus_blotter"), app.action_focus_blotter)
    yield SystemCommand("Focus positions", key("focus_positions"), app.action_focus_positions)
    yield SystemCommand("Focus watchlist", key("focus_watchlist"), app.action_focus_watchlist)
    yield SystemCommand("Refresh accounts", "Re-read balances and positions now", app.refresh_soon)
