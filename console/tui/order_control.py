"""What the trader does to orders already sent and to positions, on screen: modify the selected
order, cancel all working orders without halting, flatten positions. Each action asks first in a
modal (cancel-all and flatten list every order they will cancel or send), then runs the library
call in a worker, and reports the outcome in the event log (a refusal also as a toast); the blotter
follows the orders themselves through ``OrderChanged``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from brokers.instruments import Instrument
from brokers.models import Order, OrderStatus, TradingState
from console import formatting as fmt

from .messages import LogEvent, OrderChanged

if TYPE_CHECKING:
    from brokers.monitoring import Alert, ExecutionMonitor

    from .app import TradingConsoleApp
    from .screens.order_modify import OrderChange


# Today's earlier orders brought back into the blotter on start: enough for the session a
# trader is in, few enough that a busy day does not hold up the screen.
BLOTTER_PAST_ORDERS = 200


def _named(what: str | Instrument | None) -> str:
    """A symbol as typed, or an instrument's label (``AAPL CFD``); empty for none."""
    if what is None:
        return ""
    return what.label if isinstance(what, Instrument) else what


class OrderControl:
    def __init__(self, app: TradingConsoleApp) -> None:
        self.app = app
        self.monitor: ExecutionMonitor | None = None

    # -- execution monitoring ----------------------------------------------------------------
    def start_monitoring(self) -> None:
        """Alerts from ``brokers.monitoring`` into the event log and the blotter's counter, and
        the day's commission beside it. Call once the runtime has started."""
        from brokers.monitoring import ExecutionMonitor

        app = self.app
        execution = app.runtime.execution
        monitor = ExecutionMonitor(
            subscribe=execution.subscribe,
            unsubscribe=execution.unsubscribe,
            last_price=execution.book.last_price,
            kill_switch=app.runtime.kill_switch,
            journal=app.runtime.journal,
            settings=app.runtime.config.monitoring,
        )
        monitor.add_listener(self._on_alert)
        monitor.start()
        self.monitor = monitor
        self.show_commission()
        app.set_interval(2.0, self.show_commission, name="commission")

    async def stop_monitoring(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()
            self.monitor = None

    def _on_alert(self, alert: Alert) -> None:
        app = self.app
        app.post_message(LogEvent(f"alert {alert.kind.value}: {alert.message}", "warning"))
        app.call_later(app.blotter.show_alerts, self.monitor.count if self.monitor is not None else 0)

    def show_commission(self) -> None:
        from brokers.history import start_of_day
        from brokers.monitoring import commission_by_account

        app = self.app
        if not app.is_running:
            return
        blotter = app.blotter
        blotter.show_commission(commission_by_account(blotter.orders.values(), start_of_day(app.clock())))

    def _usable(self, order: Order | None) -> Order | None:
        """The selected order if it can be acted on now; else None, and the trader is told why."""
        app = self.app
        if order is None:
            app.notify("Select an order in the blotter first", timeout=3)
            return None
        if order.is_terminal:
            app.notify(f"Order is already {order.status.value}", timeout=3)
            return None
        orphaned = app.blotter.orphan_note(order)
        if orphaned is not None:
            app.notify(orphaned, severity="warning", timeout=8)
            return None
        if not order.broker_order_id or not order.account:
            app.notify("The broker has not acknowledged this order yet", severity="warning", timeout=3)
            return None
        return order

    # -- cancel the selected order -----------------------------------------------------------
    def cancel_selected(self) -> None:
        order = self._usable(self.app.blotter.selected_order())
        # _usable has told the trader why when either is missing.
        if order is None or order.account is None or order.broker_order_id is None:
            return
        account, broker_order_id = order.account, order.broker_order_id
        self.app.event_log.add(f"cancel requested: {fmt.describe_request(order.request)} at {account}")
        self.app.run_worker(
            self._cancel(account, broker_order_id), name="cancel", group="orders", exit_on_error=False
        )

    async def _cancel(self, account: str, broker_order_id: str) -> None:
        app = self.app
        try:
            order = await app.runtime.execution.cancel(account, broker_order_id)
        except Exception as exc:
            app.post_message(LogEvent(f"cancel failed at {account}: {exc}", "error", toast=True))
            return
        app.post_message(OrderChanged(order))

    # -- modify ------------------------------------------------------------------------------
    def modify_selected(self) -> None:
        order = self._usable(self.app.blotter.selected_order())
        if order is None:
            return
        from .screens.order_modify import OrderModifyScreen

        app = self.app
        app.push_screen(
            OrderModifyScreen(
                order,
                live=order.account in app.live_accounts,
                halt_keys=app.keys["halt"],
                cursor_blink=app.cursor_blink,
            ),
            lambda change: self._modify_answered(order, change),
        )

    def _modify_answered(self, order: Order, change: OrderChange | None) -> None:
        if change is None:
            return
        self.app.event_log.add(
            f"modify requested: {fmt.describe_request(order.request)} at {order.account} -> {change.describe()}"
        )
        self.app.run_worker(self._modify(order, change), name="modify", group="orders", exit_on_error=False)

    async def _modify(self, order: Order, change: OrderChange) -> None:
        app = self.app
        try:
            result = await app.runtime.execution.modify(
                order.client_order_id,
                quantity=change.quantity,
                limit_price=change.limit_price,
                stop_price=change.stop_price,
            )
        except Exception as exc:
            app.post_message(LogEvent(f"modify failed: {fmt.one_line(str(exc), 200)}", "error", toast=True))
            return
        if result is not order and result.status is OrderStatus.REJECTED:
            text = f"modify refused ({result.reject_code}): {fmt.one_line(result.reject_reason, 300)}"
            app.post_message(LogEvent(text, "error", toast=True))
            return
        app.post_message(LogEvent(f"modified: {fmt.describe_request(result.request)} at {result.account}"))
        app.post_message(OrderChanged(result))

    # -- history -----------------------------------------------------------------------------
    def show_history(self, order: Order) -> None:
        self.app.run_worker(self._history(order), name="history", group="history", exclusive=True)

    async def _history(self, order: Order) -> None:
        from brokers.history import order_history

        from .screens.order_history import OrderHistoryScreen

        app = self.app
        try:
            # A journal read: off the event loop, so a long history never stalls the screen.
            transitions = await asyncio.to_thread(order_history, app.runtime.journal, order.client_order_id)
        except Exception as exc:
            app.post_message(
                LogEvent(f"order history unreadable: {fmt.one_line(str(exc), 200)}", "error", toast=True)
            )
            return
        app.push_screen(OrderHistoryScreen(order, transitions, halt_keys=app.keys["halt"]))

    async def todays_past_orders(self) -> list[Order]:
        """Today's orders from the journal that the execution layer no longer follows (final
        ones, mostly), the ``BLOTTER_PAST_ORDERS`` most recent, so that the blotter comes back
        after a restart without a long day delaying the screen (`trading-console orders` and
        `journal --since` show the whole day)."""
        from brokers.history import orders_since, start_of_day

        app = self.app
        live = {order.client_order_id for order in app.runtime.execution.orders()}
        try:
            found = await asyncio.to_thread(
                orders_since, app.runtime.journal, start_of_day(app.clock()), most=BLOTTER_PAST_ORDERS
            )
        except Exception as exc:
            app.post_message(LogEvent(f"today's orders unreadable from the journal: {exc}", "warning"))
            return []
        return [order for order in found if order.client_order_id not in live]

    # -- cancel-all without halting ----------------------------------------------------------
    def cancel_all(self, symbol: str | Instrument | None = None) -> None:
        app = self.app
        orders = app.runtime.execution.cancel_all_plan(symbol=symbol)
        if symbol is not None and not orders:
            app.notify(f"No working orders in {_named(symbol)}", timeout=3)
            return
        notes = []
        if symbol is None:
            notes.append(
                "Each broker's bulk cancel runs: it also cancels working orders placed elsewhere "
                "(another app) at these accounts. Trading stays on."
            )
        from .screens.order_list_confirm import OrderListConfirmScreen

        where = f" in {_named(symbol)}" if symbol else ""
        app.push_screen(
            OrderListConfirmScreen(
                f"Cancel all working orders{where}",
                cancels=orders,
                notes=notes,
                live_accounts=app.live_accounts,
                action="Cancel them",
                halt_keys=app.keys["halt"],
            ),
            lambda go: self._cancel_all_answered(symbol, bool(go)),
        )

    def _cancel_all_answered(self, symbol: str | Instrument | None, go: bool) -> None:
        if not go:
            return
        where = f" in {_named(symbol)}" if symbol else ""
        self.app.event_log.add(f"cancel all requested{where} (trading stays on)")
        self.app.run_worker(self._cancel_all(symbol), name="cancel-all", group="orders", exit_on_error=False)

    async def _cancel_all(self, symbol: str | Instrument | None) -> None:
        app = self.app
        try:
            outcome = await app.runtime.execution.cancel_all(symbol=symbol)
        except Exception as exc:
            app.post_message(
                LogEvent(f"cancel all failed: {fmt.one_line(str(exc), 200)}", "error", toast=True)
            )
            return
        for name, result in outcome.items():
            if result.ok:
                app.post_message(LogEvent(f"cancel all at {name}: {result.cancelled} cancelled"))
            else:
                app.post_message(
                    LogEvent(f"cancel all at {name} failed: {result.error}", "error", toast=True)
                )

    # -- flatten -----------------------------------------------------------------------------
    def flatten_selected(self) -> None:
        app = self.app
        key = app.positions.table.selected_key()
        row = app.positions.rows.get(key) if key else None
        if row is None:
            app.notify("Select a position first (ctrl+p)", timeout=3)
            return
        self.flatten(row.instrument)

    def flatten(self, symbol: str | Instrument | None = None) -> None:
        app = self.app
        if app.trading_state is TradingState.HALTED:
            app.notify("Trading is HALTED: flatten is refused until trading is resumed", severity="error")
            return
        plan = app.runtime.execution.flatten_plan(symbol)
        if plan.empty:
            app.notify(
                "Nothing to flatten" + (f": {'; '.join(plan.skipped)}" if plan.skipped else ""), timeout=4
            )
            return
        from .screens.order_list_confirm import OrderListConfirmScreen

        app.push_screen(
            OrderListConfirmScreen(
                f"Flatten {_named(symbol) or 'every position'}",
                cancels=plan.cancels,
                sends=plan.closes,
                notes=plan.skipped,
                live_accounts=app.live_accounts,
                action="Flatten",
                halt_keys=app.keys["halt"],
            ),
            lambda go: self._flatten_answered(symbol, bool(go)),
        )

    def _flatten_answered(self, symbol: str | Instrument | None, go: bool) -> None:
        if not go:
            return
        self.app.event_log.add(f"flatten requested: {_named(symbol) or 'every position'}")
        self.app.run_worker(self._flatten(symbol), name="flatten", group="orders", exit_on_error=False)

    async def _flatten(self, symbol: str | Instrument | None) -> None:
        app = self.app
        try:
            orders = await app.runtime.execution.flatten(symbol)
        except Exception as exc:
            app.post_message(LogEvent(f"flatten failed: {fmt.one_line(str(exc), 200)}", "error", toast=True))
            return
        for order in orders:
            app.post_message(OrderChanged(order))

    # -- the command palette -----------------------------------------------------------------
    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand(
            "Modify selected order",
            "Change the quantity or price of the blotter's selected order (m)",
            self.modify_selected,
        )
        yield SystemCommand(
            "Cancel all orders (no halt)",
            "Every working order, listed first; trading stays on",
            self.cancel_all,
        )
        yield SystemCommand(
            "Cancel all orders in the selected position's symbol",
            "Working orders in that symbol only, listed first",
            self._cancel_selected_symbol,
        )
        yield SystemCommand(
            "Flatten selected position", "Close it at every account, listed first (f)", self.flatten_selected
        )
        yield SystemCommand("Flatten all positions", "Close every position, listed first", self.flatten)

    def _cancel_selected_symbol(self) -> None:
        app = self.app
        key = app.positions.table.selected_key()
        row = app.positions.rows.get(key) if key else None
        if row is None:
            app.notify("Select a position first (ctrl+p)", timeout=3)
            return
        self.cancel_all(row.instrument)
