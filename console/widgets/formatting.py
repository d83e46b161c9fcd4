"""How numbers, money and times look on screen. Pure functions: no widgets here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich.text import Text

DASH = "—"
_CENT = Decimal("0.01")


def quantity(value: Decimal | None) -> str:
    if value is None:
        return DASH
    if value == value.to_integral_value():
        return f"{value:,.0f}"
    return f"{value.normalize():,f}"


def price(value: Decimal | None) -> str:
    if value is None:
        return DASH
    # Two places for most prices; keep up to four when the venue quotes finer ticks.
    places = 4 if value.normalize().as_tuple().exponent < -2 else 2
    return f"{value:,.{places}f}"


def average(value: Decimal | None) -> str:
    """Average prices are quotients: round them to the cent instead of showing every digit."""
    if value is None:
        return DASH
    return price(value.quantize(_CENT, rounding=ROUND_HALF_EVEN) if abs(value) >= 10 else value)


def amount(value: Decimal | None) -> str:
    if value is None:
        return DASH
    return f"{value.quantize(_CENT, rounding=ROUND_HALF_EVEN):,}"


STALE_MARK = "~"
PARTIAL_MARK = "?"


def money_cell(money: Any, *, signed: bool = False) -> Text:
    """A ``Money``-like value (amount, currency, stale, missing) as a right-aligned cell.

    A figure built on a stale FX rate ends in ``~``; one with a part missing (an account that
    did not answer, a rate we do not have) ends in ``?``; no figure at all reads ``n/a``. A
    trader must never read a guessed number as a real one.
    """
    if money is None:
        return Text(DASH, justify="right")
    value: Decimal | None = getattr(money, "amount", None)
    if value is None:
        return Text("n/a ", style="bold yellow", justify="right")
    text = Text(amount(value), justify="right")
    if signed:
        text.stylize("green" if value > 0 else "red" if value < 0 else "")
    if getattr(money, "missing", False):
        text.append(PARTIAL_MARK, style="bold yellow")
    elif getattr(money, "stale", False):
        text.append(STALE_MARK, style="bold yellow")
    else:
        text.append(" ")
    return text


def marks_legend(moneys: Iterable[Any]) -> str:
    """What the marks in a table mean, for the ones that appear in it."""
    stale = partial = False
    for money in moneys:
        if money is None:
            continue
        partial = partial or bool(getattr(money, "missing", False)) or getattr(money, "amount", 0) is None
        stale = stale or bool(getattr(money, "stale", False))
    parts = []
    if stale:
        parts.append(f"{STALE_MARK} stale FX rate")
    if partial:
        parts.append(f"{PARTIAL_MARK} incomplete")
    return " · ".join(parts)


def without_prefix(name: str, text: str) -> str:
    """Broker errors often start with the account name, which the screen already shows."""
    return text[len(name) + 2 :] if text.startswith(f"{name}: ") else text


def right(text: str, style: str = "") -> Text:
    return Text(text, style=style, justify="right")


def clock_time(moment: datetime | None) -> str:
    if moment is None:
        return DASH
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def duration(seconds: float | None) -> str:
    """Time left as 5h 03m / 12m 09s / 45s; ``expired`` once it is gone."""
    if seconds is None:
        return DASH
    if seconds <= 0:
        return "expired"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def latency(ms: float | None) -> str:
    if ms is None:
        return DASH
    if ms < 1:
        return "<1 ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def one_line(text: str | None, limit: int = 200) -> str:
    """Broker error text can hold newlines or be very long; a table cell shows one short line."""
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_request(request: Any) -> str:
    kind = request.order_type.value.replace("_", " ")
    return f"{request.side.value} {quantity(request.quantity)} {request.symbol} {kind} {request.time_in_force.value}"
