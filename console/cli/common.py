"""What every subcommand shares: exit codes, config resolution, error mapping and output.

Only typer is imported at module level: ``trading-console halt`` must not pay for pydantic
models it does not use, let alone textual or a broker SDK.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from brokers.config import AccountConfig, Config
    from brokers.runtime import Runtime

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

T = TypeVar("T")


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    CONFIG = 3
    CREDENTIALS = 4
    NETWORK = 5
    BROKER = 6
    REJECTED = 7


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 not done (declined, an account unhealthy, a cancel failed, the journal "
    "or state folder unusable); "
    "2 bad arguments; 3 configuration; 4 credentials (missing, refused, no keyring); "
    "5 network (connection lost or timed out); 6 broker error; 7 order rejected."
)


@dataclass
class CliState:
    """Global options, kept on the click context for every subcommand."""

    config_path: Path | None = None
    demo: bool = False
    _config: Config | None = field(default=None, repr=False)

    def target_config_path(self) -> Path:
        """Where ``init`` and ``add`` write: ``--config`` if given, else the user config."""
        from brokers.paths import default_config_path

        return self.config_path.expanduser() if self.config_path else default_config_path()

    def config(self) -> Config:
        """``--demo``; else ``--config``; else the user config if it exists; else the demo."""
        if self._config is None:
            self._config = self._load()
        return self._config

    def using_demo(self) -> bool:
        return self.config().demo

    def _load(self) -> Config:
        from brokers.config import demo_config, load_config
        from brokers.errors import ConfigError
        from brokers.paths import default_config_path

        if self.demo:
            return demo_config()
        if self.config_path is not None:
            path = self.config_path.expanduser()
            if not path.is_file():
                raise typer.BadParameter(
                    f"no config file at {path} (run `trading-console --config {path} init` to write one)",
                    param_hint="'--config'",
                )
        else:
            path = default_config_path()
            if not path.is_file():
                return demo_config()
        try:
            return load_config(path)
        except ConfigError as exc:
            fail(str(exc), ExitCode.CONFIG)
        except Exception as exc:  # nothing a config file holds may end in a traceback
            fail(f"{config_problem(path, exc)}; fix the file or name another with --config", ExitCode.CONFIG)


def config_problem(path: Path, exc: BaseException) -> str:
    """What is wrong with the config file at ``path``, in one line, whatever ``exc`` is."""
    from brokers.errors import ConfigError

    cause = exc.__context__
    if isinstance(exc, ConfigError) and isinstance(cause, OSError | UnicodeDecodeError):
        exc = cause  # the library names only the exception's class; say what it means
    elif isinstance(exc, ConfigError):
        return describe(exc).splitlines()[0]
    if isinstance(exc, RecursionError):
        why = "it is nested too deeply to read"
    elif isinstance(exc, MemoryError):
        why = "it is too large to read"
    elif isinstance(exc, UnicodeDecodeError):
        why = "it is not UTF-8 text"
    elif isinstance(exc, IsADirectoryError):
        why = "it is a directory"
    elif isinstance(exc, OSError):
        why = exc.strerror or describe(exc)
    else:
        why = describe(exc).splitlines()[0]
    return f"cannot read the config {path}: {why}"


def state_of(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


# -- output -------------------------------------------------------------------------------------


def fail(message: str, code: int = ExitCode.FAILED) -> NoReturn:
    """Print ``message`` on stderr and leave with ``code``. Typed as returning so callers can
    use it in expressions; it never returns."""
    from brokers.credentials import redact

    typer.secho(f"Error: {redact(message)}", err=True, fg=typer.colors.RED)
    raise typer.Exit(int(code))


def warn(message: str) -> None:
    typer.secho(f"Warning: {message}", err=True, fg=typer.colors.YELLOW)


def bad_argument(message: str, param_hint: str) -> NoReturn:
    raise typer.BadParameter(message, param_hint=f"'{param_hint}'")


def account_named(config: Config, name: str, param_hint: str) -> AccountConfig:
    """The configured account called ``name``, or a usage error that lists the accounts there are."""
    for account in config.accounts:
        if account.name == name:
            return account
    known = ", ".join(a.name for a in config.accounts) or "none configured"
    return bad_argument(f"no account named {name!r}; accounts: {known}", param_hint)


def to_jsonable(value: Any) -> Any:
    """Decimals become strings (never floats: a price must not change on its way to a script),
    datetimes ISO 8601, enums their value."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    return value


def print_json(data: Any) -> None:
    typer.echo(json.dumps(to_jsonable(data), indent=2, ensure_ascii=False))


