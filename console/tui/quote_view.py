"""The console's side of quotes: what the screen wants quoted, one repaint tick for every pane
that shows quotes, and the watchlist kept in the config file.

The quote board keeps the latest quote per instrument and the set that changed; this takes
that set once per tick (ten times a second) and hands it to the order ticket and the
watchlist, so a burst of quotes costs each row one repaint.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from brokers.instruments import Instrument
from brokers.quotes import StreamOutage

from .market import Market, QuoteBoardView
from .messages import LogEvent

if TYPE_CHECKING:
    from .app import TradingConsoleApp

log = logging.getLogger(__name__)

POSITIONS_OWNER = "positions"
TICK_SECONDS = 0.1
"""Quotes reach the screen at most ten times a second."""


class QuoteView:
    def __init__(self, app: TradingConsoleApp, board: QuoteBoardView) -> None:
        self.app = app
        runtime = app.runtime
        self.board = board
        self.market = Market(runtime.manager, self.board, runtime.execution.routes.account_for)
        self._positions: frozenset[Instrument] = frozenset()
        self._said_session_only = False
        self._unsaved: list[str] | None = None
        self._writing = asyncio.Lock()
        # Accounts whose quote stream is down, shown under the connections for as long as it is:
        # the account itself may be CONNECTED for orders meanwhile.
        self.outages: dict[str, StreamOutage] = {}
        board.add_outage_listener(self._on_outage)

    def _on_outage(self, account: str, outage: StreamOutage) -> None:
        """An account's stream failed, or streams again: said once each in the event log, and
        shown under the connections until it streams again."""
        if outage.instruments:
            self.outages[account] = outage
        else:
            self.outages.pop(account, None)
        # Through the app's queue: the stream may fail before the connections pane is on screen.
        self.app.call_later(self.app.show_statuses)
        if outage.instruments:
            count = len(outage.instruments)
            text = (
                f"{account}: quotes not streaming ({outage.reason or 'no reason given'}); "
                f"{count} instrument{'s' if count != 1 else ''} shown as SNAPSHOT until streaming resumes"
            )
            self.app.post_message(LogEvent(text, "warning"))
        else:
            self.app.post_message(LogEvent(f"{account}: quotes streaming again"))

    def tick(self) -> None:
        """Repaint what changed since the last tick."""
        changed = self.board.take_changed()
        if not changed:
            return
        app = self.app
        with app.batch_update():
            app.order_entry.show_quotes(changed)
            app.watchlist.show_quotes(changed)

    def tick_second(self) -> None:
        """A quote turns STALE without a new one arriving: look at every row again."""
        self.app.watchlist.show_all()

    def want_positions(self) -> None:
        """Quote every instrument held, at any account."""
        snapshot = self.app.runtime.manager.snapshot
        held = frozenset(p.instrument for rows in snapshot.positions.values() for p in rows)
        if held != self._positions:
            self._positions = held
            self.board.want(POSITIONS_OWNER, held)

    # -- the watchlist in the config file ----------------------------------------------------
    def save_watchlist(self, symbols: tuple[str, ...]) -> None:
        source = self.app.config.source
        if source is None:
            if not self._said_session_only:
                self._said_session_only = True
                self.app.post_message(
                    LogEvent(
                        "watchlist kept for this session only: the console was started without a config file"
                    )
                )
            return
        self._unsaved = list(symbols)
        self.app.run_worker(self._write(), name="save-watchlist", group="watchlist")

    async def _write(self) -> None:
        # One write at a time, each of the newest list: a quick add then remove ends with the
        # file holding what the pane holds.
        async with self._writing:
            symbols, self._unsaved = self._unsaved, None
            source = self.app.config.source
            if symbols is None or source is None:
                return
            from .watchlist_file import save_watchlist

            try:
                await asyncio.to_thread(save_watchlist, source, symbols)
            except (OSError, ValueError) as exc:
                log.warning("watchlist not saved to %s: %s", source, exc)
                text = f"watchlist not saved to {source}: {exc}"
                self.app.post_message(LogEvent(text, "error", toast=True))
                return
        self.app.post_message(LogEvent(f"watchlist saved to {source}: {', '.join(symbols) or 'empty'}"))
