"""The equivalence rules of ``Instrument``: when two descriptions name one holding."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from brokers import AssetClass, Instrument, OrderRequest, Position, Side


def test_a_cfd_is_never_the_stock_of_the_same_symbol() -> None:
    stock = Instrument("AAPL", AssetClass.STOCK, currency="USD")
    cfd = Instrument("AAPL", AssetClass.CFD, currency="USD")
    assert stock != cfd
    assert len({stock, cfd}) == 2


def test_a_symbol_written_with_its_asset_class_is_the_bare_symbol() -> None:
    shown = Instrument("AAPL CFD", AssetClass.CFD)
    assert shown == Instrument("AAPL", AssetClass.CFD)
    assert shown.label == "AAPL CFD"
    assert shown != Instrument("AAPL CFD", AssetClass.STOCK)


def test_an_unknown_security_type_is_not_a_stock() -> None:
    assert Instrument("AAPL", AssetClass.OTHER) != Instrument("AAPL", AssetClass.STOCK)


@pytest.mark.parametrize("spelling", ["BTCUSD", "BTC/USD", "btc-usd", "BTC.USD", " btc/usd "])
def test_crypto_pair_spellings_are_one_pair(spelling: str) -> None:
    pair = Instrument(spelling, AssetClass.CRYPTO)
    assert pair == Instrument("BTC/USD", AssetClass.CRYPTO)
    assert pair.symbol == "BTC/USD"
    assert hash(pair) == hash(Instrument("BTC/USD", AssetClass.CRYPTO))


def test_crypto_pairs_with_different_quotes_differ() -> None:
    assert Instrument("BTCUSDT", AssetClass.CRYPTO).symbol == "BTC/USDT"
    assert Instrument("BTCUSDT", AssetClass.CRYPTO) != Instrument("BTCUSD", AssetClass.CRYPTO)


def test_forex_pairs_follow_the_same_rule() -> None:
    assert Instrument("EUR.USD", AssetClass.FOREX) == Instrument("EURUSD", AssetClass.FOREX)
    assert Instrument("EURUSD", AssetClass.FOREX).symbol == "EUR/USD"


def test_a_crypto_pair_is_not_a_stock_ticker() -> None:
    assert Instrument("BTCUSD", AssetClass.CRYPTO) != Instrument("BTCUSD", AssetClass.STOCK)


def test_an_equity_on_two_exchanges_is_one_holding() -> None:
    nse = Instrument("SBIN", AssetClass.STOCK, exchange="NSE", currency="INR")
    bse = Instrument("sbin", AssetClass.STOCK, exchange="BSE", currency="INR")
    assert nse == bse
    assert nse.summable(bse)
    assert nse.exchange == "NSE"
    assert bse.exchange == "BSE"


def test_share_class_spellings_are_one_stock() -> None:
    assert Instrument("BRK B") == Instrument("BRK/B") == Instrument("BRK.B")


def test_currency_and_multiplier_are_not_identity_but_stop_summing() -> None:
    usd = Instrument("AAPL", currency="USD")
    eur = Instrument("AAPL", currency="EUR")
    assert usd == eur
    assert not usd.summable(eur)
    mini = Instrument("ES", AssetClass.FUTURE, currency="USD", multiplier=Decimal(5))
    full = Instrument("ES", AssetClass.FUTURE, currency="USD", multiplier=Decimal(50))
    assert mini == full
    assert not mini.summable(full)


def test_option_terms_are_part_of_identity() -> None:
    call = Instrument(
        "AAPL", AssetClass.OPTION, expiry=date(2027, 1, 15), strike=Decimal("190"), right="CALL"
    )
    same = Instrument(
        "AAPL", AssetClass.OPTION, expiry=date(2027, 1, 15), strike=Decimal("190.00"), right="C"
    )
    put = Instrument("AAPL", AssetClass.OPTION, expiry=date(2027, 1, 15), strike=Decimal("190"), right="P")
    later = Instrument("AAPL", AssetClass.OPTION, expiry=date(2027, 2, 19), strike=Decimal("190"), right="C")
    assert call == same
    assert call != put
    assert call != later
    assert call != Instrument("AAPL", AssetClass.STOCK)


def test_every_spelling_of_an_option_contract_is_one_instrument() -> None:
    # IB positions come back as compact OCC codes, Alpaca's as OCC, a trader types the spaced form
    # or gives the terms apart: all four name the AAPL 15 Jan 2027 190 call.
    terms = Instrument("AAPL", AssetClass.OPTION, expiry=date(2027, 1, 15), strike=Decimal(190), right="C")
    spellings = ["AAPL270115C00190000", "AAPL  270115C00190000", "AAPL 20270115 190 CALL"]
    for spelling in spellings:
        option = Instrument(spelling, AssetClass.OPTION, multiplier=Decimal(100))
        assert option == terms
        assert (option.symbol, option.expiry, option.strike, option.right) == (
            "AAPL",
            date(2027, 1, 15),
            Decimal(190),
            "C",
        )
    assert Instrument("AAPL270115P00190000", AssetClass.OPTION) != terms
    assert Instrument("AAPL270115C00190500", AssetClass.OPTION).strike == Decimal("190.5")
    assert terms.label == "AAPL 2027-01-15 190 C OPTION"


def test_an_option_code_that_disagrees_with_its_terms_is_refused() -> None:
    with pytest.raises(ValueError, match="disagrees"):
        Instrument("AAPL270115C00190000", AssetClass.OPTION, strike=Decimal(200))


def test_a_bad_option_right_is_refused() -> None:
    with pytest.raises(ValueError, match="right"):
        Instrument("AAPL", AssetClass.OPTION, right="X")


def test_contract_quantities_take_the_multiplier_for_money() -> None:
    option = Instrument("AAPL270115C00190000", AssetClass.OPTION, currency="USD", multiplier=Decimal(100))
    assert option.notional(Decimal(2), Decimal("3.5")) == Decimal(700)
    gold = Instrument(
        "GOLD24DECFUT", AssetClass.FUTURE, exchange="MCX", currency="INR", multiplier=Decimal(100)
    )
    assert gold.notional(Decimal(1), Decimal(76000)) == Decimal(7_600_000)


def test_a_position_multiplier_applies_to_money_not_quantity() -> None:
    position = Position(
        symbol="AAPL270115C00190000",
        quantity=Decimal(2),
        avg_price=Decimal(3),
        last_price=Decimal(4),
        asset_class=AssetClass.OPTION,
        multiplier=Decimal(100),
    )
    assert position.quantity == 2
    assert position.market_value == Decimal(800)
    assert position.instrument.notional(position.quantity, Decimal(4)) == position.market_value


def test_a_bad_multiplier_is_refused() -> None:
    with pytest.raises(ValueError, match="multiplier"):
        Instrument("ES", AssetClass.FUTURE, multiplier=Decimal(0))


def test_position_instrument_carries_its_terms() -> None:
    position = Position(symbol="SBIN", quantity=Decimal(16), account="kite", currency="INR", exchange="BSE")
    instrument = position.instrument
    assert instrument == Instrument.stock("SBIN")
    assert instrument.currency == "INR"
    assert instrument.exchange == "BSE"
    assert instrument.asset_class is AssetClass.STOCK


def test_a_plain_symbol_order_is_a_stock_in_the_accounts_currency() -> None:
    request = OrderRequest(symbol="aapl", side=Side.BUY, quantity=Decimal(1))
    instrument = request.instrument
    assert instrument == Instrument.stock("AAPL")
    assert instrument.asset_class is AssetClass.STOCK
    assert instrument.currency is None
    assert instrument.in_currency("EUR").currency == "EUR"
    named = OrderRequest(symbol="AAPL", side=Side.BUY, quantity=Decimal(1), currency="USD")
    assert named.instrument.in_currency("EUR").currency == "USD"


def test_an_order_for_a_crypto_pair_matches_the_position() -> None:
    request = OrderRequest(
        symbol="BTCUSD", side=Side.SELL, quantity=Decimal(1), asset_class=AssetClass.CRYPTO
    )
    position = Position(symbol="BTC/USD", quantity=Decimal(1), asset_class=AssetClass.CRYPTO)
    assert request.instrument == position.instrument


def test_instruments_are_frozen() -> None:
    instrument = Instrument.stock("AAPL")
    with pytest.raises(AttributeError):
        instrument.symbol = "MSFT"  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [
        {"symbol": " "},
        {"symbol": "AAPL", "asset_class": "OPTION", "right": "X"},
        {"symbol": "AAPL", "multiplier": 0},
    ],
)
def test_a_broker_row_that_names_no_instrument_is_refused_where_it_is_read(fields):
    # Refused when the row is built (the adapter's edge), so consolidation never meets it.
    with pytest.raises(ValidationError):
        Position(quantity=1, **fields)
