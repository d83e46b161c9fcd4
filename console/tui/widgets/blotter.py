"""Orders and fills: live status, filled quantity and average price, reject code and reason. The
Result column takes whatever width the pane has left, so a reason is cut only by the edge of the
screen; the selected order's full detail (reason text, every fill) shows under the table, and Enter
opens its history."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey

from brokers.models import Order, OrderStatus, OrderType, Side
from console import formatting as fmt

from .keyed_table import KeyedTable

STATUS_STYLE: dict[OrderStatus, str] = {
    OrderStatus.PENDING: "yellow",
    OrderStatus.SUBMITTED: "yellow",
    OrderStatus.ACCEPTED: "cyan",
    OrderStatus.PARTIALLY_FILLED: "bold cyan",
    OrderStatus.FILLED: "bold green",
    OrderStatus.CANCELLED: "dim",
    OrderStatus.REJECTED: "bold red",
    OrderStatus.EXPIRED: "dim",
    OrderStatus.UNKNOWN: "bold white on dark_orange",
}

# Short enough for a narrow column; the detail line under the table spells them out.
STATUS_SHORT = {
    OrderStatus.SUBMITTED: "SENT",
    OrderStatus.PARTIALLY_FILLED: "PARTIAL",
}

_TYPE_SHORT = {
    OrderType.MARKET: "MKT",
    OrderType.LIMIT: "LMT",
    OrderType.STOP: "STP",
    OrderType.STOP_LIMIT: "STP LMT",
    OrderType.TRAILING_STOP: "TRAIL",
}


def order_price(order: Order) -> str:
    request = order.request
    if request.order_type is OrderType.STOP_LIMIT:
        return f"{fmt.price(request.stop_price)}/{fmt.price(request.limit_price)}"
    if request.order_type is OrderType.TRAILING_STOP:
        if request.trail_percent is not None:
            return f"{request.trail_percent.normalize():f}%"
        return fmt.price(request.trail_amount)
    return fmt.price(request.reference_price) if request.reference_price is not None else ""


def filled_text(order: Order) -> str:
    if not order.filled_quantity:
        return fmt.DASH
    return f"{fmt.quantity(order.filled_quantity)} @ {fmt.price(order.avg_fill_price)}"


def fill_summary(order: Order) -> str:
    """What the fills came to: quantity at the average price, how many fills, their commission."""
    text = filled_text(order)
    fills = order.fills
    if fills:
        text += f" · {len(fills)} fill{'s' if len(fills) != 1 else ''}"
        commission = sum((fill.commission for fill in fills), Decimal(0))
        if commission:
            text += f" · commission {fmt.amount(commission)} {fills[0].currency}"
    return text


RESULT_MIN_WIDTH = 24


class BlotterTable(KeyedTable):
    COLUMNS = (
        ("account", "Account", None),
        ("symbol", "Symbol", 8),
        ("side", "Side", 4),
        ("quantity", "Qty", 7),
        ("order", "Order", 12),
        ("status", "Status", 9),
        ("filled", "Filled", 7),
        ("avg", "Avg price", 10),
        ("time", "Time", 8),
        ("result", "Result", RESULT_MIN_WIDTH),
    )

    def fit_result(self) -> None:
        """Give the Result column the width the other columns leave, never less than its minimum."""
        result_key = ColumnKey("result")
        others = sum(c.get_render_width(self) for key, c in self.columns.items() if key != result_key)
        scrollbar = self.styles.scrollbar_size_vertical
        wanted = max(RESULT_MIN_WIDTH, self.size.width - others - 2 * self.cell_padding - scrollbar)
        column = self.columns.get(result_key)
        if column is not None and column.width != wanted:
            column.width = wanted
            self._require_update_dimensions = True
            self.refresh()


ORPHANED_STYLE = "bold black on magenta"


class BlotterPane(Vertical):
    BINDINGS = [
        Binding("m", "modify", "Modify order"),
        Binding("X", "cancel_all", "Cancel all (no halt)"),
    ]

    class ModifyRequested(Message):
        """The trader asked to change the selected order."""

    class HistoryRequested(Message):
        """The trader asked for the selected order's history (Enter on its row)."""

        def __init__(self, order: Order) -> None:
            super().__init__()
            self.order = order

    class CancelAllRequested(Message):
        """The trader asked to cancel every working order without halting."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._orders: dict[str, Order] = {}
        # client order id -> what to do, for orders of accounts not in this configuration
        # (``ExecutionService.orphan_note``): not working anywhere here, not cancellable.
        self._orphans: dict[str, str] = {}
        self._alerts = 0
        self._commission: dict[tuple[str, str], Decimal] = {}

    def compose(self) -> ComposeResult:
        yield BlotterTable(id="blotter-table")
        yield Static("", id="order-detail", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Orders & fills"
        self._show_detail()

    def on_resize(self) -> None:
        self.table.fit_result()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        order = self.selected_order()
        if order is not None:
            self.post_message(self.HistoryRequested(order))

    @property
    def table(self) -> BlotterTable:
        return self.query_one(BlotterTable)

    @property
    def orders(self) -> dict[str, Order]:
        return self._orders

    def orphan_note(self, order: Order) -> str | None:
        return self._orphans.get(order.client_order_id)

    def show_order(self, order: Order, orphan_note: str | None = None) -> None:
        key = order.client_order_id
        is_new = key not in self._orders
        self._orders[key] = order
        if orphan_note is not None:
            self._orphans[key] = orphan_note
        else:
            self._orphans.pop(key, None)
        side_style = "green" if order.side is Side.BUY else "red"
        if orphan_note is not None:
            status = Text("ORPHANED", style=ORPHANED_STYLE)
            result = Text(f"account not configured: {order.account}", style="magenta")
        else:
            status = Text(
                STATUS_SHORT.get(order.status, order.status.value), style=STATUS_STYLE.get(order.status, "")
            )
            if order.reject_code:
                result = Text(f"{order.reject_code}: {fmt.one_line(order.reject_reason, 500)}", style="red")
            elif order.reject_reason:  # why an order is UNKNOWN
                result = Text(fmt.one_line(order.reject_reason, 500), style="yellow")
            else:
                result = Text(fill_summary(order))
        table = self.table
        table.upsert(
            key,
            {
                "time": fmt.clock_time(order.created_at),
                "account": order.account or "auto",
                "symbol": Text(order.symbol, style="bold"),
                "side": Text(order.side.value, style=side_style),
                "quantity": fmt.right(fmt.size(order.request)),
                "order": f"{_TYPE_SHORT.get(order.order_type, order.order_type.value)} {order_price(order)}".strip(),
                "status": status,
                "filled": fmt.right(
                    fmt.quantity(order.filled_quantity) if order.filled_quantity else fmt.DASH
                ),
                "avg": fmt.right(fmt.price(order.avg_fill_price) if order.filled_quantity else fmt.DASH),
                "result": result,
            },
        )
        if is_new:
            table.fit_result()  # a new account name may have widened its column
        if is_new and not table.has_focus:
            # Follow the newest order unless the trader is working in the blotter.
            table.move_cursor(row=table.row_count - 1, animate=False)
        self._show_detail()
        self._show_subtitle()

    def show_alerts(self, count: int) -> None:
        """How many execution alerts were raised (``brokers.monitoring``)."""
        if count != self._alerts:
            self._alerts = count
            self._show_subtitle()

    def show_commission(self, totals: dict[tuple[str, str], Decimal]) -> None:
        """The day's commission per account and currency."""
        if totals != self._commission:
            self._commission = dict(totals)
            self._show_subtitle()

    def _show_subtitle(self) -> None:
        orphans = self._orphans
        working = sum(1 for k, o in self._orders.items() if o.is_working and k not in orphans)
        parts = [f"{working} working"]
        if orphans:
            parts.append(f"{len(orphans)} orphaned")
        parts.append(f"{len(self._orders)} total")
        if self._alerts:
            parts.append(f"⚠ {self._alerts} alert{'s' if self._alerts != 1 else ''}")
        if self._commission:
            parts.append(
                "commission today "
                + ", ".join(
                    f"{account} {fmt.amount(amount)} {currency}"
                    for (account, currency), amount in sorted(self._commission.items())
                )
            )
        self.border_subtitle = " · ".join(parts)

    def action_modify(self) -> None:
        self.post_message(self.ModifyRequested())

    def action_cancel_all(self) -> None:
        self.post_message(self.CancelAllRequested())

    def selected_order(self) -> Order | None:
        key = self.table.selected_key()
        return self._orders.get(key) if key else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def _show_detail(self) -> None:
        box = self.query_one("#order-detail", Static)
        order = self.selected_order()
        if order is None:
            box.update(Text("No orders yet", style="dim"))
            return
        text = Text()
        text.append(f"{fmt.describe_request(order.request)} ", style="bold")
        text.append(order.status.value, style=STATUS_STYLE.get(order.status, ""))
        text.append(f"  id {order.client_order_id}", style="dim")
        note = self._orphans.get(order.client_order_id)
        if note is not None:
            text.append("\n")
            text.append(note, style="magenta")
        if order.reject_code:
            text.append(f"\n{order.reject_code}: ", style="bold red")
            text.append(fmt.one_line(order.reject_reason, 400), style="red")
        if order.fills:
            text.append("\nfills: ")
            text.append(
                ", ".join(
                    f"{fmt.quantity(fill.quantity)} @ {fmt.price(fill.price)} {fmt.clock_time(fill.timestamp)}"
                    for fill in order.fills[-5:]
                )
            )
        box.update(text)
