"""Reading the accounts and showing what they hold: when to re-read, and how a snapshot reaches
the positions and account panes without ever holding up the halt key or the price ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from brokers.manager import MultiBrokerManager
from brokers.models import Position

from .messages import LogEvent, SnapshotRefreshed

if TYPE_CHECKING:
    from .app import TradingConsoleApp

SOON_SECONDS = 0.05
"""How long a burst of fills is gathered before the accounts are read again once for all."""


def positions_signature(manager: MultiBrokerManager) -> Hashable:
    """What the positions table shows apart from prices: who holds what, at what average, and
    which accounts' data is stale. Cheap next to consolidating."""
    snapshot = manager.snapshot
    return (
        snapshot.stale,
        tuple(
            (account, tuple((p.symbol, p.quantity, p.avg_price) for p in positions))
            for account, positions in snapshot.positions.items()
        ),
    )


class AccountData:
    def __init__(self, app: TradingConsoleApp) -> None:
        self.app = app
        self._soon_pending = False
        self._lock = asyncio.Lock()
        self._shown_signature: Hashable = None

    def schedule(self) -> None:
        """The next periodic read, scheduled only after the last one finished, so slow brokers
        never pile up overlapping reads."""
        interval = self.app.config.ui.refresh_interval_seconds
        self.app.set_timer(interval, self._periodic, name="refresh")

    def _periodic(self) -> None:
        self.app.run_worker(self._read_then_schedule(), name="refresh", group="refresh", exit_on_error=False)

    async def _read_then_schedule(self) -> None:
        # The manager's own heartbeat also reads every account: a snapshot younger than the
        # interval is shown as it is rather than read again.
        try:
            taken_at = self.app.runtime.manager.snapshot.taken_at
            age = (datetime.now(UTC) - taken_at).total_seconds()
            if age >= self.app.config.ui.refresh_interval_seconds * 0.9:
                await self.read()
            else:
                await self.show()
        finally:
            self.schedule()

    def read_soon(self) -> None:
        if self._soon_pending:
            return
        self._soon_pending = True

        def go() -> None:
            self._soon_pending = False
            self.app.run_worker(self.read(), name="refresh-now", group="refresh-now", exit_on_error=False)

        self.app.set_timer(SOON_SECONDS, go)

    async def read(self) -> None:
        """Re-read every account, then show the result."""
        try:
            await self.app.runtime.manager.refresh()
        except Exception as exc:
            self.app.post_message(LogEvent(f"refresh failed: {exc}", "error"))
        await self.show()

    async def show(self, *, force: bool = False) -> None:
        """Show the manager's last snapshot.

        Consolidating thousands of positions is pure computation that takes a good part of a
        second, so it runs in a thread, and only when quantities changed (prices are the
        tick's business); the table is then filled a slice at a time."""
        # Loaded with the runtime, after the first frame.
        from brokers.consolidation import consolidate_positions, consolidate_totals
        from brokers.settled_cash import totals_with_fills

        app = self.app
        async with self._lock:
            manager = app.runtime.manager
            # Today's fills, copied on the event loop where the book takes them.
            trades = app.runtime.execution.book.day_trades()
            snapshot, fx = manager.snapshot, manager.fx
            currencies = {name: status.currency for name, status in manager.statuses().items()}

            def mark(position: Position) -> Decimal | None:
                return manager.last_price(position.instrument, position.account)

            signature = (positions_signature(manager), trades)
            try:
                positions = None
                if force or signature != self._shown_signature:
                    positions = await asyncio.to_thread(
                        consolidate_positions, snapshot, fx, mark, trades, manager.previous_close
                    )
                totals = await asyncio.to_thread(
                    consolidate_totals,
                    currencies,
                    snapshot,
                    fx,
                    mark,
                    manager.base_currency,
                    trades,
                    manager.previous_close,
                )
                if app.runtime.cash_ledger is not None:
                    # Settled cash as the cash accounts' fills give it, beside the brokers' own.
                    totals = totals_with_fills(totals, snapshot, app.runtime.cash_ledger, app.runtime.fx)
            except Exception as exc:
                app.post_message(LogEvent(f"consolidating positions failed: {exc}", "error"))
                return
            if not app.is_running:
                return
            if positions is not None:
                await app.positions.show_positions(positions)
                self._shown_signature = signature
                app.quotes.want_positions()
            with app.batch_update():
                app.accounts.show_accounts(totals)
                app.show_statuses()
        app.post_message(SnapshotRefreshed())

    def tick_prices(self) -> None:
        """Reprice the rows on screen from the last prices held in memory."""
        app = self.app
        with app.batch_update():
            app.positions.tick(app.runtime.manager.last_price, app.runtime.fx.convert)
