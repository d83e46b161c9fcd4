"""``trading-console settlements``: cash still to settle, by account and settlement date.

Every account is read once; the journal's fills give what is pending (each dated by the one
rules table, ``brokers.settlement``). The settled cash shown is the broker's where it reports one
(the figure worked out from the fills beside it, and the difference when they disagree), else
the computed one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from .common import JsonOption, console, library_errors, print_json, run, started_runtime, state_of, warn

if TYPE_CHECKING:
    from datetime import datetime

    from rich.table import Table

    from brokers.config import Config
    from brokers.runtime import Runtime
    from brokers.settled_cash import PendingSettlement


async def _read(config: Config) -> dict[str, Any]:
    async with started_runtime(config) as runtime:
        await runtime.manager.refresh()
        return settlement_rows(runtime)


def settlement_rows(runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
    """What the command prints: per account its cash split and its pending settlements by date,
    every pending fill, and the totals in the base currency."""
    from brokers.clock import utcnow
    from brokers.consolidation import consolidate_settlement
    from brokers.settled_cash import pending_from_orders, with_computed

    manager = runtime.manager
    moment = now if now is not None else utcnow()
    snapshot = manager.snapshot
    currencies = {name: status.currency for name, status in manager.statuses().items()}
    rows = pending_from_orders(runtime.journal.orders().values(), currencies)
    pending = [row for row in rows if row.settles_at > moment]
    accounts = []
    for name, currency in currencies.items():
        balance = snapshot.balances.get(name)
        shown = with_computed(balance, rows) if balance is not None else None
        mine = [row for row in pending if row.account == name]
        accounts.append(
            {
                "account": name,
                "currency": shown.currency if shown is not None else currency,
                "cash_account": shown.cash_account if shown is not None else None,
                "cash": shown.cash if shown is not None else None,
                "settled_cash": shown.settled_cash if shown is not None else None,
                "unsettled_cash": shown.unsettled_cash if shown is not None else None,
                "source": shown.settled_source if shown is not None else None,
                "computed_settled_cash": shown.computed_settled_cash if shown is not None else None,
                "disagreement": shown.settlement_disagreement if shown is not None else None,
                "stale": name in snapshot.stale,
                "by_date": _by_date(mine),
            }
        )
    totals = consolidate_settlement(currencies, snapshot, manager.fx, manager.base_currency)
    return {
        "as_of": moment,
        "base_currency": totals.currency,
        "accounts": accounts,
        "pending": [_fill_row(row) for row in pending],
        "total": {"settled": totals.settled, "pending": totals.pending},
        "_errors": dict(snapshot.errors),
    }


def _by_date(rows: list[PendingSettlement]) -> list[dict[str, Any]]:
    from decimal import Decimal

    days: dict[Any, dict[str, Any]] = {}
    for row in rows:
        day = days.setdefault(
            row.settlement_date,
            {
                "settlement_date": row.settlement_date,
                "incoming": Decimal(0),
                "outgoing": Decimal(0),
                "net": Decimal(0),
                "fills": 0,
            },
        )
        if row.amount > 0:
            day["incoming"] += row.amount
        else:
            day["outgoing"] -= row.amount
        day["net"] += row.amount
        day["fills"] += 1
    return [days[key] for key in sorted(days)]


def _fill_row(row: PendingSettlement) -> dict[str, Any]:
    return {
        "account": row.account,
        "fill_id": row.fill_id,
        "symbol": row.symbol,
        "side": row.side,
        "amount": row.amount,
        "currency": row.currency,
        "executed_at": row.executed_at,
        "trade_date": row.trade_date,
        "settlement_date": row.settlement_date,
        "cycle": row.cycle,
    }


def settlements_view(data: dict[str, Any]) -> list[Table]:
    """The settled-cash table and the pending-settlements table."""
    from rich.table import Table
    from rich.text import Text

    from console.formatting import DASH, amount, money_text

    def cell(value: Any) -> str:
        return DASH if value is None else amount(value)

    cash = Table(title="Settled cash", title_justify="left")
    for label in ("Account", "Ccy", "Cash", "Settled", "Pending", "From", "From fills", "Difference"):
        cash.add_column(label, justify="left" if label in ("Account", "Ccy", "From") else "right")
    for row in data["accounts"]:
        name = row["account"] + (" (cash account)" if row["cash_account"] else "")
        name += " (stale)" if row["stale"] else ""
        difference = row["disagreement"]
        cash.add_row(
            name,
            row["currency"],
            cell(row["cash"]),
            cell(row["settled_cash"]),
            cell(row["unsettled_cash"]),
            str(row["source"] or DASH).lower(),
            cell(row["computed_settled_cash"]),
            Text(cell(difference), style="bold yellow") if difference is not None else DASH,
        )
    base = data["base_currency"]
    cash.add_row(
        Text(f"Total ({base})", style="bold"),
        base,
        "",
        money_text(data["total"]["settled"], currency=False),
        money_text(data["total"]["pending"], currency=False),
        "",
        "",
        "",
    )

    pending = Table(title="Pending settlements", title_justify="left")
    for label in ("Account", "Settles", "In", "Out", "Net", "Fills"):
        pending.add_column(label, justify="left" if label in ("Account", "Settles") else "right")
    for row in data["accounts"]:
        for day in row["by_date"]:
            pending.add_row(
                row["account"],
                f"{day['settlement_date']:%a %Y-%m-%d}",
                amount(day["incoming"]),
                amount(day["outgoing"]),
                amount(day["net"]),
                str(day["fills"]),
            )
    if not pending.row_count:
        pending.caption = "nothing pending: all cash has settled"
    return [cash, pending]


@library_errors
def settlements(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Settled and pending cash per account, and what settles when.

    The broker's settled cash wins where it reports one; the figure worked out from the
    journal's fills is shown beside it, and a difference is flagged.
    """
    config = state_of(ctx).config()
    data = run(_read(config))
    for name, error in data.pop("_errors").items():
        warn(f"{name}: {error}")
    if as_json:
        print_json(data)
        return
    out = console()
    for table in settlements_view(data):
        out.print(table)


def register(app: typer.Typer) -> None:
    app.command("settlements")(settlements)
