"""Settlement dates from the one rules table: cycles by market and asset class, weekends and the
market's holidays skipped, trade dates counted in the market's own zone."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from brokers.enums import AssetClass
from brokers.instruments import Instrument
from brokers.settlement import RULES, is_business_day, rule_for, settlement_of


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def settles(symbol: str, asset_class: AssetClass, when: datetime, exchange=None, currency="USD"):
    return settlement_of(Instrument(symbol, asset_class, exchange=exchange), when, currency)


def test_every_row_cites_its_source_and_the_markets_are_covered():
    assert all(len(rule.source) > 20 for rule in RULES)
    assert rule_for(AssetClass.STOCK, "AAPL", "NASDAQ", "USD").cycle == "T+1"
    assert rule_for(AssetClass.OPTION, "AAPL", None, "USD").cycle == "T+1"
    assert rule_for(AssetClass.STOCK, "INFY", "NSE", "INR").cycle == "T+1"
    assert rule_for(AssetClass.FOREX, "EUR/USD").cycle == "T+2"
    assert rule_for(AssetClass.FOREX, "USDCAD").cycle == "T+1"
    assert rule_for(AssetClass.CRYPTO, "BTC/USD").cycle == "T+0"
    assert rule_for(AssetClass.FUTURE, "ES", "CME", "USD").market == "US"
    assert rule_for(AssetClass.FUTURE, "NIFTY24DECFUT", "NFO", "INR").market == "IN"
    # A market the table does not know: the longest cycle, never an early settlement.
    unknown = rule_for(AssetClass.STOCK, "VOD", "LSE", "GBP")
    assert unknown.asset_class is None and unknown.days == max(rule.days for rule in RULES)


def test_a_friday_us_sale_settles_monday():
    result = settles("AAPL", AssetClass.STOCK, at(2025, 8, 22, 15))
    assert (result.trade_date, result.settlement_date) == (date(2025, 8, 22), date(2025, 8, 25))
    # Settled from the start of Monday in New York.
    assert result.settles_at == at(2025, 8, 25, 4)
    assert not result.settled(at(2025, 8, 25, 3, 59)) and result.settled(at(2025, 8, 25, 4))


def test_a_friday_sale_before_a_monday_holiday_settles_tuesday():
    labor_day = settles("AAPL", AssetClass.STOCK, at(2025, 8, 29, 15))
    assert labor_day.settlement_date == date(2025, 9, 2)
    # Columbus Day: NYSE trades, banks are closed, nothing settles.
    assert is_business_day(date(2025, 10, 13), ("XNYS",))
    assert settles("AAPL", AssetClass.STOCK, at(2025, 10, 10, 15)).settlement_date == date(2025, 10, 14)


def test_the_trade_date_is_the_markets_own_day():
    # 01:00 UTC Saturday is Friday evening in New York: Friday's trade date.
    late = settles("AAPL", AssetClass.STOCK, at(2025, 8, 23, 1))
    assert (late.trade_date, late.settlement_date) == (date(2025, 8, 22), date(2025, 8, 25))
    # An execution on a holiday belongs to the next business day.
    holiday = settles("AAPL", AssetClass.STOCK, at(2025, 7, 4, 15))
    assert (holiday.trade_date, holiday.settlement_date) == (date(2025, 7, 7), date(2025, 7, 8))


def test_indian_equities_skip_nse_holidays():
    # Diwali: 21 and 22 October 2025 are NSE holidays.
    result = settles("INFY", AssetClass.STOCK, at(2025, 10, 20, 6), "NSE", "INR")
    assert (result.trade_date, result.settlement_date) == (date(2025, 10, 20), date(2025, 10, 23))
    # Counted in India: 20:00 UTC on the 17th is the 18th in Kolkata, a Saturday.
    weekend = settles("INFY", AssetClass.STOCK, at(2025, 10, 17, 20), "NSE", "INR")
    assert weekend.trade_date == date(2025, 10, 20)


def test_fx_spot_is_t_plus_2_in_both_currencies_and_rolls_at_five_in_new_york():
    # 25 and 26 December are TARGET holidays.
    christmas = settles("EUR/USD", AssetClass.FOREX, at(2025, 12, 23, 15))
    assert christmas.settlement_date == date(2025, 12, 29)
    # After 17:00 New York the trade date is the next day.
    late = settles("EUR/USD", AssetClass.FOREX, at(2025, 8, 19, 22))
    assert (late.trade_date, late.settlement_date) == (date(2025, 8, 20), date(2025, 8, 22))


def test_crypto_settles_at_once_every_day():
    when = at(2025, 12, 27, 15, 30)  # a Saturday
    result = settles("BTC/USD", AssetClass.CRYPTO, when)
    assert result.trade_date == result.settlement_date == date(2025, 12, 27)
    assert result.settles_at == when and result.settled(when)


def test_cme_futures_trade_date_starts_with_the_evening_session():
    # Friday 17:00 Chicago starts Monday's trade date; variation margin moves on Tuesday.
    result = settles("ES", AssetClass.FUTURE, at(2025, 12, 26, 23), "CME")
    assert (result.trade_date, result.settlement_date) == (date(2025, 12, 29), date(2025, 12, 30))


@pytest.mark.parametrize("asset_class", [AssetClass.CFD, AssetClass.OTHER])
def test_unknown_kinds_settle_by_the_cautious_row(asset_class):
    result = settles("XYZ", asset_class, at(2025, 8, 22, 12))
    assert result.rule.asset_class is None and result.settlement_date == date(2025, 8, 26)
