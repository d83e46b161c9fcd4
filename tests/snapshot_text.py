"""The text of a Textual snapshot (an SVG screen), row by row, and a diff of two: a failed
snapshot is then readable in the test run's own output, where the HTML report is not kept."""

from __future__ import annotations

import difflib
import html
import re

_TEXT = re.compile(r'<text[^>]*\by="([\d.]+)"[^>]*>(.*?)</text>', re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def screen_rows(svg: str) -> list[str]:
    """The characters on screen, one string per row, top to bottom."""
    rows: dict[float, list[str]] = {}
    for y, text in _TEXT.findall(svg):
        rows.setdefault(float(y), []).append(html.unescape(_TAG.sub("", text)))
    return ["".join(parts).replace("\xa0", " ").rstrip() for _y, parts in sorted(rows.items())]


def screen_diff(expected_svg: str, actual_svg: str, name: str) -> list[str]:
    """A unified diff of the rows on screen; empty when only colours or styles differ."""
    return list(
        difflib.unified_diff(
            screen_rows(expected_svg),
            screen_rows(actual_svg),
            f"{name} (snapshot)",
            f"{name} (this run)",
            lineterm="",
        )
    )
