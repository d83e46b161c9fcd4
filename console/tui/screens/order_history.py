"""One order's history: every transition the journal holds, with its time, the status it left, the
filled quantity and average price then, and what happened, in full."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from brokers.history import Transition
from brokers.models import Order, OrderStatus
from console import formatting as fmt
from console.formatting import describe_request
from console.tui.widgets.blotter import STATUS_STYLE, fill_summary
from console.tui.widgets.halt_banner import HaltKeyHint


class OrderHistoryScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close")]

    DEFAULT_CSS = """
    #history-table {
        height: auto;
        max-height: 24;
        margin: 1 0;
    }
    """

    def __init__(
        self, order: Order, transitions: Sequence[Transition], *, halt_keys: str = "f12", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.order = order
        self.transitions = list(transitions)
        self.halt_keys = halt_keys

    def compose(self) -> ComposeResult:
        order = self.order
        with Vertical(id="history-dialog", classes="dialog"):
            title = Text("Order history  ", style="bold")
            title.append(order.client_order_id, style="dim")
            yield Static(title, classes="dialog-title")
            summary = Text(f"{describe_request(order.request)} at {order.account or 'auto'}  ", style="bold")
            summary.append(order.status.value, style=STATUS_STYLE.get(order.status, ""))
            if order.broker_order_id:
                summary.append(f"  broker id {order.broker_order_id}", style="dim")
            if order.filled_quantity:
                summary.append(f"\n{fill_summary(order)}")
            if order.reject_code or order.reject_reason:
                summary.append(
                    f"\n{order.reject_code or ''}{': ' if order.reject_code else ''}", style="bold red"
                )
                summary.append(order.reject_reason or "", style="red")
            yield Static(summary, id="history-summary")
            table: DataTable[Any] = DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("", id="history-step", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="history-close", compact=True)
        yield HaltKeyHint(self.halt_keys, classes="screen-halt-hint")

    def on_mount(self) -> None:
        # Wider than the other dialogs: a history line says all that happened.
        dialog = self.query_one("#history-dialog")
        dialog.styles.width = "95%"
        dialog.styles.max_width = 160
        table = self.query_one("#history-table", DataTable)
        table.add_column("Time", key="time", width=12)
        table.add_column("Event", key="kind", width=13)
        table.add_column("Status", key="status", width=16)
        table.add_column("Filled", key="filled", width=8)
        table.add_column("Avg price", key="avg", width=10)
        table.add_column("What happened", key="detail")
        for index, step in enumerate(self.transitions):
            status = step.status or ""
            style = STATUS_STYLE.get(OrderStatus(status), "") if status in OrderStatus.__members__ else ""
            table.add_row(
                step.time.strftime("%H:%M:%S.%f")[:12],
                step.kind,
                Text(status, style=style),
                fmt.quantity(step.filled_quantity) if step.filled_quantity else "",
                fmt.price(step.avg_fill_price) if step.avg_fill_price is not None else "",
                step.detail,
                key=str(index),
            )
        if not self.transitions:
            table.add_row("", "", "", "", "", "nothing in the journal for this order", key="none")
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted step in full, wrapped: the table cuts long lines at its edge."""
        event.stop()
        key = event.row_key.value
        step = self.transitions[int(key)] if key is not None and key.isdigit() else None
        box = self.query_one("#history-step", Static)
        box.update(
            "" if step is None else f"{step.time:%Y-%m-%d %H:%M:%S.%f} UTC  {step.kind}: {step.detail}"
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
