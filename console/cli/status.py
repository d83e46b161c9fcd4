"""Commands that read the brokers: status, test, positions, balances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .common import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonOption,
    account_named,
    console,
    describe,
    exit_code_for,
    library_errors,
    print_json,
    run,
    started_runtime,
    state_of,
    warn,
)

if TYPE_CHECKING:
    from rich.table import Table

    from brokers.config import Config
    from brokers.consolidation import Figures, Snapshot
    from brokers.fx import Money
    from brokers.runtime import Runtime

    Rows = Callable[[Runtime, bool], dict[str, Any]]
    TableOf = Callable[[dict[str, Any], bool], Table]

T = TypeVar("T")

ByAccountOption = Annotated[bool, typer.Option("--by-account", help="Show each account's part too.")]


def _figures(figures: Figures) -> dict[str, Money]:
    return {
        "cash": figures.cash,
        "equity": figures.equity,
        "buying_power": figures.buying_power,
        "market_value": figures.market_value,
        "unrealized_pnl": figures.unrealized_pnl,
    }


async def _refreshed(config: Config, body: Callable[[Runtime], T]) -> T:
    """Start the runtime (every account connects at once), read every account, then run ``body``."""
    async with started_runtime(config) as runtime:
        await runtime.manager.refresh()
        return body(runtime)


def _warn_unavailable(snapshot: Snapshot) -> None:
    for name, error in snapshot.errors.items():
        warn(f"{name}: {error}")
    for name in sorted(snapshot.stale - set(snapshot.errors)):
        warn(f"{name}: figures are stale")


# -- status -----------------------------------------------------------------------------------


def _status_rows(runtime: Runtime) -> dict[str, Any]:
    manager = runtime.manager
    totals = manager.totals()
    accounts = []
    for name, status in manager.statuses().items():
        figures = totals.per_account.get(name)
        accounts.append(
            {
                "name": name,
                "type": status.broker_type,
                "live": status.live,
                "state": status.state,
                "currency": status.currency,
                "latency_ms": status.latency_ms,
                "last_refresh": status.last_refresh,
                "as_of": status.as_of,
                "equity": figures.native.equity if figures else None,
                "buying_power": figures.native.buying_power if figures else None,
                "equity_base": figures.base.equity if figures else None,
                "buying_power_base": figures.base.buying_power if figures else None,
                "session_expires_at": status.session_expires_at,
                "error": status.last_error,
            }
        )
    info = runtime.kill_switch.info
    return {
        "trading_state": runtime.kill_switch.state,
        "halt": None if info is None else {"time": info.time, "reason": info.reason, "source": info.source},
        "base_currency": totals.currency,
        "accounts": accounts,
        "total": {"equity": totals.total.equity, "buying_power": totals.total.buying_power},
    }


@library_errors
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Connect every account at once and show its state, latency, equity, buying power and errors.

    Exits 1 when any account is not connected.
    """
    config = state_of(ctx).config()
    data = run(_refreshed(config, _status_rows))
    if as_json:
        print_json(data)
    else:
        from .tables import status_view

        console().print(status_view(data))
    if any(str(row["state"]) != "CONNECTED" for row in data["accounts"]):
        raise typer.Exit(ExitCode.FAILED)


# -- test -------------------------------------------------------------------------------------

TEST_HELP = (
    "Check one account end to end without placing an order: build it from the config, find its "
    "secrets, connect, read balance, positions and open orders, disconnect.\n\n"
    "Exit codes: 0 ok; 2 no such account; 3 configuration; 4 credentials (missing or refused); "
    "5 network (cannot connect, connection lost, timed out); 6 broker (any other broker error)."
)

FAILURE_CLASS = {
    ExitCode.CONFIG: "config",
    ExitCode.CREDENTIALS: "credentials",
    ExitCode.NETWORK: "network",
    ExitCode.BROKER: "broker",
}


async def _probe(broker: Any, step_seconds: float, steps: list[dict[str, Any]]) -> None:
    """Run each read-only call in turn, recording how long it took; the first failure raises."""
    from brokers.errors import BrokerTimeoutError

    async def step(name: str, call: Any, detail: Any = None) -> Any:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(call(), step_seconds)
        except TimeoutError:
            steps.append(
                {
                    "step": name,
                    "ok": False,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "detail": f"no answer within {step_seconds:g} s",
                }
            )
            raise BrokerTimeoutError(
                f"{name}: no answer within {step_seconds:g} s", broker=broker.name
            ) from None
        except Exception as exc:
            steps.append(
                {
                    "step": name,
                    "ok": False,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "detail": describe(exc),
                }
            )
            raise
        steps.append(
            {
                "step": name,
                "ok": True,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "detail": detail(result) if detail else None,
            }
        )
        return result

    await step("connect", broker.connect)
    try:
        await step(
            "balance",
            broker.get_balance,
            lambda b: f"equity {b.equity:,.2f} {b.currency}, buying power {b.buying_power:,.2f}",
        )
        await step("positions", broker.get_positions, lambda p: f"{len(p)} position(s)")
        await step("open orders", broker.get_open_orders, lambda o: f"{len(o)} working order(s)")
        await _export_step(broker, steps)
    finally:
        try:
            await asyncio.wait_for(broker.disconnect(), step_seconds)
        except Exception as exc:  # the verdict is about the reads; a messy goodbye is only noted
            warn(f"disconnect: {describe(exc)}")


