"""Where the config and the state (journal, SYSTEM_HALTED flag) live.

platformdirs gives the usual per-platform places; ``TRADING_CONSOLE_HOME`` moves both under one
folder (tests point it at a temporary directory so they never touch the user's home).
"""

from __future__ import annotations

import os
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
