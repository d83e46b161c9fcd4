"""Rich tables for the command line. Each takes plain rows (the same dicts ``--json`` prints), so
what a person reads and what a script parses never drift apart."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

DASH = "-"


def folded(table: Table) -> Table:
    """Wrap cells in a narrow terminal rather than cut them: a clipped account name or order id
    is worse than a taller table."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def number(value: Any, places: int | None = None) -> str:
    if value is None:
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if places is not None:
        return f"{amount:,.{places}f}"
    text = f"{amount.normalize():,f}"
    return text


def _money_parts(value: Any) -> tuple[Any, str, bool, bool] | None:
    if isinstance(value, dict):
        return (
            value.get("amount"),
            value.get("currency") or "",
            bool(value.get("stale")),
            bool(value.get("missing")),
        )
    if hasattr(value, "amount") and hasattr(value, "currency"):
        return value.amount, value.currency, bool(value.stale), bool(value.missing)
    return None


def money(value: Any, *, currency: bool = True) -> Text:
    """A Money (or its JSON dict) or a bare amount. A figure built on a stale or missing FX rate
    or on partial data is marked, never shown as if it were sound."""
    parts = _money_parts(value)
    if parts is None:
        return Text(number(value, 2))
    amount, code, stale, missing = parts
    if amount is None:
        return Text("n/a", style="yellow")
    text = Text(f"{number(amount, 2)} {code}".strip() if currency else number(amount, 2))
    if missing:
        text.append(" (partial)", style="yellow")
    elif stale:
        text.append(" (stale)", style="yellow")
    return text


def signed(value: Any, places: int = 2) -> Text:
    if value is None:
        return Text(DASH)
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return Text(number(amount, places), style="green" if amount > 0 else "red" if amount < 0 else "")


def mode(live: bool) -> Text:
    return Text("LIVE", style="bold red") if live else Text("paper", style="dim")


STATE_STYLES = {
    "CONNECTED": "green",
    "CONNECTING": "yellow",
    "RESYNCING": "yellow",
    "DEGRADED": "yellow",
    "FAILED": "bold red",
    "DISCONNECTED": "red",
}


def state(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, ""))


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


def _ms(value: Any) -> str:
    return DASH if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


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
        footer=money(data["total"]["equity"], currency=False),
    )
    table.add_column(
        f"Buying power ({data['base_currency']})",
        justify="right",
        footer=money(data["total"]["buying_power"], currency=False),
    )
    table.add_column("Error")
    for row in data["accounts"]:
        table.add_row(
            row["name"],
            Text(f"{row['type']} ").append_text(mode(row["live"])),
            state(str(row["state"])),
            _ms(row["latency_ms"]),
            money(row["equity"]),
            money(row["buying_power"]),
            money(row["equity_base"], currency=False),
            money(row["buying_power_base"], currency=False),
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
            _ms(step["ms"]),
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
        table.add_column(column, justify=justify)
    if not data["positions"]:
        table.add_row("no positions", "", "", "", "", "", "", "", "")
    for row in data["positions"]:
        table.add_row(
            Text(row["symbol"], style="bold"),
            str(row["asset_class"]),
            number(row["quantity"]),
            number(row["avg_price"], 2),
            number(row["last_price"], 2),
            row["currency"],
            money(row["market_value_base"], currency=False),
            signed_money(row["unrealized_pnl_base"], currency=False),
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


def signed_money(value: Any, *, currency: bool = True) -> Text:
    text = money(value, currency=currency)
    parts = _money_parts(value)
    if parts is not None and parts[0] is not None:
        amount = Decimal(str(parts[0]))
        text.stylize("green" if amount > 0 else "red" if amount < 0 else "")
    return text


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
            *(money(row["base"][key], currency=False) for key, _ in FIGURE_LABELS),
        )
        if row["currency"] != base:
            table.add_row(
                Text(f"  in {row['currency']}", style="dim"),
                *(money(row["native"][key]) for key, _ in FIGURE_LABELS),
            )
    table.add_row(
        Text("Total", style="bold"), *(money(data["total"][key], currency=False) for key, _ in FIGURE_LABELS)
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
        table.add_column(column, justify=justify)
    for row in rows:
        price = row["limit_price"] if row["limit_price"] is not None else row["stop_price"]
        if row.get("trail_percent") is not None:
            price = f"{row['trail_percent']}%"
        status = str(row["status"])
        table.add_row(
            row["account"] or DASH,
            str(row["side"]),
            number(row["quantity"]),
            row["symbol"],
            str(row["order_type"]),
            DASH if price is None else str(price),
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


def journal_table(rows: list[dict[str, Any]], summaries: list[str], path: Any) -> Table:
    table = Table(title=f"Journal {path}", title_justify="left")
    table.add_column("Time (UTC)")
    table.add_column("Kind")
    table.add_column("Order")
    table.add_column("Account")
    table.add_column("Details")
    for row, summary in zip(rows, summaries, strict=True):
        table.add_row(
            f"{row['time']:%Y-%m-%d %H:%M:%S.%f}"[:-3],
            Text(row["kind"], style=KIND_STYLES.get(row["kind"], "")),
            row["client_order_id"] or "",
            row["account"] or "",
            summary,
        )
    if not rows:
        table.add_row("no events", "", "", "", "")
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


def bench_table(report: Any) -> Table:
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
