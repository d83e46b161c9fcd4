"""How numbers, money, states and times are written, on the screen and on the command line.

Pure functions returning strings or rich ``Text``: the console's widgets and the command's
tables both use them, so a figure reads the same in both. A figure built on a stale FX rate or
on partial data is always marked, never shown as if it were sound.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from rich.text import Text

from brokers.enums import AssetClass

if TYPE_CHECKING:
    from brokers.fx import Money
    from brokers.models import OrderRequest

DASH = "—"
_CENT = Decimal("0.01")


_ASSET_CLASSES = {
    AssetClass.STOCK: "Stock",
    AssetClass.OPTION: "Option",
    AssetClass.FUTURE: "Future",
    AssetClass.FOREX: "FX",
    AssetClass.CRYPTO: "Crypto",
    AssetClass.CFD: "CFD",
    AssetClass.OTHER: "Other",
}


def asset_class(value: AssetClass) -> str:
    """What is held, in a word, for a table's type column."""
    return _ASSET_CLASSES.get(value, value.value.title())


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
    exponent = value.normalize().as_tuple().exponent
    places = 4 if isinstance(exponent, int) and exponent < -2 else 2
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


def number(value: Decimal | float | None, places: int | None = None) -> str:
    """Thousands separated; ``places`` fixed, else as many as the value has."""
    if value is None:
        return DASH
    exact = value if isinstance(value, Decimal) else Decimal(str(value))
    if places is not None:
        return f"{exact:,.{places}f}"
    return f"{exact.normalize():,f}"


def signed(value: Decimal | None, places: int = 2) -> Text:
    """Green above zero, red below."""
    if value is None:
        return Text(DASH)
    return Text(number(value, places), style=_sign_style(value))


def _sign_style(value: Decimal) -> str:
    return "green" if value > 0 else "red" if value < 0 else ""


def money_cell(money: Money | None, *, signed: bool = False) -> Text:
    """A ``Money`` as a compact, right-aligned table cell on screen.

    A figure built on a stale FX rate ends in ``~``; one with a part missing (an account that
    did not answer, a rate we do not have) ends in ``?``; no figure at all reads ``n/a``. A
    trader must never read a guessed number as a real one.
    """
    if money is None:
        return Text(DASH, justify="right")
    value = money.amount
    if value is None:
        return Text("n/a ", style="bold yellow", justify="right")
    text = Text(amount(value), justify="right")
    if signed:
        text.stylize(_sign_style(value))
    if money.missing:
        text.append(PARTIAL_MARK, style="bold yellow")
    elif money.stale:
        text.append(STALE_MARK, style="bold yellow")
    else:
        text.append(" ")
    return text


def money_text(money: Money | None, *, currency: bool = True, signed: bool = False) -> Text:
    """A ``Money`` in words, for the command line: ``1,234.50 USD (stale)``; ``(partial)``
    when a part is missing; ``n/a`` when there is no figure at all."""
    if money is None:
        return Text(DASH)
    if money.amount is None:
        return Text("n/a", style="yellow")
    figure = number(money.amount, 2)
    text = Text(f"{figure} {money.currency}".strip() if currency else figure)
    if signed:
        text.stylize(_sign_style(money.amount))
    if money.missing:
        text.append(" (partial)", style="yellow")
    elif money.stale:
        text.append(" (stale)", style="yellow")
    return text


def marks_legend(moneys: Iterable[Money | None]) -> str:
    """What the marks in a table mean, for the ones that appear in it."""
    stale = partial = False
    for money in moneys:
        if money is None:
            continue
        partial = partial or money.missing or money.amount is None
        stale = stale or money.stale
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


def milliseconds(value: float | None) -> str:
    """A measured time for a report: ``1.5 ms``, ``250 ms``."""
    if value is None:
        return DASH
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def latency(ms: float | None) -> str:
    """A connection's latency in a narrow cell."""
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


LIVE_STYLE = "bold red"

CONNECTION_STYLES = {
    "CONNECTED": "green",
    "CONNECTING": "yellow",
    "RESYNCING": "yellow",
    "DEGRADED": "yellow",
    "FAILED": "bold red",
    "DISCONNECTED": "red",
}


def mode(live: bool) -> Text:
    """LIVE in red, paper dimmed."""
    return Text("LIVE", style=LIVE_STYLE) if live else Text("paper", style="dim")


def connection_state(value: str) -> Text:
    return Text(value, style=CONNECTION_STYLES.get(value, ""))


def size(request: OrderRequest) -> str:
    """The quantity, or for a notional order the amount of money (``500.00 notional``)."""
    if request.quantity is not None:
        return quantity(request.quantity)
    return f"{amount(request.notional)} notional"


def describe_size(request: OrderRequest) -> str:
    """Side, size and symbol: ``BUY 10 AAPL``, or ``BUY AAPL for 500.00`` for a notional order."""
    if request.quantity is not None:
        return f"{request.side.value} {quantity(request.quantity)} {request.symbol}"
    return f"{request.side.value} {request.symbol} for {amount(request.notional)}"


def order_prices(request: OrderRequest) -> str:
    """The order's own prices as typed, every digit: ``limit 415.25 · stop 410``; empty for a
    market order."""
    parts = []
    if request.limit_price is not None:
        parts.append(f"limit {quantity(request.limit_price)}")
    if request.stop_price is not None:
        parts.append(f"stop {quantity(request.stop_price)}")
    if request.trail_percent is not None:
        parts.append(f"trail {quantity(request.trail_percent)}%")
    if request.trail_amount is not None:
        parts.append(f"trail {quantity(request.trail_amount)}")
    return " · ".join(parts)


def describe_request(request: OrderRequest) -> str:
    """One line a trader reads back: side, quantity, symbol, type, its prices, time in force."""
    parts = [describe_size(request)]
    parts.append(request.order_type.value.replace("_", " "))
    if request.limit_price is not None:
        parts.append(f"@ {quantity(request.limit_price)}")  # as typed: every digit
    if request.stop_price is not None:
        parts.append(f"stop {quantity(request.stop_price)}")
    if request.trail_percent is not None:
        parts.append(f"trail {quantity(request.trail_percent)}%")
    if request.trail_amount is not None:
        parts.append(f"trail {quantity(request.trail_amount)}")
    parts.append(request.time_in_force.value)
    return " ".join(parts)
