"""Leaving HALTED is deliberate: type RESUME and say why. Anything else keeps trading halted."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from console.tui.widgets.halt_banner import HaltKeyHint

CONFIRM_WORD = "RESUME"


def resume_problem(word: str, reason: str) -> str | None:
    """None when the pair may resume trading, else what is wrong. The word is case-sensitive:
    typing it in capitals is the deliberate act."""
    if word.strip() != CONFIRM_WORD:
        return f"type {CONFIRM_WORD} in capitals to confirm"
    if not reason.strip():
        return "give a reason; it is kept in the journal"
    return None


class ResumeScreen(ModalScreen[str | None]):
    """Dismisses with the reason when confirmed, None when abandoned."""

    BINDINGS = [Binding("escape", "abandon", "Keep halted")]

    def __init__(
        self, *, state: str = "HALTED", halt_keys: str = "f12", cursor_blink: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.state_name = state
        self.halt_keys = halt_keys
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(id="resume-dialog", classes="dialog"):
            yield Static(
                Text(f"Resume trading (now {self.state_name})", style="bold"), classes="dialog-title"
            )
            yield Static(
                f"Orders will be accepted again. Type {CONFIRM_WORD} and the reason; "
                "the journal records who, when and why.",
                classes="dialog-text",
            )
            yield Label(f"Type {CONFIRM_WORD}")
            yield Input(placeholder=CONFIRM_WORD, id="resume-word", compact=True)
            yield Label("Reason")
            yield Input(placeholder="why it is safe to trade again", id="resume-reason", compact=True)
            yield Static("", id="resume-problem", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Resume trading", id="resume-confirm", variant="warning", compact=True, disabled=True
                )
                yield Button("Keep halted (esc)", id="resume-cancel", compact=True)
        yield HaltKeyHint(self.halt_keys, classes="screen-halt-hint")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = self.cursor_blink
        self.query_one("#resume-word", Input).focus()
        self._check(show=False)

    def _check(self, *, show: bool = True) -> str | None:
        word = self.query_one("#resume-word", Input).value
        reason = self.query_one("#resume-reason", Input).value
        problem = resume_problem(word, reason)
        self.query_one("#resume-confirm", Button).disabled = problem is not None
        box = self.query_one("#resume-problem", Static)
        box.update(Text(problem, style="yellow") if problem and show else "")
        return problem

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._check(show=bool(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "resume-word" and event.value.strip() == CONFIRM_WORD:
            self.query_one("#resume-reason", Input).focus()
            return
        self._confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "resume-confirm":
            self._confirm()
        else:
            self.dismiss(None)

    def _confirm(self) -> None:
        if self._check() is None:
            self.dismiss(self.query_one("#resume-reason", Input).value.strip())

    def action_abandon(self) -> None:
        self.dismiss(None)
