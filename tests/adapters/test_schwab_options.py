"""Schwab option positions through schwab-py against the loopback Trader API: OCC-coded
symbols read as option instruments (root, expiry, strike, right) in contracts with their
multiplier, priced per share, long and short; a row that cannot be read is left out with a
warning, never the rest."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from peers.schwab_peer import (  # noqa: F401  (fixtures)
    schwab_broker_fixture,
    schwab_keys_fixture,
    schwab_peer_fixture,
)

from brokers.consolidation import Snapshot, account_totals
from brokers.fx import FxRates, FxSettings
from brokers.models import AccountStatus, AssetClass, utcnow

D = Decimal


async def test_option_positions_are_options_with_their_multiplier(schwab, schwab_peer, caplog):
    schwab_peer.option_positions = [
        ("AAPL  250620C00225000", "CALL", D(2), D("5.25"), D("7.10"), 100),
        ("SPY   251219P00550500", "PUT", D(-3), D("12.40"), D("9.80"), None),
        ("NOTANOCC", "CALL", D(1), D(1), D(1), 100),
        ("MSFT  250620C00400000", "PUT", D(1), D(1), D(1), 100),  # its code says call
    ]
    caplog.set_level(logging.WARNING, logger="brokers.adapters.schwab")
    positions = {p.instrument.label: p for p in await schwab.get_positions()}
    call = next(
        p for p in positions.values() if p.instrument.symbol == "AAPL" and p.asset_class is AssetClass.OPTION
    )
    assert (call.quantity, call.multiplier, call.avg_price, call.last_price) == (
        D(2),
        D(100),
        D("5.25"),
        D("7.10"),
    )
    assert (call.instrument.expiry, call.instrument.strike, call.instrument.right) == (
        date(2025, 6, 20),
        D(225),
        "C",
    )
    assert call.market_value == 2 * D("7.10") * 100
    assert call.unrealized_pnl == (D("7.10") - D("5.25")) * 2 * 100
    put = next(p for p in positions.values() if p.instrument.symbol == "SPY")
    # No optionMultiplier in the row: an equity option's 100.
    assert (put.quantity, put.multiplier, put.last_price) == (D(-3), D(100), D("9.80"))
    assert (put.instrument.expiry, put.instrument.strike, put.instrument.right) == (
        date(2025, 12, 19),
        D("550.5"),
        "P",
    )
    assert put.market_value == -3 * D("9.80") * 100
    # The stock is still there, and the unreadable rows are named in the log, not shown.
    assert "AAPL" in positions and positions["AAPL"].asset_class is AssetClass.STOCK
    assert len(positions) == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert any("NOTANOCC" in w and "not an OCC option code" in w for w in warnings)
    assert any("MSFT" in w and "disagrees" in w for w in warnings)
    # Account totals count contracts at their multiplier.
    balance = await schwab.get_balance()
    snapshot = Snapshot(
        taken_at=utcnow(),
        balances={"schwab": balance},
        positions={"schwab": list(positions.values())},
        statuses={"schwab": AccountStatus(name="schwab")},
        as_of={},
    )
    totals = account_totals("schwab", "USD", snapshot, FxRates("USD", FxSettings()), lambda p: p.last_price)
    assert totals.native.market_value.amount == 10 * D("227.50") + 2 * D("7.10") * 100 - 3 * D("9.80") * 100
