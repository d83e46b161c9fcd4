"""An order's history as the journal recorded it, and the orders of a day: what the blotter shows
after a restart, its detail view, and ``trading-console orders`` read.

Read through the journal's own queries (``Journal.events`` for one order's rows, ``Journal.orders``
for the last known state of every order); nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .amend import MODIFIED, MODIFY, MODIFY_REJECT
from .journal import Journal, JournalEvent
from .models import Order

__all__ = ["Transition", "order_history", "orders_since", "start_of_day"]

# What each kind of row means, as the history says it.
_KIND_WORDS = {
    "intent": "sent to the order path",
    "risk_reject": "refused before it was sent",
    "reject": "refused at the final check",
    "ack": "broker answered",
    "update": "broker update",
    "fill": "fill",
    "cancel": "cancel",
    "unknown": "answer lost",
    "reconcile": "reconciled with the broker",
    MODIFY: "change asked",
    MODIFIED: "changed at the broker",
    MODIFY_REJECT: "change refused",
}


@dataclass(frozen=True, slots=True)
class Transition:
    """One journal row of an order: when, what kind, the status it left, and what happened."""

    time: datetime
    kind: str
    status: str | None
    filled_quantity: Decimal | None
    avg_fill_price: Decimal | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "kind": self.kind,
            "status": self.status,
            "filled_quantity": self.filled_quantity,
            "avg_fill_price": self.avg_fill_price,
            "detail": self.detail,
        }


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: the trading day the blotter and ``orders`` show."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# How many of the day's orders ``orders`` shows, the ones last written to.
DAY_ORDERS_SHOWN = 1000


def orders_since(
    journal: Journal,
    since: datetime,
    live: Mapping[str, Order] | None = None,
    *,
    most: int = DAY_ORDERS_SHOWN,
) -> list[Order]:
    """The orders the journal changed at or after ``since`` (the ``most`` most recent), oldest
    first; an order in ``live`` (the execution layer's, kept current) is taken from there. Read
    through the journal's lookups, so a long history costs nothing here."""
    live = live or {}
    return [live.get(order.client_order_id, order) for order in journal.orders_since(since, most=most)]


def order_history(journal: Journal, client_order_id: str) -> list[Transition]:
    """Every row of one order, oldest first, as transitions a person reads."""
    return [_transition(event) for event in journal.events(order=client_order_id)]


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _request_text(request: Mapping[str, Any]) -> str:
    parts = [str(request.get(key) or "") for key in ("side", "quantity", "symbol", "order_type")]
    text = " ".join(part for part in parts if part)
    if request.get("limit_price") is not None:
        text += f" @ {request['limit_price']}"
    if request.get("stop_price") is not None:
        text += f" stop {request['stop_price']}"
    if request.get("time_in_force"):
        text += f" {request['time_in_force']}"
    return text


def _terms_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    names = ("quantity", "limit_price", "stop_price", "time_in_force")
    changes = [
        f"{name.replace('_', ' ')} {before.get(name)} -> {after.get(name)}"
        for name in names
        if before.get(name) != after.get(name)
    ]
    return ", ".join(changes) or "no change"


def _fills_text(fills: Iterable[Any]) -> str:
    shown = []
    for fill in fills:
        if not isinstance(fill, Mapping):
            continue
        text = f"{fill.get('quantity')} @ {fill.get('price')}"
        commission = _decimal(fill.get("commission"))
        if commission:
            text += f" (commission {commission} {fill.get('currency') or ''})".replace(" )", ")")
        shown.append(text)
    return ", ".join(shown)


def _transition(event: JournalEvent) -> Transition:
    data = event.data
    state = data.get("state") if isinstance(data.get("state"), Mapping) else None
    words = [_KIND_WORDS.get(event.kind, event.kind)]
    request = data.get("request")
    if event.kind in (MODIFY, MODIFY_REJECT) and isinstance(data.get("from"), Mapping):
        words.append(_terms_change(data["from"], data.get("to") or {}))
    elif isinstance(request, Mapping):
        words.append(_request_text(request))
    if isinstance(data.get("fills"), list) and data["fills"]:
        words.append(_fills_text(data["fills"]))
    if event.kind == MODIFY_REJECT:
        words.append(f"{data.get('code')}: {data.get('reason')}")
    if event.kind == "cancel" and data.get("requested"):
        words.append("asked of the broker")
    if state is not None:
        if state.get("broker_order_id"):
            words.append(f"broker id {state['broker_order_id']}")
        if state.get("reject_code") or state.get("reject_reason"):
            words.append(f"{state.get('reject_code') or ''}: {state.get('reject_reason') or ''}".strip(": "))
    return Transition(
        time=event.time,
        kind=event.kind,
        status=str(state["status"]) if state is not None and state.get("status") else None,
        filled_quantity=_decimal(state.get("filled_quantity")) if state is not None else None,
        avg_fill_price=_decimal(state.get("avg_fill_price")) if state is not None else None,
        detail="; ".join(word for word in words if word),
    )
