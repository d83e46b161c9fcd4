"""The watchlist written back to the config file it came from, as ``[ui] watchlist``, keeping
every comment and setting around it (tomlkit), the whole file or nothing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import tomlkit
from tomlkit.items import Table


def save_watchlist(path: Path, symbols: list[str]) -> None:
    """Set ``[ui] watchlist`` in the TOML file at ``path`` to ``symbols``. Raises ``OSError``
    when the file cannot be read or replaced, ``ValueError`` when it is not TOML or its
    ``ui`` is not a table."""
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except tomlkit.exceptions.ParseError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    ui = doc.get("ui")
    if ui is None:
        ui = tomlkit.table()
        doc.add("ui", ui)
    elif not isinstance(ui, Table):
        raise ValueError(f"{path}: ui is not a table")
    array = tomlkit.array()
    array.extend(symbols)
    ui["watchlist"] = array
    _replace(path, tomlkit.dumps(doc))


def _replace(path: Path, text: str) -> None:
    """Write beside the file and rename over it: a crash mid-write leaves the old file whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
