"""The ``trading-console`` command.

With no subcommand it opens the console. The subcommands use the same runtime, kill switch and
journal as the console: one behaviour, two faces. Each command imports what it needs when it
runs, so ``trading-console halt`` starts in a fraction of a second.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from . import desk, halt, settlements, setup, status, tools, trading
from .common import EXIT_CODES_HELP, CliState, ExitCode, fail, state_problem

app = typer.Typer(
    name="trading-console",
    help="Multi-broker terminal trading console. With no command, opens the console.",
    epilog=EXIT_CODES_HELP,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"trading-console {version('trading-console')}")
        except PackageNotFoundError:
            typer.echo("trading-console (not installed)")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file. Default: the user config if it exists, else the demo.",
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Use the built-in demo accounts, whatever config exists.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more: -v warnings, -vv info, -vvv debug.")
    ] = 0,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    from console.logs import log_to_stderr

    log_to_stderr(verbose)
    ctx.obj = CliState(config_path=config, demo=demo)
    if ctx.invoked_subcommand is None:
        _open_console(ctx.obj)


def _open_console(state: CliState) -> None:
    config = state.config()
    # Loading the console creates a few hundred thousand objects that live as long as the
    # process: collecting while they load frees nothing and only delays the first screen.
    gc.disable()
    try:
        from console.tui.run import run_console
    except ImportError as exc:
        fail(f"the console cannot start: {exc}", ExitCode.FAILED)
    finally:
        gc.enable()
    try:
        code = run_console(config)
    except Exception as exc:
        problem = state_problem(config, exc)
        if problem is None:
            raise
        fail(str(problem), ExitCode.FAILED)
    raise typer.Exit(code or 0)


for module in (setup, status, trading, halt, tools, settlements, desk):
    module.register(app)


def main() -> None:
    app(prog_name="trading-console")


if __name__ == "__main__":
    main()
