"""The trading state on screen: the halt key, resume and reduce-only, and how any change of state
reaches the banner.

The halt key has one door into the library: ``ExecutionService.halt_now``, which has written the
flag when it returns and has started the cancel-all. The banner is drawn at once from the halt it
returns; the outcome per broker follows when the cancel-all ends.

A change made anywhere else (another shell, a plain ``touch`` of the flag, the daily-loss limit)
arrives through the kill switch's listener. The execution service's watch loop is the one poller
of the flag in this process; it runs from the end of the runtime's start. Until then (brokers
still connecting) the console polls the flag itself at the same interval and stops once the
service has taken over; if the runtime fails to start, the console keeps polling. The halt key
pressed meanwhile writes the flag through ``KillSwitch.halt`` at once, and the cancel-all with
its outcome runs once the brokers have been connected, when there is something to cancel.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual.css.query import NoMatches
from textual.timer import Timer

from brokers.killswitch import HaltInfo
from brokers.models import TradingState

from .event_lines import state_line
from .messages import CancelAllFinished, LogEvent, TradingStateChanged
from .widgets.halt_banner import outcome_text, working_by_account

if TYPE_CHECKING:
    from brokers.execution import CancelAllTask

    from .app import TradingConsoleApp

_HALTED = TradingState.HALTED
HALT_KEY_REASON = "halt key"
SOURCE = "console"


class TradingStateControl:
    def __init__(self, app: TradingConsoleApp) -> None:
        self.app = app
        self.state = TradingState.ACTIVE
        # True once the runtime's start is over, whether or not it succeeded: brokers that could
        # connect have, and the halt key goes through the execution service.
        self.startup_over = False
        self._startup_poll: Timer | None = None
        # The halt key was pressed before the brokers were connected: cancel once they are.
        self._cancel_when_started = False

    # -- start -------------------------------------------------------------------------------
    def mount(self) -> None:
        """Listen to the kill switch, show its state, and poll the flag until the service does."""
        switch = self.app.runtime.kill_switch
        switch.subscribe(self._on_kill_switch)
        state, info = switch.state, switch.info
        self._show(state, info)
        if state is _HALTED:
            self.app.event_log.add(state_line(state, info), "halt")
        interval = self.app.config.halt.poll_interval_ms / 1000
        self._startup_poll = self.app.set_interval(interval, switch.poll, name="kill-switch-startup-poll")

    def unmount(self) -> None:
        self.app.runtime.kill_switch.unsubscribe(self._on_kill_switch)

    def runtime_started(self, *, ok: bool) -> None:
        """The runtime's start is over; ``ok``: it started, so its service now polls the flag."""
        self.startup_over = True
        if ok and self._startup_poll is not None:
            self._startup_poll.stop()
            self._startup_poll = None
        if self._cancel_when_started:
            self._cancel_when_started = False
            if self.app.runtime.kill_switch.state is _HALTED:
                self.halt(HALT_KEY_REASON)

    @property
    def startup_polling(self) -> bool:
        """Whether the console polls the flag itself (before the service has taken over)."""
        return self._startup_poll is not None

    def _on_kill_switch(self, state: TradingState, info: HaltInfo | None) -> None:
        # The switch may publish from any thread; the message carries the change to the screen.
        self.app.post_message(TradingStateChanged(state, info))

    # -- showing -----------------------------------------------------------------------------
    def changed(self, state: TradingState, info: HaltInfo | None) -> None:
        """A change of state the kill switch reported."""
        previous = self.state
        if state is previous and info == self.app.banner.info:
            return  # already shown: the halt key draws its own halt in the same frame
        self._show(state, info)
        if state is not previous:
            self.app.event_log.add(state_line(state, info), "halt" if state is _HALTED else "warning")

    def _show(self, state: TradingState, info: HaltInfo | None) -> None:
        self.state = state
        self.app.banner.show_state(state, info)
        self.show_working()
        self.app.show_title()
        # Restyling the whole order form costs most of a frame: the banner goes out first.
        self.app.call_after_refresh(self._show_entry_state)

    def _show_entry_state(self) -> None:
        try:
            entry = self.app.order_entry
        except NoMatches:
            if self.app.is_running:
                raise
            return  # closing: the form is already gone
        halted = self.state is _HALTED
        if entry.halted != halted:
            entry.set_halted(halted)

    def show_working(self) -> None:
        """The orders a halt left working, per account (none shown unless halted)."""
        orders = self.app.runtime.execution.working_orders() if self.state is _HALTED else ()
        self.app.banner.show_working(working_by_account(orders))

    def cancel_all_finished(self, message: CancelAllFinished) -> None:
        self.app.banner.show_outcomes(message.outcomes, message.error)
        self.show_working()
        failed = message.error or any(not outcome.ok for outcome in message.outcomes.values())
        text = outcome_text(message.outcomes, message.error).plain
        self.app.event_log.add(text, "error" if failed else "info")
        self.app.refresh_soon()

    # -- the halt key ------------------------------------------------------------------------
    def halt(self, reason: str = HALT_KEY_REASON) -> None:
        """Halt now: the flag is on disk before this returns, and the banner says so."""
        already = self.state is _HALTED
        cancel_all: CancelAllTask | None = None
        if self.startup_over:
            info, cancel_all = self.app.runtime.execution.halt_now(reason, SOURCE)
        else:
            # Brokers still connecting: the flag goes on disk now, the cancel-all waits for them.
            info = self.app.runtime.kill_switch.halt(reason, SOURCE)
            self._cancel_when_started = True
        self._show(_HALTED, info)
        if not already:
            self.app.event_log.add(state_line(_HALTED, info), "halt")
        if cancel_all is not None:
            self.app.banner.cancel_all_started()
            self.app.run_worker(
                self._report(cancel_all),
                name="halt-cancel-all",
                group="halt",
                exclusive=True,
                exit_on_error=False,
            )
        elif self._cancel_when_started and self.app.runtime.execution.halt_settings.cancel_open_orders:
            self.app.banner.cancel_all_started()

    async def _report(self, cancel_all: CancelAllTask) -> None:
        try:
            # Shielded: a second press replaces this worker, never the cancel-all itself.
            outcomes = await asyncio.shield(cancel_all)
        except Exception as exc:
            self.app.post_message(CancelAllFinished({}, error=str(exc) or type(exc).__name__))
            return
        self.app.post_message(CancelAllFinished(dict(outcomes)))

    # -- resume and reduce-only --------------------------------------------------------------
    def ask_resume(self) -> None:
        # Modal screens are imported when first opened: the main screen must not wait for them.
        from .screens.resume import ResumeScreen

        app = self.app
        if isinstance(app.screen, ResumeScreen):
            return
        state = app.runtime.kill_switch.state
        if state is TradingState.ACTIVE:
            app.notify("Trading is already active", timeout=3)
            return
        app.push_screen(
            ResumeScreen(state=state.value, halt_keys=app.keys["halt"], cursor_blink=app.cursor_blink),
            self._resume_with,
        )

    def _resume_with(self, reason: str | None) -> None:
        if reason is None:
            self.app.event_log.add("resume abandoned; trading stays halted", "warning")
            return
        self._cancel_when_started = False
        self.app.run_worker(self._resume(reason), name="resume", group="state", exit_on_error=False)

    async def _resume(self, reason: str) -> None:
        try:
            await self.app.runtime.execution.resume(reason, SOURCE)
        except Exception as exc:
            self.app.post_message(LogEvent(f"resume failed: {exc}", "error", toast=True))
            return
        self.app.post_message(LogEvent(f"resumed from the console: {reason}"))

    def reduce_only(self) -> None:
        app = self.app
        switch = app.runtime.kill_switch
        state = switch.state
        if state is _HALTED:
            app.notify("Trading is halted: resume first", severity="warning", timeout=3)
            return
        if state is TradingState.REDUCING:
            app.notify("Already reduce-only; resume to trade freely", timeout=3)
            return
        try:
            info = switch.reduce_only(reason="reduce-only key", source=SOURCE)
        except Exception as exc:
            app.post_message(LogEvent(f"reduce-only failed: {exc}", "error", toast=True))
            return
        self._show(TradingState.REDUCING, info)
