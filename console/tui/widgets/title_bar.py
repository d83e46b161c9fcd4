"""The top line: console name, LIVE accounts, demo, base currency, trading state, UTC clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.widgets import Static

from brokers.models import TradingState

STATE_STYLE = {
    TradingState.ACTIVE: "bold green",
    TradingState.REDUCING: "bold black on yellow",
    TradingState.HALTED: "bold white on red",
}


class TitleBar(Static):
    def __init__(
        self, *, base_currency: str, demo: bool, live_accounts: Iterable[str], **kwargs: Any
    ) -> None:
        super().__init__("", markup=False, **kwargs)
        self.base_currency = base_currency
        self.demo = demo
        self.live_accounts = sorted(live_accounts)

    def show(self, state: TradingState, now: datetime, *, start_failed: bool = False) -> None:
        text = Text()
        text.append(" TRADING CONSOLE ", style="bold reverse")
        if self.live_accounts:
            text.append(f" LIVE: {', '.join(self.live_accounts)} ", style="bold white on red")
        if self.demo:
            text.append(" DEMO ", style="bold cyan")
        text.append(f" base {self.base_currency} ")
        text.append(f" {state.value} ", style=STATE_STYLE.get(state, ""))
        if start_failed:
            text.append(" start-up failed, see Events ", style="bold red")
        text.append(f" {now.astimezone(UTC).strftime('%H:%M:%S')} UTC")
        self.update(text)
