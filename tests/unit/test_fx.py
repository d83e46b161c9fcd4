from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from brokers.fx import FxRates, FxSettings, Money, split_pair

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_settings_normalise_pairs_and_refuse_bad_ones():
    settings = FxSettings(rates={"usd/inr": "83.25", "EURUSD": 1.08})
    assert settings.rates == {"USDINR": Decimal("83.25"), "EURUSD": Decimal("1.08")}
    for bad in ({"USDIN": 1}, {"USDUSD": 1}, {"USDINR": 0}, {"USDINR": "nan"}, {"USDINR": -2}):
        with pytest.raises(ValidationError):
            FxSettings(rates=bad)
    with pytest.raises(ValidationError, match="time zone"):
        FxSettings(as_of=datetime(2024, 5, 1))


def test_split_pair():
    assert split_pair("eur-usd") == ("EUR", "USD")
    with pytest.raises(ValueError, match="USDINR"):
        split_pair("dollars")


def test_direct_inverse_and_same_currency():
    fx = FxRates("USD", FxSettings(rates={"USDINR": 80, "EURUSD": "1.25"}))
    assert fx.convert(Decimal(1600), "INR") == Money(Decimal(20), "USD")
    assert fx.convert(Decimal(8), "EUR") == Money(Decimal(10), "USD")
    assert fx.convert(Decimal("12.5"), "usd") == Money(Decimal("12.5"), "USD")
    # Any target, not only the base.
    assert fx.convert(Decimal(2), "USD", to="INR").amount == Decimal(160)


def test_inverse_rate_divides_rather_than_multiplying_a_rounded_reciprocal():
    fx = FxRates("USD", FxSettings(rates={"USDINR": 83}))
    assert fx.convert(Decimal(830000), "INR").amount == Decimal(10000)


def test_cross_rate_through_a_shared_currency():
    fx = FxRates("INR", FxSettings(rates={"USDINR": 80, "EURUSD": "1.25"}))
    # 1 EUR = 1.25 USD = 100 INR
    assert fx.convert(Decimal(3), "EUR") == Money(Decimal(300), "INR")
    assert fx.conversion("EUR").rate == Decimal(100)
    assert [r.pair for r in fx.conversion("EUR").path] == ["EURUSD", "USDINR"]


def test_missing_rate_is_marked_not_guessed():
    fx = FxRates("USD", FxSettings(rates={"USDINR": 80}))
    converted = fx.convert(Decimal(100), "JPY")
    assert converted.amount is None and converted.missing and converted.currency == "USD"
    assert fx.convert(None, "USD").missing


def test_dated_rates_go_stale_undated_config_rates_do_not():
    clock = Clock()
    settings = FxSettings(rates={"USDINR": 80}, as_of=T0, stale_after_seconds=3600)
    fx = FxRates("USD", settings, clock=clock)
    assert not fx.convert(Decimal(80), "INR").stale
    clock.now = T0 + timedelta(seconds=3601)
    stale = fx.convert(Decimal(80), "INR")
    assert stale == Money(Decimal(1), "USD", stale=True)
    assert not stale.is_exact

    undated = FxRates("USD", FxSettings(rates={"USDINR": 80}, stale_after_seconds=1), clock=clock)
    clock.now = T0 + timedelta(days=30)
    assert not undated.convert(Decimal(80), "INR").stale


def test_broker_rate_replaces_either_direction_and_is_dated_now():
    clock = Clock()
    fx = FxRates("USD", FxSettings(rates={"USDINR": 80}, stale_after_seconds=60), clock=clock)
    rate = fx.set_rate("INRUSD", Decimal("0.0125"), source="kite")
    assert rate.as_of == T0 and rate.source == "kite"
    assert fx.get("USDINR") is rate
    assert fx.convert(Decimal(800), "INR").amount == Decimal(10)
    clock.now = T0 + timedelta(seconds=61)
    assert fx.convert(Decimal(800), "INR").stale


def test_cross_rate_prefers_a_fresh_path_and_is_stale_if_any_leg_is():
    clock = Clock()
    fx = FxRates("INR", FxSettings(stale_after_seconds=60), clock=clock)
    fx.set_rate("USDINR", 80, as_of=T0 - timedelta(hours=1))
    fx.set_rate("EURUSD", "1.25")
    assert fx.convert(Decimal(1), "EUR").stale
    fx.set_rate("EURGBP", "0.5")
    fx.set_rate("GBPINR", 200)
    fresh = fx.convert(Decimal(1), "EUR")
    assert fresh == Money(Decimal(100), "INR")


def test_set_rate_refuses_nonsense():
    fx = FxRates()
    for bad in (0, -1, "abc", float("inf"), True):
        with pytest.raises(ValueError, match="rate for USDINR"):
            fx.set_rate("USDINR", bad)
    with pytest.raises(ValueError, match="time zone"):
        fx.set_rate("USDINR", 80, as_of=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="3-letter"):
        FxRates("dollars")


def test_money_total_carries_marks():
    usd = "USD"
    exact = Money.total([Money(Decimal(1), usd), Money(Decimal(2), usd)], usd)
    assert exact == Money(Decimal(3), usd) and exact.is_exact
    with_stale = Money.total([Money(Decimal(1), usd), Money(Decimal(2), usd, stale=True)], usd)
    assert with_stale == Money(Decimal(3), usd, stale=True)
    partial = Money.total([Money(Decimal(1), usd), Money(None, usd, missing=True)], usd)
    assert partial == Money(Decimal(1), usd, missing=True)
    assert Money.total([Money(None, usd, missing=True)], usd) == Money(None, usd, missing=True)
    assert Money.total([], usd) == Money(Decimal(0), usd)
    with pytest.raises(ValueError, match="convert it first"):
        Money.total([Money(Decimal(1), "INR")], usd)


def test_convert_money_keeps_existing_marks():
    fx = FxRates("USD", FxSettings(rates={"USDINR": 80}))
    assert fx.convert_money(Money(Decimal(160), "INR", stale=True)) == Money(Decimal(2), "USD", stale=True)
    assert fx.convert_money(Money(Decimal(160), "INR", missing=True)).missing


def test_money_str_shows_marks():
    assert str(Money(Decimal("1234.5"), "USD")) == "1,234.50 USD"
    assert str(Money(Decimal(1), "USD", stale=True, missing=True)) == "1.00 USD (stale, partial)"
    assert str(Money(None, "USD", missing=True)) == "n/a USD"