PIPE_WIDTH = 160


def console() -> Console:
    """A rich console on the current stdout (tests swap stdout between invocations)."""
    import os

    from rich.console import Console

    # Piped output has no width of its own; 80 columns would fold most tables.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)


# -- errors ---------------------------------------------------------------------------------------


def exit_code_for(exc: BaseException) -> ExitCode | None:
    """The exit code a library exception maps to; None for anything unexpected."""
    from brokers import errors

    if isinstance(exc, errors.ConfigError):
        return ExitCode.CONFIG
    if isinstance(exc, errors.CredentialsError | errors.AuthenticationError):
        return ExitCode.CREDENTIALS
    if isinstance(
        exc, errors.BrokerConnectionError | errors.BrokerTimeoutError | TimeoutError | ConnectionError
    ):
        return ExitCode.NETWORK
    if isinstance(exc, errors.BrokerError):
        return ExitCode.BROKER
    return None


def describe(exc: BaseException) -> str:
    from brokers.credentials import redact

    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) and not str(exc):
        text = "timed out"
    return redact(text)


def library_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Turn the library's exceptions into a one-line message and the matching exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
            raise
        except Exception as exc:
            from brokers.errors import UnknownAccountError

            if isinstance(exc, UnknownAccountError):
                bad_argument(str(exc), "ACCOUNT")
            if isinstance(exc, StateFolderError):
                fail(str(exc), ExitCode.FAILED)
            code = exit_code_for(exc)
            if code is None:
                raise
            fail(describe(exc), code)
            raise  # unreachable: fail() raises

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class StateFolderError(Exception):
    """The state folder or its journal cannot be used: the message says which, why and what
    to do about it."""


def state_problem(config: Config, exc: BaseException) -> StateFolderError | None:
    """``exc``, raised while opening or using the state folder, as one line naming the file and
    what to do; None when it is not about the state folder."""
    import sqlite3

    folder = config.resolved_state_dir()
    journal = config.journal_path
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return StateFolderError(
            f"the journal {journal} is damaged ({describe(exc)}): move it aside, keeping it for the "
            "record, and run again to start a new one"
        )
    if isinstance(exc, sqlite3.Error):
        return StateFolderError(
            f"the journal {journal} cannot be used ({describe(exc)}): it must be a file this user "
            "can read and write, in a folder this user can write"
        )
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
        where = exc.filename or folder
        why = exc.strerror or describe(exc)
        return StateFolderError(
            f"the state folder {folder} cannot be used ({where}: {why}): it must be a folder this "
            "user can read and write (state_dir in the config)"
        )
    return None


@asynccontextmanager
async def started_runtime(config: Config, *, connect: bool = True) -> AsyncIterator[Runtime]:
    """The same runtime the console builds, started and always stopped. A journal or state
    folder that cannot be used comes out as a StateFolderError."""
    import sqlite3

    from brokers.runtime import build_runtime

    try:
        runtime = build_runtime(config)
    except Exception as exc:
        problem = state_problem(config, exc)
        if problem is None:
            raise
        raise problem from exc
    try:
        try:
            await runtime.start(connect=connect)
            yield runtime
        finally:
            await runtime.stop()
    except sqlite3.Error as exc:
        problem = state_problem(config, exc)
        if problem is None:
            raise
        raise problem from exc


@library_errors
def cancel_everywhere(config: Config) -> dict[str, dict[str, Any]]:
    """Every working order at every account cancelled: per account ``ok``, ``cancelled`` and
    ``error``, as ``--json`` prints it."""

    async def go() -> dict[str, dict[str, Any]]:
        async with started_runtime(config) as runtime:
            outcomes = await runtime.execution.cancel_all()
            # While halted, connecting already cancelled what was working at each account.
            on_connect = runtime.manager.halt_cancels()
        result: dict[str, dict[str, Any]] = {}
        for name, o in outcomes.items():
            swept = on_connect.get(name)
            cancelled = o.cancelled + (len(swept.cancelled) if swept is not None else 0)
            result[name] = {"ok": o.ok, "cancelled": cancelled, "error": o.error}
        return result

    return run(go())


def print_cancel_outcomes(outcomes: dict[str, dict[str, Any]]) -> None:
    from .tables import cancel_outcomes_table

    console().print(cancel_outcomes_table(outcomes))


def cli_source() -> str:
    """Who acted, for the journal: the command line and the local user."""
    import getpass

    try:
        user = getpass.getuser()
    except Exception:  # no user database entry in some containers
        user = "unknown"
    return f"cli:{user}"
