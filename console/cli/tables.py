"""Rich tables for the command line. Each takes plain rows (the same dicts ``--json`` prints), so
what a person reads and what a script parses never drift apart."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from console.formatting import (
    DASH,
    connection_state,
    milliseconds,
    mode,
    money_text,
    number,
    signed,
)

if TYPE_CHECKING:
    from datetime import datetime

    from brokers.journal import JournalStats
    from console.cli.bench.runner import Report


def folded(table: Table) -> Table:
    """Wrap cells in a narrow terminal rather than cut them: a clipped account name or order id
    is worse than a taller table."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def accounts_table(rows: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Accounts", title_justify="left")
    for column in ("Name", "Type", "Mode", "Currency", "Default", "Weight", "Secrets", "Label"):
        table.add_column(column, justify="right" if column == "Weight" else "left")
    for row in rows:
        secrets = row["credentials"]
        if not secrets:
            secret_text = Text("not needed", style="dim")
        elif all(v == "set" for v in secrets.values()):
            secret_text = Text("set", style="green")
        else:
            missing = [k for k, v in secrets.items() if v != "set"]
            secret_text = Text("missing " + ", ".join(missing), style="red")
        table.add_row(
            row["name"],
            row["type"],
            mode(row["live"]),
            row["currency"],
            "yes" if row["default"] else "",
            f"{row['weight']:g}",
            secret_text,
            row["label"] or "",
        )
    return folded(table)


