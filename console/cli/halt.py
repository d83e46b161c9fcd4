"""halt, resume and halt-status: the SYSTEM_HALTED flag from the shell.

These touch the flag file (and the journal) only. ``halt`` connects to nothing unless asked
with ``--cancel``: every running console sees the flag within its poll interval and cancels its
own working orders (``halt.cancel_open_orders``), so the halt itself is instant and works with
the network down.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    CliState,
    ExitCode,
    JsonOption,
    bad_argument,
    cancel_everywhere,
    cli_source,
    config_problem,
    describe,
    fail,
    print_cancel_outcomes,
    print_json,
    state_of,
    warn,
)

if TYPE_CHECKING:
    from brokers.desk import DeskSettings, DeskState
    from brokers.killswitch import HaltInfo, KillSwitch
    from brokers.models import TradingState


def desk_of(state: CliState, certain: bool) -> DeskSettings | None:
    """The config's ``[desk]``, when the config can be read."""
    if not certain or state.demo:
        return None
    try:
        return state.config().desk
    except Exception:  # the config's problems are reported by the command itself
        return None


def write_desk(settings: DeskSettings, trading: TradingState, reason: str) -> DeskState:
    """Set the desk's state; raises ``DeskUnavailableError``."""
    from brokers.desk.commands import desk_write

    from .common import run

    return run(desk_write(settings, trading, reason, cli_source()))


def desk_json(desk: DeskState | None, error: str | None) -> dict[str, Any] | None:
    if desk is None and error is None:
        return None
    if desk is None:
        return {"reachable": False, "error": error}
    return {
        "reachable": True,
        "state": desk.state.value,
        "reason": desk.reason,
        "source": desk.source,
        "host": desk.host,
        "version": desk.version,
        "changed_at": desk.changed_at,
    }


def flag_state_dir(state: CliState) -> tuple[Path, str | None, bool]:
    """(state dir, what is wrong with the config, certain). A config with errors must not stop
    a halt: its ``state_dir`` is read from the raw TOML; if even that fails, or there is no
    config file where one was named, the default is used and ``certain`` is False."""
    from brokers.config import load_config
    from brokers.paths import default_config_path, state_dir

    if state.demo:
        return state_dir(), None, True
    path = state.config_path.expanduser() if state.config_path is not None else default_config_path()
    if state.config_path is None and not path.exists():
        return state_dir(), None, True
    if not path.is_file():
        return state_dir(), f"no config file at {path}", False
    try:
        return load_config(path).resolved_state_dir(), None, True
    except Exception as exc:  # whatever is wrong with the config, the halt goes ahead
        problem = config_problem(path, exc)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8")).get("state_dir")
    except Exception:
        return state_dir(), problem, False
    if isinstance(raw, str) and raw.strip():
        folder = _anchored(raw.strip(), path.parent)
        return folder, f"{problem}; using its state_dir {folder}", True
    return state_dir(), f"{problem}; using the default state directory {state_dir()}", True


def _anchored(raw: str, config_folder: Path) -> Path:
    """A state_dir as the config means it (``brokers.paths.expand_path``); one that cannot be
    expanded falls back to the default state folder."""
    from brokers.paths import expand_path, state_dir

    try:
        return expand_path(raw, config_folder)
    except ValueError:
        return state_dir()


def _not_certain(problem: str | None, flag: Path) -> str:
    return (
        f"{problem}; the halt was written to the default state directory instead ({flag}), "
        "which a console started with another state_dir does not see"
    )


def halt_journals(state: CliState, directory: Path) -> tuple[Path, ...]:
    """The journals that record a halt or resume: the state folder's main journal always (the
    flag is shared by every process using the folder), and the demo's own journal when the
    command runs the demo (``brokers.config.halt_record_names``)."""
    from brokers.config import halt_record_names
    from brokers.paths import default_config_path

    demo = state.demo or (state.config_path is None and not default_config_path().exists())
    return tuple(directory / name for name in halt_record_names(demo))


@contextlib.contextmanager
def kill_switch_at(state_dir: Path, journal_paths: tuple[Path, ...]) -> Iterator[KillSwitch]:
    """A KillSwitch that journals to each of ``journal_paths`` that can be opened.

    SYSTEM_HALTED=1 in this shell is ignored: it must not make ``halt-status`` write the flag,
    and it would make ``halt`` report someone else's halt instead of this one."""
    from brokers.halt_record import HaltRecord
    from brokers.journal import Journal
    from brokers.killswitch import KillSwitch

    journals: list[Journal] = []
    for path in journal_paths:
        try:
            journals.append(Journal(path))
        except Exception as exc:  # the flag is what matters; the journal is a record of it
            warn(f"the journal {path} could not be opened ({describe(exc)}); the flag still works")
    try:
        yield KillSwitch(state_dir, journal=HaltRecord(*journals) if journals else None, env={})
    finally:
        for journal in journals:
            with contextlib.suppress(Exception):
                journal.close()


