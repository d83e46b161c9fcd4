"""The console's log file: always written, rotating, redacted, and it keeps the library's
warnings even when the command line has set up its own stderr logging first."""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import pty
import signal
import struct
import sys
import termios
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from console_support import wait_for
from peers.alpaca_peer import API_KEY, SECRET_KEY, AlpacaPeer

from brokers.credentials import RedactingFilter, register_secret
from console.logs import LOG_FILE_NAME, ConsoleFileHandler, StderrHandler, log_to_file, log_to_stderr

F12 = b"\x1b[24~"
CTRL_Q = b"\x11"


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger's handlers and level as the test found them, put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_the_log_file_keeps_library_warnings_after_the_command_line_set_up_stderr(
    tmp_path: Path, root_logging: logging.Logger
) -> None:
    canary = "canary-secret-in-a-message-0042"
    register_secret(canary)
    log_to_stderr(0)  # what the command line does first: errors only, on stderr
    path = log_to_file(tmp_path / "state")
    logging.getLogger("brokers.manager").info("paper: reconnect attempt 1")
    logging.getLogger("brokers.execution").warning("order at paper is UNKNOWN: key %s refused", canary)
    text = path.read_text(encoding="utf-8")
    assert "INFO brokers.manager: paper: reconnect attempt 1" in text
    assert "WARNING brokers.execution: order at paper is UNKNOWN: key *** refused" in text
    assert canary not in text
    handlers = [h for h in root_logging.handlers if isinstance(h, RotatingFileHandler)]
    assert len(handlers) == 1 and handlers[0].maxBytes > 0 and handlers[0].backupCount > 0
    ours = [h for h in root_logging.handlers if isinstance(h, StderrHandler | ConsoleFileHandler)]
    assert len(ours) == 2
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in ours)
    log_to_file(tmp_path / "state")  # again: replaced, not doubled
    assert len([h for h in root_logging.handlers if isinstance(h, RotatingFileHandler)]) == 1


def test_a_secret_in_an_exception_never_reaches_the_log_file(
    tmp_path: Path, root_logging: logging.Logger
) -> None:
    canary = "canary-secret-in-a-traceback-0043"
    register_secret(canary)
    path = log_to_file(tmp_path / "state")
    log = logging.getLogger("brokers.adapters.alpaca")

    def refuse(key: str) -> None:
        raise PermissionError(f"401 from the broker for key {key}")

    try:
        refuse(canary)
    except PermissionError:
        log.exception("the account refused the request")
    log.error("stack while the key was %s", "set", stack_info=True)
    text = path.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text
    assert "PermissionError: 401 from the broker for key ***" in text
    assert "Stack (most recent call last)" in text
    assert canary not in text


def test_a_traceback_another_handler_formatted_first_is_still_redacted(
    tmp_path: Path, root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = "canary-secret-in-a-traceback-0044"
    register_secret(canary)
    # A plain handler ahead of ours leaves its unredacted traceback text cached on the record.
    plain = logging.StreamHandler(io.StringIO())
    root_logging.handlers.insert(0, plain)
    log_to_stderr(1)
    path = log_to_file(tmp_path / "state")
    try:
        raise ValueError(f"bad token {canary}")
    except ValueError:
        logging.getLogger("brokers.execution").exception("submit failed")
    root_logging.removeHandler(plain)
    text = path.read_text(encoding="utf-8")
    assert "ValueError: bad token ***" in text and canary not in text
    err = capsys.readouterr().err
    assert "ValueError: bad token ***" in err and canary not in err


class BlockedAlpaca(AlpacaPeer):
    """An Alpaca paper account on which Alpaca reports trading blocked."""

    async def _account(self, request: web.Request) -> web.Response:
        import json

        answer = await super()._account(request)
        assert answer.text is not None
        account = json.loads(answer.text)
        account["trading_blocked"] = True
        return web.json_response(account)


def _console_script() -> str:
    script = Path(sys.executable).with_name("trading-console")
    if not script.is_file():
        pytest.skip("the trading-console script is not installed in this environment")
    return str(script)


async def test_a_console_session_leaves_a_redacted_log_with_the_library_warnings(
    isolated_home: Path,
) -> None:
    peer = await BlockedAlpaca().start()
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "[[accounts]]\nname = 'paper'\ntype = 'sim'\ndefault = true\n\n"
        f"[[accounts]]\nname = 'alpaca'\ntype = 'alpaca'\nbase_url = '{peer.base_url}'\ntimeout = 2\n",
        encoding="utf-8",
    )
    env = {key: value for key, value in os.environ.items() if key != "SYSTEM_HALTED"}
    env.update(
        TRADING_CONSOLE_HOME=str(isolated_home),
        ALPACA_API_KEY=API_KEY,
        ALPACA_SECRET_KEY=SECRET_KEY,
        # Secrets come from the environment here; the machine's own keyring is never asked.
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        TERM="xterm-256color",
    )
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = await asyncio.create_subprocess_exec(
        _console_script(),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    screen = bytearray()

    def drain() -> None:
        try:
            screen.extend(os.read(primary, 65536))
        except OSError:  # the console closed its end
            asyncio.get_running_loop().remove_reader(primary)

    loop = asyncio.get_running_loop()
    loop.add_reader(primary, drain)
    log_file = isolated_home / "state" / LOG_FILE_NAME

    def logged(text: str) -> bool:
        return log_file.is_file() and text in log_file.read_text(encoding="utf-8")

    try:
        # Connected, and the adapter warned about the account (a real library warning).
        await wait_for(lambda: logged("WARNING brokers.adapters.alpaca"), within=60)
        os.write(primary, F12)
        await wait_for(lambda: logged("WARNING brokers.killswitch: trading HALTED by console"), within=30)
        os.write(primary, CTRL_Q)
        await asyncio.wait_for(process.wait(), 30)
        assert process.returncode == 0, bytes(screen[-2000:]).decode(errors="replace")
    finally:
        loop.remove_reader(primary)
        os.close(primary)
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        await peer.stop()
    logs: dict[str, Any] = {
        path.name: path.read_text(encoding="utf-8") for path in log_file.parent.glob(f"{LOG_FILE_NAME}*")
    }
    text = "".join(logs.values())
    assert "Alpaca reports trading_blocked on this account" in text
    assert "console stopped" in text
    assert peer.count("GET", "/v2/account") >= 1  # the secrets were loaded and used
    for secret in (SECRET_KEY, API_KEY):
        assert secret not in text
