"""Confirm an order before it goes out: every order to a LIVE account, and any order whose
notional is above the configured threshold."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from brokers.models import Order, OrderRequest
from console import formatting as fmt
from console.formatting import describe_request
from console.tui.widgets.blotter import order_price
from console.tui.widgets.halt_banner import HaltKeyHint


class OrderConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "send", "Send"),
        Binding("n,escape", "abandon", "Don't send"),
    ]

    def __init__(
        self,
        request: OrderRequest,
        *,
        accounts: Sequence[str],
        live_accounts: Sequence[str] = (),
        notional: Decimal | None = None,
        base_currency: str = "USD",
        reasons: Sequence[str] = (),
        distributed: bool = False,
        halt_keys: str = "f12",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.accounts = list(accounts)
        self.live_accounts = list(live_accounts)
        self.notional = notional
        self.base_currency = base_currency
        self.reasons = list(reasons)
        self.distributed = distributed
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
            details.append(f"{'split across' if self.distributed else 'account'}: ")
            for index, name in enumerate(self.accounts or ["auto-route"]):
                if index:
                    details.append(", ")
                details.append(name)
                if name in self.live_accounts:
                    details.append(" LIVE", style="bold white on red")
            details.append("\n")
            if self.notional is not None:
                details.append(f"notional ≈ {fmt.amount(self.notional)} {self.base_currency}\n")
            else:
                details.append("notional: unknown (no price yet)\n", style="yellow")
            if self.reasons:
                details.append("asking because: " + "; ".join(self.reasons), style="dim")
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
    # The blotter's wording, so the trader sees the same price in both places.
    return order_price(Order(request=request)) or "market"
