"""order buy|sell and cancel: through the same ExecutionService as the console, so every check
(kill switch, routing, broker health, risk, journal) applies exactly as it does on screen."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from console.typed_input import ungrouped

from .common import (
    ExitCode,
    JsonOption,
    account_named,
    bad_argument,
    cancel_everywhere,
    console,
    fail,
    library_errors,
    print_cancel_outcomes,
    print_json,
    run,
    started_runtime,
    state_of,
)

if TYPE_CHECKING:
    from brokers.config import Config
    from brokers.execution import ExecutionService
    from brokers.models import Order, OrderRequest
    from brokers.preview import OrderPreview


order_app = typer.Typer(
    name="order",
    help="Place an order through the same checks as the console. Exits 7 when it is rejected.",
    no_args_is_help=True,
)

# OrderRequest field -> the command-line parameter a person typed.
PARAMETERS = {
    "symbol": "SYMBOL",
    "quantity": "QTY",
    "notional": "--notional",
    "limit_price": "--limit",
    "stop_price": "--stop",
    "trail_percent": "--trail",
    "time_in_force": "--tif",
    "account": "--account",
    "exchange": "--exchange",
    "currency": "--currency",
    "take_profit": "--take-profit",
    "stop_loss": "--stop-loss",
    "order_class": "--oco",
}


def order_json(order: Order) -> dict[str, Any]:
    request = order.request
    return {
        "client_order_id": order.client_order_id,
        "account": order.account,
        "broker_order_id": order.broker_order_id,
        "symbol": request.symbol,
        "side": request.side,
        "quantity": request.quantity,
        "notional": request.notional,
        "order_type": request.order_type,
        "limit_price": request.limit_price,
        "stop_price": request.stop_price,
        "trail_percent": request.trail_percent,
        "take_profit": request.take_profit,
        "stop_loss": request.stop_loss,
        "time_in_force": request.time_in_force,
        "status": order.status,
        "filled_quantity": order.filled_quantity,
        "avg_fill_price": order.avg_fill_price,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def build_request(
    side: str,
    symbol: str,
    quantity: str | None,
    *,
    notional: str | None = None,
    limit: str | None = None,
    stop: str | None = None,
    trail: str | None = None,
    tif: str = "DAY",
    account: str | None = None,
    exchange: str | None = None,
    currency: str | None = None,
    take_profit: str | None = None,
    stop_loss: str | None = None,
    oco: bool = False,
) -> OrderRequest:
    """The order a person typed, or a usage error naming the parameter that is wrong. What is
    left out takes the command's defaults. ``take_profit`` and ``stop_loss`` make a bracket (or
    an OTO with one); with ``oco`` they are the two exits of a position already held."""
    from pydantic import ValidationError

    from brokers.models import OrderRequest, OrderType, field_errors

    if trail is not None and (limit is not None or stop is not None):
        bad_argument("a trailing stop takes no --limit or --stop", "--trail")
    if trail is not None:
        kind = OrderType.TRAILING_STOP
    elif limit is not None and stop is not None:
        kind = OrderType.STOP_LIMIT
    elif limit is not None:
        kind = OrderType.LIMIT
    elif stop is not None:
        kind = OrderType.STOP
    else:
        kind = OrderType.MARKET
    if quantity is not None and notional is not None:
        bad_argument("give QTY or --notional (an amount of money), not both", "--notional")
    if quantity is None and notional is None:
        bad_argument("give QTY, or --notional for an amount of money", "QTY")
    numbers = {
        "quantity": quantity,
        "notional": notional,
        "limit_price": limit,
        "stop_price": stop,
        "trail_percent": trail,
        "take_profit": take_profit,
        "stop_loss": stop_loss,
    }
    for field, text in numbers.items():
        if text is not None:
            try:
                numbers[field] = ungrouped(text, field.replace("_", " "))
            except ValueError as exc:
                bad_argument(str(exc), PARAMETERS[field])
    try:
        # As typed: the model's own validation reads the text and names what is wrong.
        return OrderRequest.model_validate(
            {
                "symbol": symbol,
                "side": side,
                **numbers,
                # An OCO pair is a LIMIT at its take-profit unless told otherwise (see OrderRequest).
                **({} if oco and kind is OrderType.MARKET else {"order_type": kind}),
                **({"order_class": "OCO"} if oco else {}),
                "time_in_force": tif,
                "account": account,
                "exchange": exchange,
                "currency": currency,
            }
        )
    except ValidationError as exc:
        errors = field_errors(exc)
        field, message = next(iter(errors.items()))
        # A rule across fields (a take-profit below a buy's entry) names its field in the text.
        named = next((name for name in sorted(PARAMETERS, key=len, reverse=True) if name in message), None)
        return bad_argument(message, PARAMETERS.get(field) or PARAMETERS.get(named or "", "SYMBOL"))


def _show_preview(preview: OrderPreview) -> None:
    """Where the order goes, what it is worth and why it asks: what the console's modal shows."""
    from console import formatting as fmt

    if preview.problem is not None:
        where = f"with no account to take it ({preview.problem})"
    elif preview.distributed:
        where = "split by weight across " + ", ".join(
            f"{name} {fmt.quantity(quantity)}" for name, quantity in preview.targets.items()
        )
    else:
        where = f"to {preview.accounts[0]}"
    typer.echo(f"{fmt.describe_request(preview.request)} {where}")
    if preview.notional is not None:
        typer.echo(f"notional ≈ {fmt.amount(preview.notional)} {preview.base_currency}")
    else:
        typer.echo(f"notional: unknown ({preview.notional_note or 'no price yet'})")
    if preview.live_accounts:
        typer.secho(
            f"LIVE account ({', '.join(preview.live_accounts)}): this order uses real money.",
            fg=typer.colors.RED,
            bold=True,
        )
    if preview.reasons:
        typer.echo("Asking because: " + "; ".join(preview.reasons))


