"""modify, cancel --all with filters, flatten: orders already sent, through the same
ExecutionService as the console, so the kill switch, risk checks and journal apply exactly as
they do on screen."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from console.typed_input import ungrouped

from .common import (
    ExitCode,
    JsonOption,
    bad_argument,
    console,
    describe,
    fail,
    library_errors,
    print_json,
    run,
    started_runtime,
    state_of,
    state_problem,
)
from .trading import _confirmed, _halt_notice, order_json, until_final

if TYPE_CHECKING:
    from brokers.closeout import FlattenPlan
    from brokers.config import Config
    from brokers.execution import ExecutionService
    from brokers.history import Transition
    from brokers.journal import Journal
    from brokers.models import Order, TimeInForce

T = TypeVar("T")


def _number(text: str | None, field: str, option: str) -> Decimal | None:
    """A quantity or price as typed, or a usage error naming the option."""
    from brokers.models import to_decimal

    if text is None:
        return None
    try:
        return to_decimal(ungrouped(text, field), field)
    except ValueError as exc:
        return bad_argument(str(exc), option)


def find_order(execution: ExecutionService, order_id: str) -> Order | None:
    """An order by its client order id (what the journal and the blotter show) or its broker's id."""
    known = execution.get_order(order_id)
    if known is not None:
        return known
    return next((o for o in execution.orders() if o.broker_order_id == order_id), None)


async def _modify(
    config: Config,
    order_id: str,
    *,
    quantity: Decimal | None,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    time_in_force: TimeInForce | None,
    connect: bool,
    ask_live: bool,
) -> Order | str:
    """The order with its new terms (or the refusal's report); else "missing" when no such order
    is known, "declined" when the trader declined to change an order at a LIVE account."""
    async with started_runtime(config, connect=connect) as runtime:
        execution = runtime.execution
        order = find_order(execution, order_id)
        if order is None:
            return "missing"
        live = order.account in {account.name for account in config.accounts if account.live}
        if ask_live and live:
            from console import formatting as fmt

            typer.secho(
                f"LIVE account ({order.account}): this change uses real money.",
                fg=typer.colors.RED,
                bold=True,
            )
            typer.echo(f"{fmt.describe_request(order.request)} at {order.account}")
            if not await _confirmed("Send this change?"):
                return "declined"
        return await execution.modify(
            order.client_order_id,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )


