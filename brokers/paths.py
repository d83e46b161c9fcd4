"""Where the config and the state (journal, SYSTEM_HALTED flag) live.

platformdirs gives the usual per-platform places; ``TRADING_CONSOLE_HOME`` moves both under one
folder (tests point it at a temporary directory so they never touch the user's home).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

APP_NAME = "trading-console"
HOME_ENV = "TRADING_CONSOLE_HOME"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def state_dir() -> Path:
    home = _home()
    return home / "state" if home else Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def default_config_path() -> Path:
    return config_dir() / "config.toml"


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# $NAME or ${NAME}: os.path.expandvars leaves an unset one in place, which would make a folder
# literally named "$NAME".
_VARIABLE = re.compile(r"\$(?:(\w+)|\{([^}]*)\})")


def expand_path(raw: str | os.PathLike[str], base: Path | None = None) -> Path:
    """A path as a person wrote it in a config file, made absolute: ``~`` and environment
    variables expanded, and a relative path anchored to ``base`` (the config file's folder),
    else to the current directory at the time of the call. Raises ValueError for an empty path,
    an unset variable or an unknown ``~user``."""
    text = os.fspath(raw).strip()
    if not text:
        raise ValueError("must name a folder, not be empty")
    for match in _VARIABLE.finditer(text):
        name = match.group(1) or match.group(2)
        if not name or name not in os.environ:
            raise ValueError(f"the environment variable {match.group(0)} is not set")
    # os.path's expanduser leaves an unknown ~user as it is (Path's raises RuntimeError).
    path = Path(os.path.expanduser(os.path.expandvars(text)))
    if path.parts and path.parts[0].startswith("~"):
        raise ValueError(f"cannot expand {path.parts[0]!r}: no such user")
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()).absolute() / path
    return path
