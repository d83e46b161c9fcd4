"""The full-width SYSTEM HALTED / REDUCE-ONLY banner, and the halt key hint shown on every screen."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text
from textual.widgets import Static

from brokers.fanout import CancelAllResult
from brokers.killswitch import HaltInfo
from brokers.models import Order, TradingState
from console import formatting as fmt

COMPACT_BELOW = 120
"""Terminal width under which the banner keeps to two lines."""


def _since(info: HaltInfo | None) -> str | None:
    return None if info is None else f"{fmt.clock_time(info.time)} UTC"


def outcome_text(outcomes: Mapping[str, CancelAllResult] | None, error: str | None = None) -> Text:
    """Cancel-all result per broker: ``paper-us: 3 cancelled · paper-in: FAILED (timeout)``."""
    text = Text("cancel-all: ", style="bold")
    if error:
        text.append(f"FAILED ({fmt.one_line(error, 120)})", style="bold yellow")
        return text
    if outcomes is None:
        text.append("cancelling open orders at every broker…")
        return text
    if not outcomes:
        text.append("no connected broker")
        return text
    for index, (account, outcome) in enumerate(sorted(outcomes.items())):
        if index:
            text.append(" · ")
        text.append(f"{account}: ")
        if outcome.ok:
            text.append(f"{outcome.cancelled} cancelled")
        else:
            reason = fmt.one_line(outcome.error or "unknown error", 80)
            text.append(f"FAILED ({reason})", style="bold yellow")
    return text


def working_by_account(orders: Iterable[Order]) -> dict[str, int]:
    """How many orders are still live at each account."""
    return dict(Counter(order.account or "no account" for order in orders if not order.is_terminal))


def working_text(working: Mapping[str, int], cancel_key: str) -> Text:
    """Orders a halt left live, per account: ``2 orders still working (they can fill): ...``."""
    total = sum(working.values())
    text = Text(
        f"{total} order{'s' if total != 1 else ''} still working (they can fill): ", style="bold yellow"
    )
    text.append(" · ".join(f"{account} {count}" for account, count in sorted(working.items())), style="bold")
    text.append(f" — {cancel_key} cancels the selected one, `trading-console cancel --all` every one")
    return text


class HaltBanner(Static):
    """Hidden while trading is ACTIVE. Red and unmissable when HALTED; amber when REDUCE-ONLY."""

    DEFAULT_CSS = """
    HaltBanner { display: none; }
    HaltBanner.-halted, HaltBanner.-reducing { display: block; }
    """

    def __init__(self, *, resume_key: str = "ctrl+r", cancel_key: str = "ctrl+x", **kwargs: Any) -> None:
        super().__init__("", markup=False, **kwargs)
        self.resume_key = resume_key
        self.cancel_key = cancel_key
        # Working orders per account: a halt that does not cancel them must not hide them.
        self.working: dict[str, int] = {}
        self.state = TradingState.ACTIVE
        self.info: HaltInfo | None = None
        self.outcomes: Mapping[str, CancelAllResult] | None = None
        self.outcome_error: str | None = None
        self.cancel_all_running = False

    def show_state(self, state: TradingState, info: HaltInfo | None) -> None:
        if state is not self.state:
            self.outcomes = None
            self.outcome_error = None
            self.cancel_all_running = False
        self.state = state
        self.info = info
        # Classes decide visibility (see DEFAULT_CSS); set_class restyles only on a change.
        self.set_class(state is TradingState.HALTED, "-halted")
        self.set_class(state is TradingState.REDUCING, "-reducing")
        self._render_text()

    def cancel_all_started(self) -> None:
        self.cancel_all_running = True
        self.outcomes = None
        self.outcome_error = None
        self._render_text()

    def show_outcomes(self, outcomes: Mapping[str, CancelAllResult], error: str | None = None) -> None:
        self.cancel_all_running = False
        self.outcomes = outcomes
        self.outcome_error = error
        self._render_text()

    def show_working(self, working: Mapping[str, int]) -> None:
        counts = {account: count for account, count in working.items() if count}
        if counts == self.working:
            return
        self.working = counts
        self._render_text()

    def _shows_working(self) -> bool:
        # While a cancel-all runs the count is about to change; its outcome line says what it did.
        return self.state is TradingState.HALTED and bool(self.working) and not self.cancel_all_running

    def on_resize(self) -> None:
        self._render_text()

    def _render_text(self) -> None:
        if self.state is TradingState.ACTIVE:
            self.update("")
            return
        if 0 < self.app.size.width < COMPACT_BELOW:
            self.update(self._compact_text())
            return
        halted = self.state is TradingState.HALTED
        text = Text(justify="center")
        text.append("■ SYSTEM HALTED ■" if halted else "▲ REDUCE-ONLY ▲", style="bold")
        info = self.info
        text.append(f"   since {_since(info) or 'unknown'}")
        text.append(f" · source: {(info.source if info else None) or 'unknown'}")
        reason = fmt.one_line(info.reason if info else None, 120)
        text.append(f" · reason: {reason or '(none given)'}")
        text.append("\n")
        if halted:
            text.append("All new orders are rejected; cancels still go through.  ")
        else:
            text.append("Only orders that shrink a position are accepted.  ")
        text.append(f"{self.resume_key} to resume", style="bold")
        if halted and (self.cancel_all_running or self.outcomes is not None or self.outcome_error):
            text.append("\n")
            text.append_text(outcome_text(self.outcomes, self.outcome_error))
        if self._shows_working():
            text.append("\n")
            text.append_text(working_text(self.working, self.cancel_key))
        self.update(text)

    def _compact_text(self) -> Text:
        """Two lines for small terminals: what, since when, who, why; how to resume and what
        the cancel-all did, with the detail in the event log."""
        halted = self.state is TradingState.HALTED
        text = Text(justify="center")
        text.append("■ SYSTEM HALTED ■" if halted else "▲ REDUCE-ONLY ▲", style="bold")
        info = self.info
        source = (info.source if info else None) or "unknown"
        reason = fmt.one_line(info.reason if info else None, 60) or "(none given)"
        text.append(f" {_since(info) or ''} · {source} · {reason}\n")
        text.append(f"{self.resume_key} to resume", style="bold")
        if halted and (self.cancel_all_running or self.outcomes is not None or self.outcome_error):
            text.append(" · ")
            text.append_text(compact_outcome(self.outcomes, self.outcome_error))
        if self._shows_working():
            total = sum(self.working.values())
            where = ", ".join(f"{account} {count}" for account, count in sorted(self.working.items()))
            text.append(f" · {total} still working: {where}", style="bold yellow")
        return text


def compact_outcome(outcomes: Mapping[str, CancelAllResult] | None, error: str | None = None) -> Text:
    """``cancel-all: 3 brokers ok, 5 cancelled`` or the brokers that failed."""
    text = Text("cancel-all: ", style="bold")
    if error:
        text.append("FAILED, see events", style="bold yellow")
    elif outcomes is None:
        text.append("running…")
    else:
        failed = sorted(name for name, outcome in outcomes.items() if not outcome.ok)
        cancelled = sum(outcome.cancelled for outcome in outcomes.values())
        if failed:
            text.append(f"FAILED at {', '.join(failed)}", style="bold yellow")
            text.append(f"; {cancelled} cancelled")
        else:
            text.append(f"{len(outcomes)} brokers ok, {cancelled} cancelled")
    return text


class HaltKeyHint(Static):
    """The halt key, in red, on every screen: the one key a trader must always be able to find."""

    def __init__(self, keys: str, **kwargs: Any) -> None:
        super().__init__("", markup=False, **kwargs)
        self.keys = keys

    def on_mount(self) -> None:
        self.update(halt_key_text(self.keys))


def halt_key_text(keys: str) -> Text:
    shown = " / ".join(part.strip().upper() for part in keys.split(",") if part.strip())
    return Text(f" {shown} HALT ", style="bold white on red")