async def _confirmed(question: str) -> bool:
    """The answer to a yes/no question, read while the event loop (brokers' connections,
    heartbeats) goes on. A daemon thread: ctrl+c at the question must not wait for a line."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def ask() -> None:
        try:
            result = typer.confirm(question, default=False)
        except BaseException as exc:  # click's Abort on end of input, handed to the caller
            loop.call_soon_threadsafe(answer.set_exception, exc)
        else:
            loop.call_soon_threadsafe(answer.set_result, result)

    threading.Thread(target=ask, name="confirm", daemon=True).start()
    return await answer


def _halt_notice(config: Config) -> str | None:
    """What to say before anything else when trading is halted; None when it is not."""
    from brokers.killswitch import KillSwitch

    switch = KillSwitch(config.resolved_state_dir(), env={})
    if not switch.is_halted:
        return None
    info = switch.info
    since = f" since {info.time:%Y-%m-%d %H:%M:%S} UTC by {info.source}: {info.reason}" if info else ""
    return (
        f"Trading is HALTED{since}. This order will be rejected; "
        "`trading-console resume --reason TEXT` resumes trading."
    )


async def _submit(
    config: Config,
    request: OrderRequest,
    distribute: bool,
    wait: float,
    *,
    connect: bool = True,
    ask: bool = True,
) -> list[Order] | None:
    """Send the order and wait up to ``wait`` for its final status. With ``ask``, show the
    execution layer's preview first and send only if the trader agrees (None if not)."""
    async with started_runtime(config, connect=connect) as runtime:
        execution = runtime.execution
        if ask:
            preview = execution.preview(request, distributed=distribute)
            _show_preview(preview)
            # An order nothing would take is sent without a question: the refusal says why.
            if preview.problem is None and not await _confirmed("Send this order?"):
                return None
        if distribute:
            orders = await execution.submit_distributed(request)
        else:
            orders = [await execution.submit(request)]
        # A market order usually fills a moment after the broker's ack; show that rather than
        # "ACCEPTED" when it comes within --wait.
        await until_final(execution, orders, wait)
        return orders


async def until_final(execution: ExecutionService, orders: list[Order], wait: float) -> None:
    """Up to ``wait`` seconds for every order the broker took to reach a final status."""
    changed = asyncio.Event()

    def on_change(_order: Order) -> None:
        changed.set()

    execution.subscribe(on_change)
    deadline = time.monotonic() + wait
    try:
        while any(not o.is_terminal and o.broker_order_id for o in orders):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return
    finally:
        execution.unsubscribe(on_change)


