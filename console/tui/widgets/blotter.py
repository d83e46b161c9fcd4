"""Orders and fills: live status, filled quantity and average price, reject code and reason. The
Result column takes whatever width the pane has left, so a reason is cut only by the edge of the
screen; the selected order's full detail (reason text, every fill) shows under the table, and Enter
opens its history. A pane too narrow for every column (an 80-column terminal) shows fewer, wider
ones: the order in one column, and the Result column still gets room to be read.

The exits of a bracket, OTO or OCO order sit directly under their parent, in the parent's place,
marked as a tree (``├`` then ``└``, take-profit before stop-loss), however their updates arrive:
a leg seen before its parent holds the parent's place with a stand-in row the parent's own row
takes over; a leg whose parent is not among the orders shown (an earlier day's entry) keeps the
stand-in. The detail line names the parent's exits and a leg's parent."""

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

from brokers.legs import STOP_LOSS_SUFFIX, leg_parent_id
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
LEG_MARK, LAST_LEG_MARK = "├ ", "└ "


def leg_rank(client_order_id: str) -> tuple[int, str]:
    """Where a leg sits among its parent's: take-profit, then stop-loss."""
    return (1 if client_order_id.endswith(STOP_LOSS_SUFFIX) else 0, client_order_id)


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
        # The rows' order: each top-level row (an order, or a stand-in for a leg's parent not
        # shown) in the order it came, each followed by its legs.
        self._tops: list[str] = []
        self._legs: dict[str, list[str]] = {}
        # Parent id -> the first leg seen, for parents shown by a stand-in row.
        self._stand_ins: dict[str, Order] = {}
        self._misplaced = False

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
        selected = table.selected_key()
        if width and table.use_columns(width < table.full_width_needed()):
            self._show_rows(selected)
        table.fit_result()

    def row_order(self) -> list[str]:
        """Every row's key, top to bottom: each order or stand-in, then its legs."""
        rows: list[str] = []
        legs = self._legs
        for top in self._tops:
            rows.append(top)
            rows.extend(legs.get(top, ()))
        return rows

    def _show_rows(self, selected: str | None) -> None:
        """Every row again, in ``row_order``; the cursor stays on ``selected``."""
        table = self.table
        table.clear()
        shown = table.column_keys()
        for key in self.row_order():
            table.upsert(
                key, {column: value for column, value in self._cells[key].items() if column in shown}
            )
        if selected is not None and table.has_row(selected):
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self._misplaced = False

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
        newest: str | None = None
        for order, orphan_note in orders:
            if self._put(order, orphan_note):
                newest = order.client_order_id
        if self._misplaced:
            self._show_rows(table.selected_key())
        if newest is not None:
            self._fit()  # a new account name may have widened its column
            if not table.has_focus and table.has_row(newest):
                # Follow the newest order unless the trader is working in the blotter.
                table.move_cursor(row=table.get_row_index(newest), animate=False)
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
        if is_new:
            self._place(order)
        self._write(order)
        return is_new

    def _place(self, order: Order) -> None:
        """Where a new order's row goes: under its parent if it is a leg, else at the end."""
        key = order.client_order_id
        if self._stand_ins.pop(key, None) is not None:
            return  # its legs came first: it takes over the stand-in's row, in its place
        parent_id = leg_parent_id(key)
        parent = self._orders.get(parent_id) if parent_id is not None else None
        if parent_id is None or (parent is not None and not parent.request.has_legs):
            self._tops.append(key)
            return
        if parent is None and parent_id not in self._stand_ins:
            self._stand_ins[parent_id] = order
            self._tops.append(parent_id)
            self._write_stand_in(parent_id, order)
        siblings = self._legs.setdefault(parent_id, [])
        siblings.append(key)
        siblings.sort(key=leg_rank)
        # A row is added at the bottom: anywhere else, the rows are shown again in order.
        if self._tops[-1] != parent_id or siblings[-1] != key:
            self._misplaced = True
        for sibling in siblings:
            if sibling != key:
                self._write(self._orders[sibling])  # its tree mark may change

    def _mark(self, order: Order) -> str:
        """The tree mark of a leg shown under its parent; empty for any other row."""
        parent_id = leg_parent_id(order.client_order_id)
        siblings = self._legs.get(parent_id) if parent_id is not None else None
        if not siblings or order.client_order_id not in siblings:
            return ""
        return LAST_LEG_MARK if siblings[-1] == order.client_order_id else LEG_MARK

    def _write_stand_in(self, parent_id: str, leg: Order) -> None:
        """The row holding the place of a leg's parent that is not shown (yet)."""
        cells: dict[str, object] = {
            "time": "",
            "account": leg.account or "auto",
            "symbol": Text(leg.symbol, style="bold dim"),
            "side": "",
            "quantity": "",
            "order": Text("entry", style="dim"),
            "ticket": Text(f"entry of {leg.symbol} exits", style="dim"),
            "status": Text(fmt.DASH, style="dim"),
            "filled": "",
            "avg": "",
            "result": Text(f"entry not in this list · {parent_id}", style="dim"),
        }
        self._cells[parent_id] = cells
        shown = self.table.column_keys()
        self.table.upsert(parent_id, {column: value for column, value in cells.items() if column in shown})

    def _write(self, order: Order) -> None:
        key = order.client_order_id
        orphan_note = self._orphans.get(key)
        side_style = "green" if order.side is Side.BUY else "red"
        mark = self._mark(order)
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
        ticket = Text(mark, style="dim")
        ticket.append(order.side.value, style=side_style)
        ticket.append(f" {fmt.size(order.request)} ")
        ticket.append(order.symbol, style="bold")
        ticket.append(f" {kind}")
        cells: dict[str, object] = {
            "time": fmt.clock_time(order.created_at),
            "account": order.account or "auto",
            "symbol": Text(mark + order.symbol, style="bold"),
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
            key = self.table.selected_key()
            leg = self._stand_ins.get(key) if key is not None else None
            if leg is not None:
                box.update(
                    Text(
                        f"entry {key} of the exits below is not among the orders shown "
                        f"(an earlier day's, or not in yet)",
                        style="dim",
                    )
                )
                return
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
