"""The account pane's settled cash: each account's split and where it came from, and a broker's
settled figure that the account's fills do not give named with both figures, in the running
console as in ``trading-console settlements``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from console_support import console, settled, wait_for

from brokers.account_state import SettledCashSource
from brokers.config import parse_config
from brokers.consolidation import CashSettlement, SettlementTotals
from brokers.fx import Money
from brokers.models import OrderRequest
from brokers.runtime import build_runtime
from brokers.sim import ManualClock, SimBroker
from console.tui.settlement_text import DIFFERS_MARK, disagreement_text
from console.tui.widgets.account_pane import settlement_cells

D = Decimal
FRIDAY = datetime(2025, 8, 22, 14, 0, tzinfo=UTC)


def split(settled: str | None, pending: str | None, **fields) -> CashSettlement:
    def money(amount):
        return Money(None if amount is None else D(amount), "USD", missing=amount is None)

    return CashSettlement(
        account=fields.pop("account", "cash"),
        currency="USD",
        settled=money(settled),
        pending=money(pending),
        settled_base=money(settled),
        pending_base=money(pending),
        **{"source": SettledCashSource.BROKER, **fields},
    )


def totals(*splits: CashSettlement) -> SettlementTotals:
    return SettlementTotals(
        "USD",
        Money.total((s.settled_base for s in splits), "USD"),
        Money.total((s.pending_base for s in splits), "USD"),
        {s.account: s for s in splits},
    )


def test_a_disagreement_names_the_account_and_both_figures():
    differing = split("1000", "10000", cash_account=True, disagreement=D(-10_000))
    agreeing = split("5000", "0", account="other")
    text = disagreement_text(totals(differing, agreeing))
    assert text == "settled cash differs from fills: cash 1,000.00 USD (fills 11,000.00)"
    assert disagreement_text(totals(agreeing)) == "" and disagreement_text(None) == ""

    # The account pane marks the broker's figure, in the base currency, where the fills differ.
    cells = settlement_cells(differing)
    assert cells["settled"].plain == f"1,000.00{DIFFERS_MARK}"
    assert cells["pending"].plain.strip() == "10,000.00"
    assert settlement_cells(agreeing)["settled"].plain.strip() == "5,000.00"


def test_an_unknown_split_reads_as_such():
    cells = settlement_cells(split(None, None, source=SettledCashSource.UNKNOWN))
    assert cells["settled"].plain.strip() == "n/a" and cells["pending"].plain.strip() == "n/a"


async def test_the_running_console_shows_a_broker_figure_its_fills_do_not_give(tmp_path):
    config = parse_config(
        {"accounts": [{"name": "cash", "type": "sim", "account_type": "cash", "default": True}]},
        where="test",
    )
    clock = ManualClock(FRIDAY)
    broker = SimBroker(
        "cash",
        clock=clock,
        account_type="cash",
        initial_cash=1_000,
        prices={"AAPL": 100},
        initial_positions={"AAPL": (100, 90)},
    )
    # Sold at the broker itself (another terminal): the console's journal never saw the sale.
    await broker.connect()
    await broker.place_order(OrderRequest(symbol="AAPL", side="SELL", quantity=100))
    runtime = build_runtime(config, brokers={"cash": broker}, state_dir=tmp_path)
    app = console(config, runtime=runtime)
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        await wait_for(lambda: "differs from fills" in str(app.accounts.border_subtitle), pilot)
        assert "settled cash differs from fills: cash 1,000.00 USD (fills 11,000.00)" in str(
            app.accounts.border_subtitle
        )
