"""Confirm a cancel-all or a flatten: every order it will cancel and every order it will send,
one per line, before anything goes out. LIVE accounts are marked."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from brokers.models import Order, OrderRequest
from console.formatting import describe_request
from console.tui.widgets.halt_banner import HaltKeyHint


def listing(
    cancels: Sequence[Order],
    sends: Sequence[OrderRequest],
    notes: Sequence[str],
    live_accounts: Collection[str] = (),
) -> Text:
    """The lines the dialog shows: what is cancelled, what is sent, what is left alone."""
    text = Text()

    def live(account: str | None) -> None:
        if account in live_accounts:
            text.append(" LIVE", style="bold white on red")

    for order in cancels:
        text.append("cancel ", style="bold yellow")
        text.append(f"{describe_request(order.request)} at {order.account}")
        live(order.account)
        text.append(f"  {order.client_order_id}\n", style="dim")
    for request in sends:
        text.append("send   ", style="bold green")
        text.append(f"{describe_request(request)} to {request.account}")
        live(request.account)
        text.append("\n")
    for note in notes:
        text.append(f"{note}\n", style="dim")
    if not text:
        text.append("nothing to cancel or send", style="dim")
    return text


class OrderListConfirmScreen(ModalScreen[bool]):
    """Dismisses with True to go ahead, False to leave everything as it is."""

    BINDINGS = [
        Binding("y", "go", "Go ahead"),
        Binding("n,escape", "abandon", "Don't"),
    ]

    DEFAULT_CSS = """
    #order-list {
        height: auto;
        max-height: 20;
        margin: 1 0;
    }
    """

    def __init__(
        self,
        title: str,
        *,
        cancels: Sequence[Order] = (),
        sends: Sequence[OrderRequest] = (),
        notes: Sequence[str] = (),
        live_accounts: Collection[str] = (),
        action: str = "Go ahead",
        halt_keys: str = "f12",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.title_text = title
        self.cancels = list(cancels)
        self.sends = list(sends)
        self.notes = list(notes)
        self.live_accounts = set(live_accounts)
        self.action_label = action
        self.halt_keys = halt_keys

    def compose(self) -> ComposeResult:
        live = any(o.account in self.live_accounts for o in self.cancels) or any(
            r.account in self.live_accounts for r in self.sends
        )
        with Vertical(id="order-list-dialog", classes="dialog -live" if live else "dialog"):
            title = Text(self.title_text, style="bold")
            if live:
                title.append("   ")
                title.append(" LIVE ACCOUNT — REAL MONEY ", style="bold white on red")
            yield Static(title, classes="dialog-title")
            counts = f"{len(self.cancels)} to cancel, {len(self.sends)} to send"
            yield Static(counts, classes="dialog-text", id="order-list-counts")
            with VerticalScroll(id="order-list"):
                yield Static(
                    listing(self.cancels, self.sends, self.notes, self.live_accounts), id="order-list-lines"
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    f"{self.action_label} (y)",
                    id="order-list-go",
                    variant="error" if live else "warning",
                    compact=True,
                )
                yield Button("Don't (n/esc)", id="order-list-cancel", compact=True)
        yield HaltKeyHint(self.halt_keys, classes="screen-halt-hint")

    def on_mount(self) -> None:
        self.query_one("#order-list-cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "order-list-go")

    def action_go(self) -> None:
        self.dismiss(True)

    def action_abandon(self) -> None:
        self.dismiss(False)
