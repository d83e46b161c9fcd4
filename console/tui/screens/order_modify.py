"""Change a working order: its quantity and whichever prices its type has, filled in with what
it holds now. Only what the trader changes is sent; the execution layer checks the new terms as
it checks a new order, and the broker changes the order in place."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from brokers.models import Order, OrderType
from console import formatting as fmt
from console.formatting import describe_request
from console.tui.widgets.halt_banner import HaltKeyHint
from console.typed_input import ungrouped

_LIMIT_TYPES = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)


class OrderChange(NamedTuple):
    """The new terms typed, None where the order keeps what it has."""

    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None

    def describe(self) -> str:
        parts = []
        if self.quantity is not None:
            parts.append(f"quantity {fmt.quantity(self.quantity)}")
        if self.limit_price is not None:
            parts.append(f"limit {fmt.price(self.limit_price)}")
        if self.stop_price is not None:
            parts.append(f"stop {fmt.price(self.stop_price)}")
        return ", ".join(parts)


def _typed(text: str, field: str) -> Decimal:
    """A positive number as typed, or ValueError naming the field."""
    cleaned = ungrouped(text, field).strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{field} must be a number, not {cleaned[:20]!r}") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{field} must be a number above 0")
    return value


def read_change(order: Order, quantity: str, limit: str | None, stop: str | None) -> OrderChange | str:
    """The change typed for ``order``, or what is wrong with it."""
    try:
        new_quantity = _typed(quantity, "quantity")
        new_limit = _typed(limit, "limit price") if limit is not None else None
        new_stop = _typed(stop, "stop price") if stop is not None else None
    except ValueError as exc:
        return str(exc)
    if new_quantity <= order.filled_quantity:
        return f"quantity must be above the {fmt.quantity(order.filled_quantity)} already filled"
    change = OrderChange(
        quantity=new_quantity if new_quantity != order.quantity else None,
        limit_price=new_limit if new_limit is not None and new_limit != order.limit_price else None,
        stop_price=new_stop if new_stop is not None and new_stop != order.stop_price else None,
    )
    if change == OrderChange():
        return "nothing changed yet"
    return change


class OrderModifyScreen(ModalScreen[OrderChange | None]):
    """Dismisses with the change when sent, None when abandoned."""

    BINDINGS = [Binding("escape", "abandon", "Keep as is")]

    DEFAULT_CSS = """
    #modify-problem {
        height: auto;
        min-height: 1;
    }
    """

    def __init__(
        self,
        order: Order,
        *,
        live: bool = False,
        halt_keys: str = "f12",
        cursor_blink: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.order = order
        self.live = live
        self.halt_keys = halt_keys
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        order = self.order
        with Vertical(id="modify-dialog", classes="dialog -live" if self.live else "dialog"):
            title = Text("Modify order", style="bold")
            if self.live:
                title.append("   ")
                title.append(" LIVE ACCOUNT — REAL MONEY ", style="bold white on red")
            yield Static(title, classes="dialog-title")
            yield Static(
                Text(f"{describe_request(order.request)} at {order.account}", style="bold"), id="modify-order"
            )
            filled = f"filled {fmt.quantity(order.filled_quantity)} so far; " if order.filled_quantity else ""
            yield Static(
                f"{filled}the broker changes the order in place; the new terms pass the same checks "
                "as a new order.",
                classes="dialog-text",
            )
            yield Label("Quantity (total)")
            yield Input(value=f"{order.request.units.normalize():f}", id="modify-quantity", compact=True)
            if order.order_type in _LIMIT_TYPES:
                yield Label("Limit price")
                yield Input(value=fmt.price(order.limit_price), id="modify-limit", compact=True)
            if order.order_type in _STOP_TYPES:
                yield Label("Stop price")
                yield Input(value=fmt.price(order.stop_price), id="modify-stop", compact=True)
            yield Static("", id="modify-problem", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Send change (enter)", id="modify-send", variant="success", compact=True)
                yield Button("Keep as is (esc)", id="modify-cancel", compact=True)
        yield HaltKeyHint(self.halt_keys, classes="screen-halt-hint")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = self.cursor_blink
        self.query_one("#modify-quantity", Input).focus()

    def _value(self, selector: str) -> str | None:
        found = self.query(selector)
        return found.first(Input).value if found else None

    def _read(self) -> OrderChange | str:
        return read_change(
            self.order,
            self._value("#modify-quantity") or "",
            self._value("#modify-limit"),
            self._value("#modify-stop"),
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#modify-problem", Static).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "modify-send":
            self._send()
        else:
            self.dismiss(None)

    def _send(self) -> None:
        change = self._read()
        if isinstance(change, str):
            self.query_one("#modify-problem", Static).update(Text(change, style="yellow"))
            return
        self.dismiss(change)

    def action_abandon(self) -> None:
        self.dismiss(None)