def broker_types_table(rows: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Broker types", title_justify="left")
    for column in (
        "Type",
        "Order types",
        "Time in force",
        "Assets",
        "Fractional",
        "Short",
        "Bulk cancel",
        "Secrets",
    ):
        table.add_column(column)
    for row in rows:
        caps = row["capabilities"]
        secrets = ", ".join(row["secrets"]) or "none"
        if caps is None:
            table.add_row(
                row["type"], Text(f"unavailable: {row['error']}", style="red"), "", "", "", "", "", secrets
            )
            continue
        table.add_row(
            row["type"],
            ", ".join(sorted(str(v) for v in caps["order_types"])),
            ", ".join(sorted(str(v) for v in caps["time_in_force"])),
            ", ".join(sorted(str(v) for v in caps["asset_classes"])),
            "yes" if caps["fractional_quantities"] else "no",
            "yes" if caps["short_selling"] else "no",
            "yes" if caps["bulk_cancel"] else "one by one",
            secrets,
        )
    return folded(table)


def status_view(data: dict[str, Any]) -> Table:
    trading = str(data["trading_state"])
    title = Text("Trading ")
    title.append(
        trading,
        style="bold red" if trading == "HALTED" else "yellow" if trading == "REDUCING" else "bold green",
    )
    if data.get("halt"):
        title.append(f" since {data['halt']['time']:%Y-%m-%d %H:%M:%S} UTC: {data['halt']['reason']}")
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("Account", footer="Total")
    table.add_column("Type")
    table.add_column("State")
    table.add_column("Latency", justify="right")
    table.add_column("Equity", justify="right")
    table.add_column("Buying power", justify="right")
    table.add_column(
        f"Equity ({data['base_currency']})",
        justify="right",
        footer=money_text(data["total"]["equity"], currency=False),
    )
    table.add_column(
        f"Buying power ({data['base_currency']})",
        justify="right",
        footer=money_text(data["total"]["buying_power"], currency=False),
    )
    table.add_column("Error")
    for row in data["accounts"]:
        table.add_row(
            row["name"],
            Text(f"{row['type']} ").append_text(mode(row["live"])),
            connection_state(str(row["state"])).append(
                f" as of {row['as_of']:%Y-%m-%d %H:%M} UTC" if row.get("as_of") else "", style="dim"
            ),
            milliseconds(row["latency_ms"]),
            money_text(row["equity"]),
            money_text(row["buying_power"]),
            money_text(row["equity_base"], currency=False),
            money_text(row["buying_power_base"], currency=False),
            Text(row["error"] or "", style="red"),
        )
    return folded(table)


def test_view(result: dict[str, Any]) -> Table:
    verdict = (
        Text("OK", style="bold green")
        if result["ok"]
        else Text(f"FAILED ({result['failure']}, exit {result['exit_code']})", style="bold red")
    )
    title = Text(f"{result['account']} ({result['type']}, {'LIVE' if result['live'] else 'paper'}): ")
    title.append(verdict)
    table = Table(title=title, title_justify="left")
    table.add_column("Step")
    table.add_column("Result")
    table.add_column("Time", justify="right")
    table.add_column("Detail")
    for step in result["steps"]:
        table.add_row(
            step["step"],
            Text("ok", style="green") if step["ok"] else Text("FAILED", style="bold red"),
            milliseconds(step["ms"]),
            step["detail"] or "",
        )
    return folded(table)


def positions_table(data: dict[str, Any], by_account: bool) -> Table:
    base = data["base_currency"]
    table = Table(title=f"Positions (values in {base})", title_justify="left")
    for column, justify in (
        ("Symbol", "left"),
        ("Class", "left"),
        ("Qty", "right"),
        ("Avg price", "right"),
        ("Last", "right"),
        ("Ccy", "left"),
        (f"Value ({base})", "right"),
        (f"Unrealized P&L ({base})", "right"),
        ("Accounts", "left"),
    ):
        table.add_column(column, justify=cast(JustifyMethod, justify))
    if not data["positions"]:
        table.add_row("no positions", "", "", "", "", "", "", "", "")
    for row in data["positions"]:
        table.add_row(
            Text(row["instrument"], style="bold"),
            str(row["asset_class"]),
            number(row["quantity"]),
            number(row["avg_price"], 2),
            number(row["last_price"], 2),
            row["currency"],
            money_text(row["market_value_base"], currency=False),
            money_text(row["unrealized_pnl_base"], currency=False, signed=True),
            ", ".join(row["accounts"]),
        )
        for leg in row.get("legs", []) if by_account else []:
            table.add_row(
                Text(f"  {leg['account']}", style="dim"),
                "",
                number(leg["quantity"]),
                number(leg["avg_price"], 2),
                number(leg["last_price"], 2),
                row["currency"],
                Text(f"{number(leg['market_value'], 2)} {row['currency']}", style="dim")
                if row["currency"] != base
                else Text(number(leg["market_value"], 2), style="dim"),
                signed(leg["unrealized_pnl"]),
                "",
            )
    return folded(table)


FIGURE_LABELS = (
    ("cash", "Cash"),
    ("equity", "Equity"),
    ("buying_power", "Buying power"),
    ("market_value", "Market value"),
    ("unrealized_pnl", "Unrealized P&L"),
)


def balances_table(data: dict[str, Any], by_account: bool) -> Table:
    base = data["base_currency"]
    table = Table(title=f"Balances (in {base})", title_justify="left")
    table.add_column("")
    for _, label in FIGURE_LABELS:
        table.add_column(label, justify="right")
    for row in data.get("accounts", []) if by_account else []:
        table.add_row(
            Text(row["account"] + (" (stale)" if row["stale"] else "")),
            *(money_text(row["base"][key], currency=False) for key, _ in FIGURE_LABELS),
        )
        if row["currency"] != base:
            table.add_row(
                Text(f"  in {row['currency']}", style="dim"),
                *(money_text(row["native"][key]) for key, _ in FIGURE_LABELS),
            )
    table.add_row(
        Text("Total", style="bold"),
        *(money_text(data["total"][key], currency=False) for key, _ in FIGURE_LABELS),
    )
    return folded(table)


STATUS_STYLES = {
    "FILLED": "green",
    "REJECTED": "bold red",
    "CANCELLED": "dim",
    "EXPIRED": "dim",
    "UNKNOWN": "bold yellow",
    "PARTIALLY_FILLED": "yellow",
}


def order_price_cell(row: dict[str, Any]) -> str:
    """Every price an order carries: a stop-limit order shows its stop beside its limit."""
    limit, stop = row.get("limit_price"), row.get("stop_price")
    parts = [] if limit is None else [str(limit)]
    if stop is not None:
        parts.append(f"(stop {stop})" if parts else f"stop {stop}")
    if row.get("trail_percent") is not None:
        parts.append(f"trail {row['trail_percent']}%")
    if row.get("trail_amount") is not None:
        parts.append(f"trail {row['trail_amount']}")
    return " ".join(parts) or DASH


def orders_table(rows: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Orders", title_justify="left")
    for column, justify in (
        ("Account", "left"),
        ("Side", "left"),
        ("Qty", "right"),
        ("Symbol", "left"),
        ("Type", "left"),
        ("Price", "right"),
        ("TIF", "left"),
        ("Status", "left"),
        ("Filled", "right"),
        ("Avg price", "right"),
        ("Order id", "left"),
        ("Broker id", "left"),
    ):
        table.add_column(column, justify=cast(JustifyMethod, justify))
    for row in rows:
        price = order_price_cell(row)
        status = str(row["status"])
        table.add_row(
            row["account"] or DASH,
            str(row["side"]),
            number(row["quantity"])
            if row.get("notional") is None
            else f"{number(row['notional'], 2)} notional",
            row["symbol"],
            str(row["order_type"]),
            price,
            str(row["time_in_force"]),
            Text(status, style=STATUS_STYLES.get(status, "")),
            number(row["filled_quantity"]),
            number(row["avg_fill_price"], 2),
            row["client_order_id"],
            row["broker_order_id"] or DASH,
        )
    return folded(table)


def cancel_outcomes_table(outcomes: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Cancel all", title_justify="left")
    table.add_column("Account")
    table.add_column("Result")
    table.add_column("Cancelled", justify="right")
    table.add_column("Error")
    for name, outcome in outcomes.items():
        table.add_row(
            name,
            Text("ok", style="green") if outcome["ok"] else Text("FAILED", style="bold red"),
            str(outcome["cancelled"]),
            Text(outcome["error"] or "", style="red"),
        )
    if not outcomes:
        table.add_row("no accounts", "", "", "")
    return folded(table)


KIND_STYLES = {
    "reject": "red",
    "risk_reject": "red",
    "halt": "bold red",
    "resume": "bold green",
    "fill": "green",
    "unknown": "bold yellow",
    "cancel": "dim",
}


def journal_table(rows: list[dict[str, Any]], summaries: list[str], source: str) -> Table:
    table = Table(title=f"Journal {source}", title_justify="left")
    table.add_column("Time (UTC)")
    by_process = any("process" in row for row in rows)
    if by_process:
        table.add_column("Written by")
    table.add_column("Kind")
    table.add_column("Order")
    table.add_column("Account")
    table.add_column("Details")
    for row, summary in zip(rows, summaries, strict=True):
        where = [f"{row.get('process', '')} at {row.get('host') or '?'}"] if by_process else []
        table.add_row(
            f"{row['time']:%Y-%m-%d %H:%M:%S.%f}"[:-3],
            *where,
            Text(row["kind"], style=KIND_STYLES.get(row["kind"], "")),
            row["client_order_id"] or "",
            row["account"] or "",
            summary,
        )
    if not rows:
        table.add_row("no events", *([""] * (len(table.columns) - 1)))
    return folded(table)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:,.1f} {unit}"


def journal_stats_table(stats: JournalStats) -> Table:
    table = Table(title=f"Journal {stats.path}", title_justify="left", show_header=False)
    table.add_column("What")
    table.add_column("Value", justify="right")

    def when(value: datetime | None) -> str:
        return DASH if value is None else f"{value:%Y-%m-%d %H:%M:%S}"

    table.add_row("Events in the journal", f"{stats.events:,}")
    table.add_row("Open orders", f"{stats.open_orders:,}")
    table.add_row("Oldest event (UTC)", when(stats.first))
    table.add_row("Newest event (UTC)", when(stats.last))
    table.add_row("Database file", _size(stats.database_bytes))
    table.add_row("Write-ahead log", _size(stats.wal_bytes))
    table.add_row("WAL index", _size(stats.shm_bytes))
    table.add_row("Lookup tables (file, WAL, index)", _size(stats.lookup_bytes))
    table.add_row(
        f"Archive ({stats.archived_days} day(s), {stats.archive_folder})", _size(stats.archive_bytes)
    )
    table.add_row(
        "Oldest archived day", DASH if stats.first_archived is None else f"{stats.first_archived:%Y-%m-%d}"
    )
    table.add_row(Text("On disk in all", style="bold"), Text(_size(stats.total_bytes), style="bold"))
    return folded(table)


VERDICT_STYLES = {
    "PASS": "bold green",
    "FAIL": "bold red",
    "ERROR": "bold red",
    "NOT AVAILABLE": "yellow",
    "INFO": "dim",
}


def _figure_value(value: float | None, unit: str) -> str:
    if value is None:
        return DASH
    if unit == "orders/s":
        return f"{value:,.0f} {unit}"
    return f"{value:,.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def bench_table(report: Report) -> Table:
    table = Table(title="Benchmarks", title_justify="left")
    table.add_column("Benchmark")
    table.add_column("Figure")
    table.add_column("Result", justify="right")
    table.add_column("Target", justify="right")
    table.add_column("Verdict")
    table.add_column("Note")
    for figure in report.figures:
        target = DASH if figure.target is None else f"{figure.op} {_figure_value(figure.target, figure.unit)}"
        table.add_row(
            figure.benchmark,
            figure.name,
            _figure_value(figure.value, figure.unit),
            target,
            Text(figure.status, style=VERDICT_STYLES.get(figure.status, "")),
            figure.detail or "",
        )
    return folded(table)
