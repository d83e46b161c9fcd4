"""Consolidation groups positions by instrument: one row per instrument across accounts and
currencies, and never a CFD together with the stock of its symbol."""

from __future__ import annotations

from decimal import Decimal

from brokers.consolidation import Snapshot, consolidate_positions
from brokers.fx import FxRates, FxSettings
from brokers.manager import MultiBrokerManager
from brokers.models import AccountStatus, AssetClass, Position, utcnow
from brokers.sim import SimBroker

D = Decimal


def snapshot(*positions: Position) -> Snapshot:
    by_account: dict[str, list[Position]] = {}
    for position in positions:
        by_account.setdefault(position.account, []).append(position)
    now = utcnow()
    return Snapshot(
        taken_at=now,
        balances={},
        positions=by_account,
        statuses={name: AccountStatus(name=name) for name in by_account},
        as_of=dict.fromkeys(by_account, now),
    )


def last(position: Position) -> Decimal | None:
    return position.last_price


def test_a_cfd_beside_a_stock_is_two_rows() -> None:
    rows = consolidate_positions(
        snapshot(
            Position(symbol="AAPL", quantity=D(100), avg_price=D(180), last_price=D(190), account="ib"),
            Position(
                symbol="AAPL",
                quantity=D(-100),
                avg_price=D(185),
                last_price=D(190),
                account="ib",
                asset_class=AssetClass.CFD,
            ),
        ),
        FxRates("USD"),
        last,
    )
    # Sorted by symbol, then asset class.
    assert [(row.label, row.asset_class, row.quantity) for row in rows] == [
        ("AAPL CFD", AssetClass.CFD, D(-100)),
        ("AAPL", AssetClass.STOCK, D(100)),
    ]
    assert rows[0].market_value_base.amount == D(-19000)
    assert rows[1].market_value_base.amount == D(19000)


def test_one_instrument_in_two_currencies_is_one_row_valued_in_the_base_currency() -> None:
    fx = FxRates("USD", FxSettings(rates={"EURUSD": "1.25"}))
    rows = consolidate_positions(
        snapshot(
            Position(
                symbol="AAPL",
                quantity=D(10),
                avg_price=D(150),
                last_price=D(200),
                account="us",
                currency="USD",
            ),
            Position(
                symbol="AAPL",
                quantity=D(4),
                avg_price=D(140),
                last_price=D(160),
                account="eu",
                currency="EUR",
            ),
        ),
        fx,
        last,
    )
    assert len(rows) == 1
    row = rows[0]
    assert row.quantity == 14
    assert row.accounts == ["eu", "us"]
    assert row.currency == "USD"
    assert row.avg_price is None and row.last_price is None  # no one price across currencies
    assert row.market_value_base.amount == D(2000) + D(640) * D("1.25")
    assert row.unrealized_pnl_base.amount == D(500) + D(80) * D("1.25")
    assert not row.market_value_base.missing


def test_a_missing_rate_marks_the_mixed_row_rather_than_mixing_currencies() -> None:
    rows = consolidate_positions(
        snapshot(
            Position(symbol="AAPL", quantity=D(10), last_price=D(200), account="us", currency="USD"),
            Position(symbol="AAPL", quantity=D(4), last_price=D(160), account="eu", currency="EUR"),
        ),
        FxRates("USD"),
        last,
    )
    assert len(rows) == 1
    assert rows[0].market_value_base.missing
    assert rows[0].market_value_base.amount == D(2000)


def test_contracts_are_counted_and_the_multiplier_applies_to_money() -> None:
    rows = consolidate_positions(
        snapshot(
            Position(
                symbol="ES",
                quantity=D(2),
                avg_price=D(5000),
                last_price=D(5010),
                account="ib",
                asset_class=AssetClass.FUTURE,
                multiplier=D(50),
            ),
        ),
        FxRates("USD"),
        last,
    )
    assert rows[0].quantity == 2
    assert rows[0].market_value_base.amount == D(2) * D(5010) * D(50)
    assert rows[0].unrealized_pnl_base.amount == D(2) * D(10) * D(50)


async def test_sim_accounts_in_two_currencies_consolidate_into_one_row() -> None:
    fx = FxRates("USD", FxSettings(rates={"EURUSD": "1.25"}))
    manager = MultiBrokerManager(fx=fx, timeout=2)
    us = SimBroker("us", currency="USD", prices={"AAPL": 200}, seed=1, initial_positions={"AAPL": (10, 150)})
    eu = SimBroker("eu", currency="EUR", prices={"AAPL": 160}, seed=1, initial_positions={"AAPL": (4, 140)})
    manager.add_broker("us", us, default=True)
    manager.add_broker("eu", eu)
    await manager.connect_all()
    try:
        await manager.refresh()
        rows = manager.consolidated_positions()
        assert [row.label for row in rows] == ["AAPL"]
        row = rows[0]
        assert row.quantity == 14
        assert row.market_value_base.amount == D(10) * D(200) + D(4) * D(160) * D("1.25")
        assert {leg.account: leg.currency for leg in row.legs} == {"us": "USD", "eu": "EUR"}
    finally:
        await manager.disconnect_all()
