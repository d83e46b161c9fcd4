"""What the trader does to orders already sent, on screen: modify the selected one. Each action asks
first in a modal, then runs the library call in a worker, and reports the outcome in the event log
(a refusal also as a toast); the blotter follows the order itself through ``OrderChanged``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from brokers.models import Order, OrderStatus
from console import formatting as fmt

from .messages import LogEvent, OrderChanged

if TYPE_CHECKING:
    from .app import TradingConsoleApp
    from .screens.order_modify import OrderChange


class OrderControl:
    def __init__(self, app: TradingConsoleApp) -> None:
        self.app = app

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

    # -- modify ------------------------------------------------------------------------------
    def modify_selected(self) -> None:
        order = self._usable(self.app.blotter.selected_order())
        if order is None:
            return
        from .screens.order_modify import OrderModifyScreen

        app = self.app
        app.push_screen(
            OrderModifyScreen(order, halt_keys=app.keys["halt"], cursor_blink=app.cursor_blink),
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