async def _export_step(broker: Any, steps: list[dict[str, Any]]) -> None:
    """A read-only account's figures are as old as its export: say how old, and which rows of
    it could not be read (they are left out)."""
    from brokers.adapters.csvfile import CsvBroker

    if not isinstance(broker, CsvBroker):
        return
    as_of = broker.as_of
    detail = f"as of {as_of:%Y-%m-%d %H:%M} UTC" if as_of is not None else "not read"
    if broker.last_error:
        detail += f"; {broker.last_error}"
    steps.append({"step": "export", "ok": True, "ms": 0.0, "detail": detail})


def check_account(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=300, help="Seconds per step.")] = 10.0,
    as_json: JsonOption = False,
) -> None:
    config = state_of(ctx).config()
    account = account_named(config, name, "NAME")
    steps: list[dict[str, Any]] = []
    code, error = ExitCode.OK, None
    try:
        from brokers.registry import BrokerFactory

        started = time.perf_counter()
        broker = BrokerFactory.create(account.broker_config())
        steps.append(
            {
                "step": "config",
                "ok": True,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "detail": f"{account.type} account, {'LIVE' if account.live else 'paper'}",
            }
        )
        run(_probe(broker, timeout, steps))
    except Exception as exc:
        mapped = exit_code_for(exc)
        if mapped is None:
            raise
        if not steps:
            steps.append({"step": "config", "ok": False, "ms": 0.0, "detail": describe(exc)})
        code, error = mapped, describe(exc)
    result = {
        "account": name,
        "type": account.type,
        "live": account.live,
        "ok": code == ExitCode.OK,
        "exit_code": int(code),
        "failure": FAILURE_CLASS.get(code),
        "error": error,
        "steps": steps,
    }
    if as_json:
        print_json(result)
    else:
        from .tables import test_view

        console().print(test_view(result))
    raise typer.Exit(int(code))


# -- positions and balances -----------------------------------------------------------------------


def _position_rows(runtime: Runtime, by_account: bool) -> dict[str, Any]:
    manager = runtime.manager
    snapshot = manager.snapshot
    positions = []
    for position in manager.consolidated_positions():
        row: dict[str, Any] = {
            "symbol": position.symbol,
            "instrument": position.instrument.name,
            "asset_class": position.asset_class,
            "currency": position.currency,
            "quantity": position.quantity,
            "avg_price": position.avg_price,
            "last_price": position.last_price,
            "market_value": position.market_value,
            "unrealized_pnl": position.unrealized_pnl,
            "market_value_base": position.market_value_base,
            "unrealized_pnl_base": position.unrealized_pnl_base,
            "accounts": position.accounts,
        }
        if by_account:
            row["legs"] = [
                {
                    "account": leg.account,
                    "quantity": leg.quantity,
                    "avg_price": leg.avg_price,
                    "last_price": leg.last_price,
                    "market_value": leg.market_value,
                    "unrealized_pnl": leg.unrealized_pnl,
                }
                for leg in position.legs
            ]
        positions.append(row)
    return {
        "base_currency": manager.base_currency,
        "positions": positions,
        "stale_accounts": sorted(snapshot.stale),
        "errors": dict(snapshot.errors),
        "_snapshot": snapshot,
    }


@library_errors
def positions(ctx: typer.Context, by_account: ByAccountOption = False, as_json: JsonOption = False) -> None:
    """Positions consolidated across accounts, valued in the base currency."""
    from .tables import positions_table

    _consolidated_report(ctx, _position_rows, positions_table, by_account, as_json)


def _balance_rows(runtime: Runtime, by_account: bool) -> dict[str, Any]:
    totals = runtime.manager.totals()
    data: dict[str, Any] = {
        "base_currency": totals.currency,
        "total": _figures(totals.total),
        "_snapshot": runtime.manager.snapshot,
    }
    if by_account:
        data["accounts"] = [
            {
                "account": name,
                "currency": t.currency,
                "stale": t.stale,
                "native": _figures(t.native),
                "base": _figures(t.base),
            }
            for name, t in totals.per_account.items()
        ]
    return data


@library_errors
def balances(ctx: typer.Context, by_account: ByAccountOption = False, as_json: JsonOption = False) -> None:
    """Cash, equity, buying power and P&L in the base currency, in total and per account."""
    from .tables import balances_table

    _consolidated_report(ctx, _balance_rows, balances_table, by_account, as_json)


def _consolidated_report(
    ctx: typer.Context, rows: Rows, table: TableOf, by_account: bool, as_json: bool
) -> None:
    """Connect, refresh once, then print ``rows(runtime, by_account)`` as JSON or a table."""
    config = state_of(ctx).config()
    data = run(_refreshed(config, lambda runtime: rows(runtime, by_account)))
    _warn_unavailable(data.pop("_snapshot"))
    if as_json:
        print_json(data)
        return
    console().print(table(data, by_account))


def register(app: typer.Typer) -> None:
    app.command("status", epilog=EXIT_CODES_HELP)(status)
    app.command("test", help=TEST_HELP)(check_account)
    app.command("positions")(positions)
    app.command("balances")(balances)