def _place(
    ctx: typer.Context,
    side: str,
    symbol: str,
    quantity: str | None,
    notional: str | None,
    limit: str | None,
    stop: str | None,
    trail: str | None,
    tif: str,
    account: str | None,
    exchange: str | None,
    currency: str | None,
    distribute: bool,
    yes: bool,
    wait: float,
    as_json: bool,
    *,
    take_profit: str | None = None,
    stop_loss: str | None = None,
    oco: bool = False,
) -> None:
    config = state_of(ctx).config()
    request = build_request(
        side,
        symbol,
        quantity,
        notional=notional,
        limit=limit,
        stop=stop,
        trail=trail,
        tif=tif,
        account=account,
        exchange=exchange,
        currency=currency,
        take_profit=take_profit,
        stop_loss=stop_loss,
        oco=oco,
    )
    if request.account is not None:
        account_named(config, request.account, "--account")
    if distribute and account is not None:
        bad_argument("--distribute splits across every account; leave out --account", "--distribute")
    if distribute and oco:
        # Each child of a split is sized by weight, not by what its account holds.
        bad_argument(
            "--oco protects a position an account holds and --distribute splits by weight, which need "
            "not match what each account holds: place one OCO pair per account with --account",
            "--oco",
        )
    halted = _halt_notice(config)
    if halted is not None:
        # Asking to confirm an order that cannot go would be a question with no real answer.
        typer.secho(halted, err=True, fg=typer.colors.RED, bold=True)
    # While halted the order still goes to the execution layer, which refuses and journals it,
    # but no account is connected for it. With a desk, this folder's flag may be older than the
    # desk's word, which the runtime takes on start: the accounts are connected either way.
    connect = halted is None or config.desk is not None
    sent = run(_submit(config, request, distribute, wait, connect=connect, ask=halted is None and not yes))
    if sent is None:
        typer.echo("Not sent.")
        raise typer.Exit(ExitCode.FAILED)
    orders = sent
    rejected = [o for o in orders if o.status.value == "REJECTED"]
    if as_json:
        print_json(
            order_json(orders[0]) if len(orders) == 1 and not distribute else [order_json(o) for o in orders]
        )
    else:
        from .tables import orders_table

        console().print(orders_table([order_json(o) for o in orders]))
    for order in rejected:
        typer.secho(f"Rejected [{order.reject_code}]: {order.reject_reason}", err=True, fg=typer.colors.RED)
    if rejected:
        raise typer.Exit(ExitCode.REJECTED)


