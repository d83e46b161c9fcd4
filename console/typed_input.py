"""Numbers as a person types them, checked before they reach the library.

The library reads a typed number by dropping every comma, so ``1,5`` (one and a half where a
comma is the decimal mark) would become fifteen. A comma is accepted here only where it can
mean nothing but a thousands separator (``1,000``, ``12,345.5``); anything else is refused with
a message naming the field, before an order or a setting is built from it.
"""

from __future__ import annotations

import re

_SHOWN_MAX = 40
_GROUPED = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?")


def ungrouped(text: str, field: str) -> str:
    """``text`` with its thousands separators removed, or ValueError naming ``field`` when a
    comma stands anywhere a thousands separator cannot."""
    stripped = text.strip()
    if "," not in stripped:
        return text
    if _GROUPED.fullmatch(stripped):
        return stripped.replace(",", "")
    if len(stripped) > _SHOWN_MAX:
        stripped = stripped[: _SHOWN_MAX - 1] + "…"
    hint = ""
    if re.fullmatch(r"[+-]?\d*,\d+", stripped):
        hint = f"; for {stripped.replace(',', '.')} write a point"
    raise ValueError(
        f"{field} may use a comma only to separate thousands (1,000 or 12,345.5), not {stripped!r}{hint}"
    )
