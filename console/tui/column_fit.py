"""Which set of columns a table shows in the width it has.

A table that does not fit its pane cuts its right-hand columns, and a cut figure is worse than
a missing one: a trader may read 1,234,5 as a number. So a table offers several column sets,
widest first, and shows the first its pane holds whole; the last is what a trader reads first,
shown whatever the width."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from textual.widgets import DataTable

Column = tuple[str, str, int | None]
"""(key, label, width); width None lets the table size the column to its cells."""
Columns = tuple[Column, ...]

ColumnSet = TypeVar("ColumnSet")


def keys(columns: Iterable[Column]) -> tuple[str, ...]:
    return tuple(key for key, _label, _width in columns)


def table_width(table: DataTable[Any], widths: Sequence[int], *, scrollbar: bool = True) -> int:
    """How wide ``table`` must be to show columns of these content widths whole: each with its
    cell padding, and beside the vertical scrollbar unless ``scrollbar`` is False."""
    bar = table.styles.scrollbar_size_vertical if scrollbar else 0
    return sum(widths) + 2 * table.cell_padding * len(widths) + bar


def widest_fitting(sets: Sequence[ColumnSet], width: int, needed: Callable[[ColumnSet], int]) -> ColumnSet:
    """The first of ``sets`` (widest first) that ``needed`` says fits in ``width``, else the
    last: the narrowest is shown whatever the width."""
    return next((columns for columns in sets if needed(columns) <= width), sets[-1])
