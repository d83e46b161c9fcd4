"""A DataTable addressed by row key and column key that repaints only the cells that changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from textual.widgets import DataTable


class KeyedTable(DataTable):
    """Rows are keyed (account name, symbol, client order id); columns are keyed too.

    ``upsert`` compares each cell with what is already shown and calls ``update_cell`` only for
    the ones that differ, so a tick that moves one price repaints one cell, not the table.
    Callers wrap bursts of updates in ``app.batch_update()``.
    """

    COLUMNS: Sequence[tuple[str, str, int | None]] = ()
    """(key, label, width) for each column; width None lets the table size it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        # Set before DataTable.__init__, which already asks for the row order.
        self._shown: dict[str, dict[str, Any]] = {}
        self._structure = 0
        self._ordered_key: tuple[int, int] | None = None
        self._ordered: list[Any] = []
        self._offsets_key: tuple[int, int] | None = None
        self._offsets: list[Any] = []
        super().__init__(**kwargs)
        self._auto_width = {key for key, _label, width in self.COLUMNS if width is None}
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width)

    # DataTable rebuilds its row order and line offsets after every cell update; with
    # thousands of rows that is most of a frame. They depend only on which rows exist, in
    # what order, so here they are rebuilt only when rows are added, removed or reordered.
    def add_row(self, *cells: Any, **kwargs: Any) -> Any:
        self._structure += 1
        return super().add_row(*cells, **kwargs)

    def remove_row(self, row_key: Any) -> None:
        self._structure += 1
        super().remove_row(row_key)

    def clear(self, columns: bool = False) -> Any:
        self._structure += 1
        self._shown.clear()
        return super().clear(columns)

    def sort(self, *columns: Any, **kwargs: Any) -> Any:
        self._structure += 1
        return super().sort(*columns, **kwargs)

    @property
    def ordered_rows(self) -> list[Any]:
        key = (self._structure, self.row_count)
        if key != self._ordered_key:
            self._ordered = DataTable.ordered_rows.fget(self)  # type: ignore[attr-defined]
            self._ordered_key = key
        return self._ordered

    @property
    def _y_offsets(self) -> list[Any]:
        key = (self._structure, self.row_count)
        if key != self._offsets_key:
            self._offsets = [(row.key, y) for row in self.ordered_rows for y in range(row.height)]
            self._offsets_key = key
        return self._offsets

    @property
    def row_keys(self) -> list[str]:
        return list(self._shown)

    def has_row(self, key: str) -> bool:
        return key in self._shown

    def shown(self, key: str, column: str) -> Any:
        return self._shown[key][column]

    def upsert(self, key: str, cells: Mapping[str, Any]) -> bool:
        """Add the row or update the cells that changed. Returns whether anything changed."""
        current = self._shown.get(key)
        if current is None:
            row = {column: cells.get(column, "") for column, _label, _width in self.COLUMNS}
            self._shown[key] = dict(row)
            self.add_row(*row.values(), key=key)
            return True
        changed = False
        for column, value in cells.items():
            if current.get(column) != value:
                current[column] = value
                self.update_cell(key, column, value, update_width=column in self._auto_width)
                changed = True
        return changed

    def set_columns(self, columns: Sequence[tuple[str, str, int | None]]) -> None:
        """Show ``columns`` instead of the ones shown; the rows are gone, for the caller to show
        again with cells for the new columns."""
        self.COLUMNS = columns
        self._auto_width = {key for key, _label, width in columns if width is None}
        self.clear(columns=True)
        for key, label, width in columns:
            self.add_column(label, key=key, width=width)

    def drop(self, key: str) -> None:
        if self._shown.pop(key, None) is not None:
            self.remove_row(key)

    def keep_only(self, keys: Iterable[str]) -> None:
        wanted = set(keys)
        for key in [k for k in self._shown if k not in wanted]:
            self.drop(key)

    def selected_key(self) -> str | None:
        """The key of the row under the cursor, if there is one."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return None if row_key.value is None else str(row_key.value)

    def visible_row_range(self, margin: int = 2) -> range:
        """Indexes of the rows on screen (plus a small margin), for repainting only what shows."""
        top = int(self.scroll_y)
        height = max(1, self.scrollable_content_region.height)
        start = max(0, top - margin)
        return range(start, min(self.row_count, top + height + margin))