def record_halt(state_dir: Path, journal_paths: tuple[Path, ...], info: HaltInfo) -> None:
    """Journal the halt in force (``info``, already on disk as the flag) in each journal that
    does not hold it yet: once, whoever writes it. A running console that sees the flag first
    journals it itself (``KillSwitch``), under the same state lock, and this finds its row: a
    halt row from this flag's time on is this halt. A journal that cannot be opened or written
    is reported and skipped: the flag is the halt, the journal its record."""
    from brokers.haltfiles import LOCK_NAME, StateLock
    from brokers.journal import Journal

    row = {
        "time": info.time.isoformat(),
        "reason": info.reason,
        "source": info.source,
        "persisted": info.persisted,
    }
    for path in journal_paths:
        try:
            with Journal(path) as journal, StateLock(state_dir / LOCK_NAME).hold():
                last = journal.last_halt_or_resume()
                if last is None or last.kind != "halt" or last.time < info.time:
                    journal.record("halt", data=row)
        except Exception as exc:  # the flag is what matters; the journal is a record of it
            warn(
                f"the journal {path} could not be opened or written ({describe(exc)}): the halt is "
                "not recorded there; the flag still works"
            )


def info_json(info: HaltInfo | None) -> dict[str, Any]:
    if info is None:
        return {"time": None, "reason": None, "source": None}
    return {"time": info.time, "reason": info.reason, "source": info.source}


