"""modify: change a working order through the same ExecutionService as the console, so the kill
switch, risk checks and journal apply to the new terms exactly as they do on screen."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from console.typed_input import ungrouped

from .common import (
    ExitCode,
    JsonOption,
    bad_argument,
    console,
    fail,
    library_errors,
    print_json,
    run,
    started_runtime,
    state_of,
)
from .trading import _halt_notice, order_json

if TYPE_CHECKING:
    from brokers.config import Config
    from brokers.execution import ExecutionService
    from brokers.models import Order, TimeInForce


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
) -> Order | None:
    async with started_runtime(config, connect=connect) as runtime:
        execution = runtime.execution
        order = find_order(execution, order_id)
        if order is None:
            return None
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
    as_json: JsonOption = False,
) -> None:
    """Change a working order's quantity, prices or time in force at its broker, checked as a new
    order is. Exits 7 when the change is refused (the order keeps its terms)."""
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
        )
    )
    if result is None:
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


def register(app: typer.Typer) -> None:
    app.command("modify")(modify)
