"""``desk migrate`` and the desk journal read by ``journal``: the desk's shared history from the
shell."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

from .common import ExitCode, JsonOption, console, fail, print_json, run, state_of

if TYPE_CHECKING:
    from brokers.desk import DeskSettings

desk_app = typer.Typer(help="The desk shared by every console of a desk ([desk] in the config).")


def print_desk_journal(
    settings: DeskSettings,
    *,
    since: datetime | None,
    order: str | None,
    kinds: list[str] | None,
    limit: int,
    as_json: bool,
) -> None:
    from brokers.desk import DeskUnavailableError
    from brokers.desk.commands import desk_journal

    from .tools import print_events

    try:
        events, total = run(desk_journal(settings, since=since, order=order, kinds=kinds, last=limit or None))
    except DeskUnavailableError as exc:
        fail(f"{exc}; `trading-console journal --local` reads this machine's journal", ExitCode.FAILED)
    print_events(events, total, f"of the desk at {settings.dsn}", as_json)


@desk_app.command("migrate")
def migrate(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Copy this machine's journal into the desk journal; safe to run twice."""
    from brokers.desk import DeskUnavailableError
    from brokers.desk.commands import desk_migrate

    config = state_of(ctx).config()
    if config.desk is None:
        fail('no desk is configured: add a [desk] section with dsn = "postgresql://..." to the config')
    path = config.journal_path
    if not path.is_file():
        fail(f"there is no journal at {path} to copy")
    try:
        copied = run(desk_migrate(config.desk, path))
    except DeskUnavailableError as exc:
        fail(str(exc))
    if as_json:
        print_json({"journal": str(path), "desk": config.desk.dsn, "copied": copied})
    else:
        console().print(f"Copied {copied:,} row(s) of {path} into the desk journal at {config.desk.dsn}.")


def register(app: typer.Typer) -> None:
    app.add_typer(desk_app, name="desk")
