"""Orders and fills: live status, filled quantity and average price, reject code and reason. The
Result column takes whatever width the pane has left, so a reason is cut only by the edge of the
screen; the selected order's full detail (reason text, every fill) shows under the table, and Enter
opens its history. A pane too narrow for every column (an 80-column terminal) shows fewer, wider
ones: the order in one column, and the Result column still gets room to be read.

The exits of a bracket, OTO or OCO order are marked as legs of their parent (``↳``), and the
detail line names the parent's exits and a leg's parent."""

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

from brokers.legs import leg_parent_id
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

FULL_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
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
# For a narrow pane: side, size, symbol, type and price in one column; filled and average price
# are in the Result column's fill summary, the time in the detail line.
COMPACT_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("account", "Account", None),
    ("ticket", "Order", 22),
    ("status", "Status", 8),
    ("result", "Result", RESULT_MIN_WIDTH),
)


class BlotterTable(KeyedTable):
    COLUMNS = FULL_COLUMNS

    @property
    def compact(self) -> bool:
        return self.COLUMNS is COMPACT_COLUMNS

    def column_keys(self) -> set[str]:
        return {key for key, _label, _width in self.COLUMNS}

    def full_width_needed(self) -> int:
        """How wide the table must be to show every column with the Result column at its minimum."""
        account = self.columns.get(ColumnKey("account"))
        account_width = account.content_width if account is not None else len("Account")
        fixed = sum(width or 0 for _key, _label, width in FULL_COLUMNS)
        padding = 2 * self.cell_padding * len(FULL_COLUMNS)
        return fixed + max(account_width, len("Account")) + padding + self.styles.scrollbar_size_vertical

    def use_columns(self, compact: bool) -> bool:
        """Show the compact columns or the full ones; returns whether that changed (the rows are
        then gone, to be shown again by the pane)."""
        if compact is self.compact:
            return False
        self.COLUMNS = COMPACT_COLUMNS if compact else FULL_COLUMNS
        self._auto_width = {key for key, _label, width in self.COLUMNS if width is None}
        self.clear(columns=True)
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width)
        return True

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
        # client order id -> every cell of its row, for either set of columns (see ``_fit``).
        self._cells: dict[str, dict[str, object]] = {}

    def compose(self) -> ComposeResult:
        yield BlotterTable(id="blotter-table")
        yield Static("", id="order-detail", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Orders & fills"
        self._show_detail()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The column set the pane's width allows, then the Result column across what is left."""
        table = self.table
        width = self.size.width
        if width and table.use_columns(width < table.full_width_needed()):
            selected = table.selected_key()
            for key, cells in self._cells.items():
                table.upsert(key, cells)
            if selected is not None and table.has_row(selected):
                table.move_cursor(row=table.get_row_index(selected), animate=False)
        table.fit_result()

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
        self.show_orders([(order, orphan_note)])

    def show_orders(self, orders: list[tuple[Order, str | None]]) -> None:
        """Show or update each (order, orphan note); the cursor, the detail line and the
        column widths follow once for the lot (a restart brings back a day's orders at once)."""
        table = self.table
        added = False
        for order, orphan_note in orders:
            added = self._put(order, orphan_note) or added
        if added:
            self._fit()  # a new account name may have widened its column
            if not table.has_focus:
                # Follow the newest order unless the trader is working in the blotter.
                table.move_cursor(row=table.row_count - 1, animate=False)
        self._show_detail()
        self._show_subtitle()

    def _put(self, order: Order, orphan_note: str | None) -> bool:
        """The order's row, written; whether it is new."""
        key = order.client_order_id
        is_new = key not in self._orders
        self._orders[key] = order
        if orphan_note is not None:
            self._orphans[key] = orphan_note
        else:
            self._orphans.pop(key, None)
        side_style = "green" if order.side is Side.BUY else "red"
        leg = self._leg_of(order)
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
        kind = f"{_TYPE_SHORT.get(order.order_type, order.order_type.value)} {order_price(order)}".strip()
        ticket = Text("↳ " if leg else "", style="dim")
        ticket.append(order.side.value, style=side_style)
        ticket.append(f" {fmt.size(order.request)} ")
        ticket.append(order.symbol, style="bold")
        ticket.append(f" {kind}")
        cells: dict[str, object] = {
            "time": fmt.clock_time(order.created_at),
            "account": order.account or "auto",
            "symbol": Text(("↳ " if leg else "") + order.symbol, style="bold"),
            "side": Text(order.side.value, style=side_style),
            "quantity": fmt.right(fmt.size(order.request)),
            "order": kind,
            "ticket": ticket,
            "status": status,
            "filled": fmt.right(fmt.quantity(order.filled_quantity) if order.filled_quantity else fmt.DASH),
            "avg": fmt.right(fmt.price(order.avg_fill_price) if order.filled_quantity else fmt.DASH),
            "result": result,
        }
        self._cells[key] = cells
        shown = table.column_keys()
        table.upsert(key, {column: value for column, value in cells.items() if column in shown})
        return is_new

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

    def _leg_of(self, order: Order) -> Order | None:
        """The parent of ``order`` if it is an exit of a bracket, OTO or OCO order shown here."""
        parent_id = leg_parent_id(order.client_order_id)
        if parent_id is None:
            return None
        parent = self._orders.get(parent_id)
        return parent if parent is not None and parent.request.has_legs else None

    def _show_detail(self) -> None:
        box = self.query_one("#order-detail", Static)
        order = self.selected_order()
        if order is None:
            box.update(Text("No orders yet", style="dim"))
            return
        text = Text()
        text.append(f"{fmt.describe_request(order.request)} ", style="bold")
        text.append(order.status.value, style=STATUS_STYLE.get(order.status, ""))
        # A narrow pane has no Time column: the time is here instead.
        when = f"  {fmt.clock_time(order.created_at)}" if self.table.compact else ""
        text.append(f"{when}  id {order.client_order_id}", style="dim")
        request = order.request
        if request.has_legs:
            exits = [
                f"{name} {fmt.price(price)}"
                for name, price in (("take-profit", request.take_profit), ("stop-loss", request.stop_loss))
                if price is not None
            ]
            text.append(f"\n{request.legs.value}: {', '.join(exits)}", style="cyan")
        parent = self._leg_of(order)
        if parent is not None:
            text.append(f"\nexit of {parent.request.legs.value} {parent.client_order_id}", style="cyan")
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