SymbolArg = Annotated[str, typer.Argument(metavar="SYMBOL", help="Ticker, e.g. AAPL.")]
QtyArg = Annotated[
    str | None, typer.Argument(metavar="QTY", help="Quantity, e.g. 10 or 0.5 (or give --notional).")
]
NotionalOpt = Annotated[
    str | None,
    typer.Option(
        "--notional",
        metavar="AMOUNT",
        help="An amount of money instead of QTY: a market order, where the broker takes them (Alpaca).",
    ),
]
LimitOpt = Annotated[str | None, typer.Option("--limit", metavar="P", help="Limit price.")]
StopOpt = Annotated[
    str | None, typer.Option("--stop", metavar="P", help="Stop price (with --limit: stop-limit).")
]
TrailOpt = Annotated[str | None, typer.Option("--trail", metavar="PCT", help="Trailing stop, percent.")]
TifOpt = Annotated[str, typer.Option("--tif", metavar="T", help="Time in force: DAY, GTC, IOC or FOK.")]
AccountOpt = Annotated[str | None, typer.Option("--account", metavar="A", help="Account (default: routing).")]
ExchangeOpt = Annotated[str | None, typer.Option("--exchange", help="Exchange, e.g. NSE (used by routing).")]
CurrencyOpt = Annotated[str | None, typer.Option("--currency", help="Order currency (used by routing).")]
DistributeOpt = Annotated[bool, typer.Option("--distribute", help="Split across accounts by their weights.")]
TakeProfitOpt = Annotated[
    str | None,
    typer.Option(
        "--take-profit", metavar="P", help="Exit: a take-profit limit once the order fills (bracket/OTO)."
    ),
]
StopLossOpt = Annotated[
    str | None,
    typer.Option(
        "--stop-loss", metavar="P", help="Exit: a stop-loss stop once the order fills (bracket/OTO)."
    ),
]
OcoOpt = Annotated[
    bool,
    typer.Option("--oco", help="With --take-profit and --stop-loss: two exits for a position held (OCO)."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Send without asking for confirmation.")]
WaitOpt = Annotated[
    float, typer.Option("--wait", min=0, max=60, help="Seconds to wait for a final status after the ack.")
]


def _order_command(side: str) -> Callable[..., None]:
    """The ``order buy`` or ``order sell`` command: the same parameters, one side."""

    def command(
        ctx: typer.Context,
        symbol: SymbolArg,
        quantity: QtyArg = None,
        notional: NotionalOpt = None,
        limit: LimitOpt = None,
        stop: StopOpt = None,
        trail: TrailOpt = None,
        tif: TifOpt = "DAY",
        account: AccountOpt = None,
        exchange: ExchangeOpt = None,
        currency: CurrencyOpt = None,
        distribute: DistributeOpt = False,
        yes: YesOpt = False,
        wait: WaitOpt = 1.0,
        as_json: JsonOption = False,
        take_profit: TakeProfitOpt = None,
        stop_loss: StopLossOpt = None,
        oco: OcoOpt = False,
    ) -> None:
        _place(
            ctx,
            side,
            symbol,
            quantity,
            notional,
            limit,
            stop,
            trail,
            tif,
            account,
            exchange,
            currency,
            distribute,
            yes,
            wait,
            as_json,
            take_profit=take_profit,
            stop_loss=stop_loss,
            oco=oco,
        )

    command.__name__ = side.lower()
    command.__doc__ = (
        f"{side.title()} SYMBOL QTY: market, or --limit / --stop / --trail; "
        "SYMBOL --notional AMOUNT for an amount of money."
    )
    return library_errors(command)


buy = order_app.command("buy")(_order_command("BUY"))
sell = order_app.command("sell")(_order_command("SELL"))


# -- cancel -----------------------------------------------------------------------------------


async def _cancel_one(config: Config, account: str, order_id: str) -> Order:
    async with started_runtime(config) as runtime:
        execution = runtime.execution
        # A client order id (what the journal shows) is translated to the broker's id.
        known = execution.get_order(order_id)
        if known is not None and known.broker_order_id and known.account == account:
            order_id = known.broker_order_id
        return await execution.cancel(account, order_id)


@library_errors
def cancel(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Argument(metavar="ACCOUNT", help="Account holding the order.")
    ] = None,
    order_id: Annotated[
        str | None, typer.Argument(metavar="ORDER_ID", help="Broker order id (or client order id).")
    ] = None,
    cancel_all: Annotated[
        bool, typer.Option("--all", help="Cancel every working order (at every account unless narrowed).")
    ] = False,
    only_account: Annotated[
        str | None, typer.Option("--account", metavar="A", help="With --all: at this account only.")
    ] = None,
    only_symbol: Annotated[
        str | None, typer.Option("--symbol", metavar="S", help="With --all: in this symbol only.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel one order, or every working order with --all (narrowed by --account and --symbol).
    Cancels never halt trading, and work even while halted."""
    config = state_of(ctx).config()
    if (only_account is not None or only_symbol is not None) and not cancel_all:
        bad_argument("--account and --symbol narrow --all; give --all too", "--all")
    if cancel_all:
        if account is not None:
            bad_argument("give either ACCOUNT ORDER_ID or --all, not both", "--all")
        if only_account is not None:
            account_named(config, only_account, "--account")
        if only_account is None and only_symbol is None:
            outcomes = cancel_everywhere(config)
        else:
            from .orders import cancel_filtered

            outcomes = cancel_filtered(config, only_account, only_symbol)
        if as_json:
            print_json(outcomes)
        else:
            print_cancel_outcomes(outcomes)
        if not all(o["ok"] for o in outcomes.values()):
            raise typer.Exit(ExitCode.FAILED)
        return
    if account is None:
        bad_argument("give ACCOUNT ORDER_ID, or --all", "ACCOUNT")
    account_named(config, account, "ACCOUNT")
    if not order_id:
        bad_argument("which order? give its id (see `trading-console journal`)", "ORDER_ID")
    order = run(_cancel_one(config, account, order_id))
    if as_json:
        print_json(order_json(order))
    else:
        from .tables import orders_table

        console().print(orders_table([order_json(order)]))
    if order.status.value not in ("CANCELLED", "FILLED", "EXPIRED", "REJECTED"):
        typer.echo("Cancel requested; the broker has not confirmed it yet.")
    elif order.status.value != "CANCELLED":
        fail(f"the order is already {order.status.value}; nothing was cancelled", ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    from . import orders

    app.add_typer(order_app, name="order")
    app.command("cancel")(cancel)
    orders.register(app)
