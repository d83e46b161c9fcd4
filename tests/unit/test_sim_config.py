"""Building a paper broker from code and from config, and refusing bad settings by name."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.errors import ConfigError
from brokers.instruments import Instrument
from brokers.registry import BrokerFactory
from brokers.sim import ManualClock, SimBroker, SimFaults

D = Decimal


def test_defaults():
    broker = SimBroker()
    assert (broker.name, broker.currency, broker.live, broker.broker_type) == ("sim", "USD", False, "sim")
    assert (broker.initial_cash, broker.account_type, broker.leverage, broker.latency) == (
        D(100_000),
        "margin",
        D(2),
        0.0,
    )
    assert "AAPL" in broker.symbols  # a small default universe when no prices are given
    assert SimBroker(prices={}).symbols == []


def test_factory_builds_from_a_config_mapping_and_ignores_account_keys():
    broker = BrokerFactory.create(
        {
            "type": "sim",
            "name": "paper-eu",
            "currency": "eur",
            "live": False,
            "default": True,
            "weight": 2.5,
            "label": "Paper EUR",
            "risk": {"max_order_quantity": 10},
            "broker_type": "sim",
            "initial_cash": "50000",
            "prices": {"sap": 180.5},
            "seed": 3,
            "slippage_bps": 2,
            "commission_per_share": "0.01",
            "commission_min": 1,
            "liquidity_per_tick": 500,
            "account_type": "CASH",
            "tick_interval": 0.5,
            "volatility": 0.002,
            "initial_positions": {"SAP": [10, 170]},
            "session_close": "17:30",
            "session_timezone": "Europe/Berlin",
            "faults": {"fail_connects": 1},
            "api_host": None,  # a key left unset by a generic account model
        }
    )
    assert isinstance(broker, SimBroker)
    assert (broker.name, broker.currency, broker.initial_cash) == ("paper-eu", "EUR", D(50_000))
    assert broker.last_price_nowait(Instrument.stock("SAP")) == D("180.5")
    assert broker.account_type == "cash" and broker.leverage == D(1)
    assert broker.faults.fail_connects == 1
    assert broker.capabilities.currencies == frozenset({"EUR"})


async def test_from_config_positions_are_usable():
    broker = SimBroker.from_config(
        {
            "name": "demo",
            "prices": {"AAPL": 200},
            "initial_positions": {"AAPL": {"quantity": 5, "avg_price": 150}},
        }
    )
    await broker.connect()
    (held,) = await broker.get_positions()
    assert (held.symbol, held.quantity, held.avg_price, held.account) == ("AAPL", D(5), D(150), "demo")


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("initial_cash", -5, "initial_cash must be at least 0"),
        ("initial_cash", "lots", "initial_cash must be a number"),
        ("prices", {"AAPL": 0}, "prices.AAPL must be greater than 0"),
        ("prices", {"AAPL": "nan"}, "prices.AAPL must be a finite number"),
        ("latency", -1, "latency must be at least 0 seconds"),
        ("seed", 1.5, "seed must be a whole number"),
        ("slippage_bps", -1, "slippage_bps must be at least 0"),
        ("commission_percent", 50, "commission_percent must be at most 10"),
        ("liquidity_per_tick", 0, "liquidity_per_tick must be greater than 0"),
        ("account_type", "cashy", "account_type must be 'cash' or 'margin'"),
        ("leverage", "0.5", "leverage must be at least 1"),
        ("tick_interval", 0, "tick_interval must be greater than 0"),
        ("volatility", 2, "volatility must be at least 0 and below 0.5"),
        ("initial_positions", {"AAPL": [10]}, "initial_positions.AAPL must be [quantity, avg_price]"),
        ("initial_positions", {"AAPL": [0, 100]}, "initial_positions.AAPL quantity must be non-zero"),
        ("session_close", "25:00", "session_close must be a time of day"),
        ("session_timezone", "Mars/Olympus", "session_timezone 'Mars/Olympus' is not a known time zone"),
        ("faults", {"explode": 1}, "unknown fault 'explode'"),
        ("currency", "EURO", "currency must be a 3-letter code"),
        ("history_limit", 0, "history_limit must be a whole number of at least 1"),
    ],
)
def test_bad_values_name_the_key(key, value, says):
    with pytest.raises(ConfigError) as refused:
        SimBroker.from_config({"name": "paper", key: value})
    message = str(refused.value)
    assert message.startswith("sim account 'paper': ")
    assert says in message
    with pytest.raises(ValueError) as in_code:
        SimBroker(**{key: value})
    assert says in str(in_code.value)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'inital_cash'; allowed: .*initial_cash"):
        SimBroker.from_config({"inital_cash": 5})


def test_faults_and_clock_objects_are_kept_as_given():
    faults = SimFaults(reject_next=1)
    clock = ManualClock()
    broker = SimBroker(faults=faults, clock=clock)
    assert broker.faults is faults
    assert broker.now() == clock()


def test_a_clock_without_a_timezone_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimBroker(clock=lambda: datetime(2024, 1, 2, 15, 0))
    with pytest.raises(ValueError, match="clock must be a callable"):
        SimBroker(clock="noon")


def test_repr_shows_the_name_only():
    assert repr(SimBroker("paper-1")) == "<SimBroker 'paper-1'>"


def test_manual_clock_moves_only_forward_and_only_when_told():
    clock = ManualClock(datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
    assert clock() == clock() == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    assert clock.advance(90) == datetime(2024, 3, 1, 9, 31, 30, tzinfo=UTC)
    assert clock.advance(hours=1) == datetime(2024, 3, 1, 10, 31, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2024, 3, 1))