@library_errors
def modify(
    ctx: typer.Context,
    order_id: Annotated[
        str,
        typer.Argument(metavar="ID", help="Client order id (as the blotter shows it) or broker order id."),
    ],
    qty: Annotated[str | None, typer.Option("--qty", metavar="Q", help="New total quantity.")] = None,
    limit: Annotated[str | None, typer.Option("--limit", metavar="P", help="New limit price.")] = None,
    stop: Annotated[str | None, typer.Option("--stop", metavar="P", help="New stop price.")] = None,
    tif: Annotated[
        str | None, typer.Option("--tif", metavar="T", help="New time in force: DAY, GTC, IOC or FOK.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="At a LIVE account, send without asking for confirmation.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Change a working order's quantity, prices or time in force at its broker, checked as a new
    order is (at a LIVE account it asks first). Exits 7 when the change is refused (the order
    keeps its terms)."""
    from brokers.models import TimeInForce

    config = state_of(ctx).config()
    quantity = _number(qty, "quantity", "--qty")
    limit_price = _number(limit, "limit price", "--limit")
    stop_price = _number(stop, "stop price", "--stop")
    time_in_force: TimeInForce | None = None
    if tif is not None:
        try:
            time_in_force = TimeInForce(tif)
        except ValueError:
            allowed = ", ".join(t.value for t in TimeInForce)
            bad_argument(f"time in force must be one of {allowed}, not {tif!r}", "--tif")
    if quantity is None and limit_price is None and stop_price is None and time_in_force is None:
        bad_argument("nothing to change: give --qty, --limit, --stop or --tif", "--qty")
    halted = _halt_notice(config)
    # While halted the change is refused and journaled without connecting: an account that
    # connects while halted has its working orders cancelled.
    result = run(
        _modify(
            config,
            order_id,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            connect=halted is None,
            ask_live=not yes and halted is None,
        )
    )
    if result == "declined":
        typer.echo("Not sent.")
        raise typer.Exit(ExitCode.FAILED)
    if isinstance(result, str):
        fail(f"no order {order_id!r} is known here (see `trading-console orders`)", ExitCode.FAILED)
        return
    if as_json:
        print_json(order_json(result))
    else:
        from .tables import orders_table

        console().print(orders_table([order_json(result)]))
    if result.status.value == "REJECTED":
        typer.secho(
            f"Change refused [{result.reject_code}]: {result.reject_reason}", err=True, fg=typer.colors.RED
        )
        raise typer.Exit(ExitCode.REJECTED)


# -- cancel --all with filters --------------------------------------------------------------------


def cancel_filtered(config: Config, account: str | None, symbol: str | None) -> dict[str, dict[str, Any]]:
    """``cancel --all`` at one account or in one symbol: per account ``ok``, ``cancelled`` and
    ``error``, as ``--json`` prints it."""

    async def go() -> dict[str, dict[str, Any]]:
        async with started_runtime(config) as runtime:
            outcomes = await runtime.execution.cancel_all(account=account, symbol=symbol)
        return {
            name: {"ok": o.ok, "cancelled": o.cancelled, "error": o.error} for name, o in outcomes.items()
        }

    return run(go())


# -- flatten --------------------------------------------------------------------------------------


def _show_plan(plan: FlattenPlan, *, err: bool) -> None:
    """Every order flatten will cancel and send, as the console's confirmation lists them (on
    stderr with ``err``, so that ``--json`` output stays one document)."""
    from console import formatting as fmt

    for order in plan.cancels:
        typer.echo(
            f"cancel: {fmt.describe_request(order.request)} at {order.account} ({order.client_order_id})",
            err=err,
        )
    for request in plan.closes:
        typer.echo(f"send:   {fmt.describe_request(request)} to {request.account}", err=err)
    for note in plan.skipped:
        typer.secho(f"left alone: {note}", fg=typer.colors.YELLOW, err=err)


async def _flatten(
    config: Config, symbol: str | None, account: str | None, *, ask: bool, wait: float, quiet: bool
) -> tuple[FlattenPlan, list[Order] | None]:
    async with started_runtime(config) as runtime:
        execution = runtime.execution
        plan = execution.flatten_plan(symbol, account)
        if plan.empty:
            return plan, []
        _show_plan(plan, err=quiet)
        if ask and not await _confirmed(f"Send {len(plan.closes)} closing order(s)?"):
            return plan, None
        orders = await execution.flatten(symbol, account)
        await until_final(execution, orders, wait)
        return plan, orders


@library_errors
def flatten(
    ctx: typer.Context,
    symbol: Annotated[
        str | None, typer.Argument(metavar="SYMBOL", help="Close this symbol only (default: every position).")
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("--account", metavar="A", help="At this account only (default: every account)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking for confirmation.")] = False,
    wait: Annotated[
        float, typer.Option("--wait", min=0, max=60, help="Seconds to wait for the closing orders to fill.")
    ] = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Close positions with market orders, after cancelling the working orders in those symbols.
    Lists every order first and asks (unless -y). Allowed while reduce-only; refused while halted."""
    from .common import account_named

    config = state_of(ctx).config()
    if account is not None:
        account_named(config, account, "--account")
    halted = _halt_notice(config)
    if halted is not None:
        typer.secho(halted.replace("This order", "Flatten"), err=True, fg=typer.colors.RED, bold=True)
        fail("flatten refused (SYSTEM_HALTED): nothing was cancelled or sent", ExitCode.REJECTED)
    plan, orders = run(_flatten(config, symbol, account, ask=not yes, wait=wait, quiet=as_json))
    if orders is None:
        typer.echo("Not sent.")
        raise typer.Exit(ExitCode.FAILED)
    if as_json:
        print_json(
            {
                "cancelled": [o.client_order_id for o in plan.cancels],
                "orders": [order_json(o) for o in orders],
                "skipped": plan.skipped,
            }
        )
    elif not orders:
        typer.echo("Nothing to flatten." + (f" ({'; '.join(plan.skipped)})" if plan.skipped else ""))
    else:
        from .tables import orders_table

        console().print(orders_table([order_json(o) for o in orders]))
    rejected = [o for o in orders if o.status.value == "REJECTED"]
    for order in rejected:
        typer.secho(f"Rejected [{order.reject_code}]: {order.reject_reason}", err=True, fg=typer.colors.RED)
    if rejected:
        raise typer.Exit(ExitCode.REJECTED)


# -- orders and their history --------------------------------------------------------------------


def _read_journal(config: Config, read: Callable[[Journal], T]) -> T | None:
    """``read(journal)`` on the configured journal without creating one; None if there is none."""
    from brokers.journal import Journal

    path = config.journal_path
    if not path.is_file():
        return None
    try:
        with Journal(path) as journal:
            return read(journal)
    except Exception as exc:
        problem = state_problem(config, exc)
        fail(str(problem) if problem else f"cannot read the journal {path}: {describe(exc)}", ExitCode.FAILED)
        raise  # unreachable: fail() raises


@library_errors
def orders(
    ctx: typer.Context,
    history: Annotated[
        str | None,
        typer.Option(
            "--history", metavar="ID", help="Every transition of this order (client or broker order id)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Today's orders (UTC day) from the journal, with filled quantity and average price; or one
    order's history with --history ID. Reads the journal only: no broker is asked."""
    from datetime import UTC, datetime

    from brokers.history import order_history, orders_since, start_of_day

    config = state_of(ctx).config()
    if history is None:
        found = _read_journal(config, lambda j: orders_since(j, start_of_day(datetime.now(UTC)))) or []
        if as_json:
            print_json([order_json(order) for order in found])
            return
        if not found:
            typer.echo("No orders today.")
            return
        from brokers.monitoring import commission_by_account

        from .tables import orders_table

        console().print(orders_table([order_json(order) for order in found]))
        totals = commission_by_account(found, start_of_day(datetime.now(UTC)))
        if totals:
            typer.echo(
                "Commission today: "
                + ", ".join(
                    f"{account} {amount} {currency}" for (account, currency), amount in sorted(totals.items())
                )
            )
        return

    def read(journal: Journal) -> tuple[Order | None, list[Transition]]:
        known = journal.orders()
        order = known.get(history) or next((o for o in known.values() if o.broker_order_id == history), None)
        if order is None:
            return None, []
        return order, order_history(journal, order.client_order_id)

    order, steps = _read_journal(config, read) or (None, [])
    if order is None:
        fail(f"no order {history!r} in the journal (see `trading-console orders`)", ExitCode.FAILED)
        return
    if as_json:
        print_json({"order": order_json(order), "history": [step.as_dict() for step in steps]})
        return
    from rich.table import Table

    from console import formatting as fmt

    table = Table(
        title=f"{fmt.describe_request(order.request)} at {order.account}: {order.status.value}",
        title_justify="left",
    )
    for column in ("Time (UTC)", "Event", "Status", "Filled", "Avg price", "What happened"):
        table.add_column(column, overflow="fold")
    for step in steps:
        table.add_row(
            f"{step.time:%Y-%m-%d %H:%M:%S.%f}"[:23],
            step.kind,
            step.status or "",
            fmt.quantity(step.filled_quantity) if step.filled_quantity else "",
            fmt.price(step.avg_fill_price) if step.avg_fill_price is not None else "",
            step.detail,
        )
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command("modify")(modify)
    app.command("flatten")(flatten)
    app.command("orders")(orders)
