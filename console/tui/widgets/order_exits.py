"""The order ticket's exits: a take-profit and a stop-loss price that make the order a bracket
(both) or an OTO (one). The order entry form reads them with its other fields and validates them
through ``OrderRequest``, which names the field at fault (a take-profit below a buy's entry, say)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input

__all__ = ["EXIT_FIELDS", "EXIT_LABELS", "OrderExits", "exit_request_fields"]

# Form field names; each is also the OrderRequest field it fills.
EXIT_FIELDS = ("take_profit", "stop_loss")
EXIT_LABELS = {"take_profit": "take-profit", "stop_loss": "stop-loss"}


def exit_request_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """The request fields for the exits typed on the ticket; a blank box asks for none."""
    return {
        name: text.strip()
        for name in EXIT_FIELDS
        if isinstance(text := values.get(name), str) and text.strip()
    }


class OrderExits(Horizontal):
    """Take-profit and stop-loss inputs, each with its label and its message."""

    DEFAULT_CSS = """
    OrderExits {
        column-span: 2;
        height: auto;
    }
    OrderExits > .field {
        width: 1fr;
    }
    OrderExits > #field-take_profit {
        margin-right: 2;
    }
    """

    def compose(self) -> ComposeResult:
        # The form's own field box, so its messages and focus work for these as for every field.
        from .order_entry import FieldBox

        for name, label, short in (("take_profit", "Take profit", "TP"), ("stop_loss", "Stop loss", "SL")):
            yield FieldBox(
                name,
                label,
                short_label=short,
                control=Input(
                    placeholder="exit price (optional)",
                    id=f"order-{name}",
                    compact=True,
                    select_on_focus=False,
                ),
            )
