"""Confirm an order before it goes out: every order to a LIVE account, and any order whose
notional is above the configured threshold. What it shows is the execution layer's preview:
the accounts the order will reach, which of them are LIVE, its notional in the base currency."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from brokers.models import OrderRequest
from brokers.preview import OrderPreview
from console import formatting as fmt
from console.formatting import describe_request
from console.tui.widgets.halt_banner import HaltKeyHint


class OrderConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "send", "Send"),
        Binding("n,escape", "abandon", "Don't send"),
    ]

    def __init__(self, preview: OrderPreview, *, halt_keys: str = "f12", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.preview = preview
        self.request = preview.request
        self.live_accounts = list(preview.live_accounts)
        self.notional = preview.notional
        self.halt_keys = halt_keys

    def compose(self) -> ComposeResult:
        live = bool(self.live_accounts)
        with Vertical(id="confirm-dialog", classes="dialog -live" if live else "dialog"):
            title = Text("Confirm order", style="bold")
            if live:
                title.append("   ")
                title.append(" LIVE ACCOUNT — REAL MONEY ", style="bold white on red")
            yield Static(title, classes="dialog-title")
            yield Static(Text(describe_request(self.request), style="bold"), id="confirm-order")
            details = Text()
            price_text = order_price_text(self.request)
            details.append(f"price: {price_text}\n")
            preview = self.preview
            split = preview.distributed
            details.append(f"{'split across' if split else 'account'}: ")
            for index, (name, quantity) in enumerate(preview.targets.items()):
                if index:
                    details.append(", ")
                details.append(f"{name} {fmt.quantity(quantity)}" if split else name)
                if name in self.live_accounts:
                    details.append(" LIVE", style="bold white on red")
            if not preview.targets:
                details.append(preview.problem or "no account would take it", style="yellow")
            details.append("\n")
            if self.notional is not None:
                details.append(f"notional ≈ {fmt.amount(self.notional)} {preview.base_currency}\n")
            else:
                details.append(
                    f"notional: unknown ({preview.notional_note or 'no price yet'})\n", style="yellow"
                )
            if preview.reasons:
                details.append("asking because: " + "; ".join(preview.reasons), style="dim")
            yield Static(details, id="confirm-details")
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Send order (y)", id="confirm-send", variant="error" if live else "success", compact=True
                )
                yield Button("Don't send (n/esc)", id="confirm-cancel", compact=True)
        yield HaltKeyHint(self.halt_keys, classes="screen-halt-hint")

    def on_mount(self) -> None:
        self.query_one("#confirm-send", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-send")

    def action_send(self) -> None:
        self.dismiss(True)

    def action_abandon(self) -> None:
        self.dismiss(False)


def order_price_text(request: OrderRequest) -> str:
    """Every price the order carries, as typed (a rounded figure here could differ from the
    one sent)."""
    return fmt.order_prices(request) or "market"
