"""Run the full-screen console in this process: the log file, interpreter tuning, then the app."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from console.logs import log_to_file

from .app import make_app
from .tuning import ProcessTuning

if TYPE_CHECKING:
    from brokers.config import Config

log = logging.getLogger(__name__)


def run_console(config: Config) -> int:
    """Run the console in the terminal until the trader quits. Returns the exit code."""
    path = log_to_file(config.resolved_state_dir())
    mode = "demo" if config.demo else f"{len(config.accounts)} account(s)"
    log.info("console starting: %s, config %s, log %s", mode, config.source or "built in", path)
    tuning = ProcessTuning()
    try:
        app = make_app(config, on_accounts_loaded=tuning.accounts_loaded)
        tuning.loaded()
        result = app.run()
    finally:
        tuning.restore()
    log.info("console stopped")
    return int(result or 0)