def halt(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why; kept in the flag and the journal.")
    ] = "",
    cancel: Annotated[
        bool,
        typer.Option(
            "--cancel",
            help="Also connect to every account and cancel its working orders (after the flag is written).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Halt trading everywhere: write the SYSTEM_HALTED flag that every console and script obeys.

    Instant and offline: running consoles see the flag within their poll interval and cancel
    their own working orders. Idempotent. A config with errors does not stop a halt; one that
    cannot be read at all halts the default state directory and exits 3.
    """
    from brokers.killswitch import KillSwitch

    state = state_of(ctx)
    directory, warning, certain = flag_state_dir(state)
    # The flag before any journal is opened: the first opening of a large journal written by
    # an earlier version brings it up to date, which takes seconds, and the halt cannot wait.
    switch = KillSwitch(directory, env={})
    before = switch.info if switch.is_halted else None
    info = switch.halt(reason, source=cli_source())
    # An unreadable flag is rewritten by halt(), so only an unchanged one means "already".
    already = before is not None and info == before
    flag = switch.flag_path
    record_halt(directory, halt_journals(state, directory), info)
    if warning and certain:
        warn(warning)
    desk_settings = desk_of(state, certain)
    desk: DeskState | None = None
    desk_error: str | None = None
    if desk_settings is not None:
        from brokers.desk import DeskUnavailableError
        from brokers.models import TradingState

        try:
            desk = write_desk(desk_settings, TradingState.HALTED, info.reason)
        except DeskUnavailableError as exc:
            desk_error = str(exc)
    if not info.persisted and desk is None:
        if not certain:
            warn(warning or "the config cannot be read")
        fail(f"could not write {flag}; nothing outside this command is halted", ExitCode.FAILED)
    if not as_json:
        # Said before any cancel is tried: whatever happens next, the halt is on disk.
        word = "Already halted" if already else "Trading HALTED"
        typer.secho(
            f"{word} since {info.time:%Y-%m-%d %H:%M:%S} UTC by {info.source}: {info.reason}",
            fg=typer.colors.RED,
            bold=True,
        )
        typer.echo(f"Flag: {flag}")
        if desk is not None:
            typer.secho(f"Desk: HALTED for every process of the desk (version {desk.version})", bold=True)
    if desk_error is not None:
        warn(
            f"{desk_error}; halted on this machine only, until a console here reaches the desk "
            "and passes the halt on"
        )
    outcomes: dict[str, Any] | None = None
    if cancel and certain:
        outcomes = cancel_everywhere(state.config())
    if as_json:
        print_json(
            {
                "state": "HALTED",
                "already_halted": already,
                **info_json(info),
                "flag": flag,
                "cancel": outcomes,
                # Only with a desk configured: without one the output is what it always was.
                **({"desk": desk_json(desk, desk_error)} if desk_settings is not None else {}),
            }
        )
    elif outcomes is None:
        typer.echo("Running consoles cancel their own working orders; `halt --cancel` cancels from here.")
    else:
        print_cancel_outcomes(outcomes)
    if not certain:
        fail(_not_certain(warning, flag) + ("; nothing was cancelled" if cancel else ""), ExitCode.CONFIG)
    if outcomes is not None and not all(o["ok"] for o in outcomes.values()):
        raise typer.Exit(ExitCode.FAILED)
    if desk_error is not None:
        raise typer.Exit(ExitCode.FAILED)


def resume(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why trading may resume (required; journaled).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Resume trading: lift a halt (remove the SYSTEM_HALTED flag) or reduce-only, manual or
    tripped by the daily loss limit. A reason is required and journaled."""
    if not reason.strip():
        bad_argument("a reason is required, e.g. --reason 'feed fixed'", "--reason")
    state = state_of(ctx)
    directory, warning, certain = flag_state_dir(state)
    if not certain:
        # Resuming is deliberate: never a state folder guessed because the config is unreadable.
        fail(
            f"{warning}; nothing resumed: fix the config, or name the right one with --config",
            ExitCode.CONFIG,
        )
    if warning:
        warn(warning)
    from brokers.models import TradingState

    desk_settings = desk_of(state, certain)
    desk: DeskState | None = None
    if desk_settings is not None:
        from brokers.desk import DeskUnavailableError

        # The desk first: a resume that cannot reach it would be undone by the next process
        # that still sees the desk halted, and a process that lost the desk stays halted anyway.
        try:
            desk = write_desk(desk_settings, TradingState.ACTIVE, reason.strip())
        except DeskUnavailableError as exc:
            fail(f"{exc}; nothing resumed: a resume must reach the desk", ExitCode.FAILED)
    with kill_switch_at(directory, halt_journals(state, directory)) as switch:
        before = switch.state
        if before is not TradingState.ACTIVE:
            try:
                switch.resume(reason, source=cli_source())
            except OSError as exc:
                fail(f"could not resume ({describe(exc)}); still {_STATE_WORDS[before.value]}")
        flag = switch.flag_path
    if as_json:
        print_json(
            {
                "state": "ACTIVE",
                "was": before.value,
                "was_halted": before is TradingState.HALTED,
                "reason": reason.strip(),
                "flag": flag,
                **({"desk": desk_json(desk, None)} if desk_settings is not None else {}),
            }
        )
    elif before is not TradingState.ACTIVE or desk is not None:
        typer.secho(
            f"Trading resumed (was {_STATE_WORDS[before.value]}): {reason.strip()}",
            fg=typer.colors.GREEN,
            bold=True,
        )
    else:
        typer.echo("Trading was not halted or reduce-only; nothing to resume.")


def halt_status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show whether trading is halted or reduce-only, since when, by whom and why."""
    from brokers.models import TradingState

    state = state_of(ctx)
    directory, warning, certain = flag_state_dir(state)
    if warning and certain:
        warn(warning)
    with kill_switch_at(directory, halt_journals(state, directory)) as switch:
        trading = switch.state
        info = switch.info if trading is not TradingState.ACTIVE else None
        flag = switch.flag_path
    halted = trading is TradingState.HALTED
    desk_settings = desk_of(state, certain)
    desk: DeskState | None = None
    desk_error: str | None = None
    processes: list[Any] = []
    if desk_settings is not None:
        from brokers.desk import DeskUnavailableError
        from brokers.desk.commands import desk_status

        from .common import run

        try:
            desk, processes = run(desk_status(desk_settings))
        except DeskUnavailableError as exc:
            desk_error = str(exc)
    if as_json:
        desk_data = desk_json(desk, desk_error)
        if desk_data is not None and desk is not None:
            desk_data["processes"] = [
                {"host": p.host, "pid": p.pid, "name": p.name, "state": p.state, "silent_for": p.silent_for}
                for p in processes
            ]
        print_json(
            {
                "state": trading.value,
                "halted": halted,
                **info_json(info),
                "flag": flag,
                **({"desk": desk_data} if desk_settings is not None else {}),
            }
        )
    elif trading is TradingState.ACTIVE or info is None:
        typer.secho("ACTIVE: trading is not halted", fg=typer.colors.GREEN)
    else:
        since = f"since {info.time:%Y-%m-%d %H:%M:%S} UTC by {info.source}: {info.reason}"
        if halted:
            typer.secho(f"HALTED {since}", fg=typer.colors.RED, bold=True)
        else:
            typer.secho(f"REDUCE-ONLY {since}", fg=typer.colors.YELLOW, bold=True)
            typer.echo(
                "Only orders that shrink a position are accepted; "
                "`trading-console resume --reason ...` lifts it."
            )
    if not as_json:
        typer.echo(f"Flag: {flag}")
        if desk is not None:
            typer.echo(
                f"Desk: {desk.state.value} since {desk.changed_at:%Y-%m-%d %H:%M:%S %Z} by "
                f"{desk.source or '?'} at {desk.host or '?'}: {desk.reason or '-'} (version {desk.version})"
            )
            typer.echo(f"Alive on the desk: {len(processes)} process(es)")
            for process in processes:
                typer.echo(
                    f"  {process.host} pid {process.pid} {process.name} {process.state} "
                    f"(heard {process.silent_for:.1f}s ago)"
                )
        elif desk_error is not None:
            warn(f"{desk_error}; the desk's state is unknown")
    if not certain:
        fail(
            f"{warning}; this is the default state directory, not necessarily the console's", ExitCode.CONFIG
        )


_STATE_WORDS = {
    "HALTED": "halted",
    "REDUCING": "reduce-only",
    "ACTIVE": "active",
}


def register(app: typer.Typer) -> None:
    app.command("halt")(halt)
    app.command("resume")(resume)
    app.command("halt-status")(halt_status)
