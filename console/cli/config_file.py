"""Writing config files without losing the comments people keep in them (tomlkit)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Comment, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

EXAMPLE_NAME = "config.example.toml"

NEW_FILE_HEADER = (
    "trading-console configuration. Every setting is described in config.example.toml;",
    "`trading-console init` writes a fully commented config instead of this short one.",
)


def example_path() -> Path | None:
    """The commented example: packaged beside the console, or at the top of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / EXAMPLE_NAME, package.parent / EXAMPLE_NAME):
        if candidate.is_file():
            return candidate
    return None


def write_atomically(path: Path, text: str) -> None:
    """Write the whole file or nothing: a crash mid-write must not leave half a config."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_document(path: Path) -> TOMLDocument:
    if path.is_file():
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    doc = tomlkit.document()
    for line in NEW_FILE_HEADER:
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.nl())
    doc.add("base_currency", "USD")
    return doc


def _detach_trailing_sections(table: Table) -> list[Any]:
    """Comments after a blank line at the end of the last account belong to what follows (the
    next section's heading, commented-out examples); lift them out so a new account goes above
    them rather than below."""
    body = table.value.body
    if body and isinstance(body[-1][1], Table):
        inner = _detach_trailing_sections(body[-1][1])
        if inner:
            return inner
    trailing: list[Any] = []
    index = len(body)
    while index > 0 and body[index - 1][0] is None and isinstance(body[index - 1][1], Comment | Whitespace):
        index -= 1
    for position in range(index, len(body)):
        if isinstance(body[position][1], Whitespace):
            trailing = [item for _, item in body[position:]]
            del body[position:]
            body.append((None, Whitespace("\n")))
            break
    return trailing


def append_account(doc: TOMLDocument, account: dict[str, Any], comments: dict[str, str]) -> None:
    """Append an [[accounts]] table, each key with its comment, and make it the only default if
    it says ``default = true``."""
    if account.get("default"):
        for existing in doc.get("accounts", []):
            if existing.get("default"):
                existing["default"] = False
    table = tomlkit.table()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    table.add(tomlkit.comment(f"Added by `trading-console add` on {stamp}."))
    for key, value in account.items():
        item = tomlkit.item(value)
        if key in comments:
            item.comment(comments[key])
        table.add(key, item)
    existing = doc.get("accounts")
    if isinstance(existing, AoT) and len(existing):
        for item in _detach_trailing_sections(existing[-1]):
            table.add(item)
        existing.append(table)
    else:
        accounts = tomlkit.aot()
        accounts.append(table)
        doc.append("accounts", accounts)
