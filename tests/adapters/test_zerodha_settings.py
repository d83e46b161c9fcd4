"""Zerodha settings, token expiry and the pure mapping rules (no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.adapters.zerodha import (
    ZerodhaBroker,
    asset_class_of,
    map_status,
    refusal_class,
    tag_for,
    token_expiry,
)
from brokers.errors import (
    ConfigError,
    InsufficientFundsError,
    InvalidSymbolError,
    MarketClosedError,
    OrderRejectedError,
)
from brokers.models import AssetClass, OrderStatus, new_client_order_id
from brokers.registry import BrokerFactory

ROOT = "http://127.0.0.1:9"


def test_factory_builds_it_and_ignores_the_generic_keys():
    broker = BrokerFactory.create(
        {
            "type": "zerodha",
            "name": "kite",
            "root": ROOT,
            "default": True,
            "weight": 2.0,
            "risk": None,
            "label": "Kite",
            "currency": "USD",
        }
    )
    assert isinstance(broker, ZerodhaBroker)
    assert (broker.name, broker.live, broker.currency) == ("kite", False, "INR")
    assert broker.session_expires_at is None  # no token loaded yet


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"product": "BO"}, "'product' must be one of CNC, MIS, NRML"),
        ({"variety": "co"}, "'variety' must be one of amo, regular"),
        ({"exchange": "NYSE"}, "'exchange' must be one of"),
        ({"poll_interval": 0.01}, "'poll_interval' must be a number of seconds from 0.2"),
        ({"poll_interval": "soon"}, "'poll_interval'"),
        ({"timeout": 0}, "'timeout'"),
        ({"root": "ftp://example"}, "'root' must be an http(s) URL"),
        ({"token_issued_at": "yesterday"}, "'token_issued_at' must be an ISO date"),
        ({"live": "yes"}, "'live' must be true or false"),
        ({"colour": "red"}, "unknown zerodha setting 'colour'; allowed: name, live"),
        ({"access_token": "x"}, "secret and never belongs in the config file"),
        ({"api_key": "x"}, "set-creds kite"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(settings, needle):
    with pytest.raises(ConfigError) as caught:
        ZerodhaBroker.from_config({"name": "kite", "root": ROOT, **settings})
    assert needle in str(caught.value)


def test_a_secret_put_in_the_config_is_not_echoed_back():
    with pytest.raises(ConfigError) as caught:
        ZerodhaBroker.from_config({"name": "kite", "root": ROOT, "access_token": "s3cr3t-token-value"})
    assert "s3cr3t-token-value" not in str(caught.value)


def test_paper_is_refused_without_a_test_server_because_kite_has_none():
    with pytest.raises(ConfigError) as caught:
        ZerodhaBroker.from_config({"name": "kite"})
    assert "live = true" in str(caught.value)
    assert ZerodhaBroker.from_config({"name": "kite", "live": True}).live


def test_settings_are_normalised():
    broker = ZerodhaBroker.from_config(
        {
            "name": "kite",
            "root": ROOT,
            "exchange": "nfo",
            "product": "nrml",
            "variety": "AMO",
            "poll_interval": "0.5",
            "timeout": 3,
        }
    )
    assert broker.capabilities.short_selling  # NRML may sell short
    assert broker.instrument("NIFTY24DECFUT") == ("NFO", "NIFTY24DECFUT")
    assert broker.instrument("nse:infy") == ("NSE", "INFY")
    with pytest.raises(InvalidSymbolError):
        broker.instrument("NSE:")


@pytest.mark.parametrize(
    ("issued_utc", "expires_utc"),
    [
        # 05:59 IST: dies a minute later, the same morning
        (datetime(2024, 12, 10, 0, 29, tzinfo=UTC), datetime(2024, 12, 10, 0, 30, tzinfo=UTC)),
        # 06:00 IST sharp: a fresh token lives until the next morning
        (datetime(2024, 12, 10, 0, 30, tzinfo=UTC), datetime(2024, 12, 11, 0, 30, tzinfo=UTC)),
        # 23:30 IST: the next morning
        (datetime(2024, 12, 10, 18, 0, tzinfo=UTC), datetime(2024, 12, 11, 0, 30, tzinfo=UTC)),
        # 02:00 IST on the 11th is still the evening of the 10th in UTC
        (datetime(2024, 12, 10, 20, 30, tzinfo=UTC), datetime(2024, 12, 11, 0, 30, tzinfo=UTC)),
    ],
)
def test_token_expiry_is_the_next_six_am_in_india(issued_utc, expires_utc):
    assert token_expiry(issued_utc) == expires_utc


def test_configured_issue_time_drives_the_expiry_and_bare_times_are_ist():
    broker = ZerodhaBroker.from_config(
        {"name": "kite", "root": ROOT, "token_issued_at": "2024-12-10T08:15:00"}
    )
    broker._adopt_token("tok-one")
    assert broker.session_expires_at == datetime(2024, 12, 11, 0, 30, tzinfo=UTC)
    broker._adopt_token("tok-one")  # reconnecting with the same token changes nothing
    assert broker.session_expires_at == datetime(2024, 12, 11, 0, 30, tzinfo=UTC)


def test_a_new_token_is_timed_from_when_it_was_loaded():
    now = datetime(2024, 12, 12, 4, 0, tzinfo=UTC)  # 09:30 IST
    broker = ZerodhaBroker.from_config(
        {"name": "kite", "root": ROOT, "token_issued_at": "2024-12-10T08:15:00"}
    )
    broker._clock = lambda: now
    broker._adopt_token("tok-one")
    broker._adopt_token("tok-two")
    assert broker.session_expires_at == datetime(2024, 12, 13, 0, 30, tzinfo=UTC)
    assert not broker.needs_new_token
    broker._clock = lambda: datetime(2024, 12, 13, 0, 31, tzinfo=UTC)
    assert broker.needs_new_token


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        ("PUT ORDER REQ RECEIVED", 0, OrderStatus.SUBMITTED),
        ("VALIDATION PENDING", 0, OrderStatus.SUBMITTED),
        ("OPEN PENDING", 0, OrderStatus.SUBMITTED),
        ("AMO REQ RECEIVED", 0, OrderStatus.SUBMITTED),
        ("OPEN", 0, OrderStatus.ACCEPTED),
        ("TRIGGER PENDING", 0, OrderStatus.ACCEPTED),
        ("MODIFY PENDING", 0, OrderStatus.ACCEPTED),
        ("CANCEL PENDING", 0, OrderStatus.ACCEPTED),
        ("OPEN", 2, OrderStatus.PARTIALLY_FILLED),
        ("COMPLETE", 5, OrderStatus.FILLED),
        ("CANCELLED", 2, OrderStatus.CANCELLED),
        ("CANCELLED AMO", 0, OrderStatus.CANCELLED),
        ("REJECTED", 0, OrderStatus.REJECTED),
    ],
)
def test_kite_statuses_map_to_ours(status, filled, expected):
    assert map_status(status, Decimal(filled)) is expected


def test_refusals_are_classified_by_error_type_and_message():
    assert refusal_class("anything", "MarginException") is InsufficientFundsError
    assert (
        refusal_class("Insufficient funds. Required margin is 10", "GeneralException")
        is InsufficientFundsError
    )
    assert refusal_class("Invalid `tradingsymbol`.", "InputException") is InvalidSymbolError
    assert (
        refusal_class(
            "Markets are closed right now. Use GTT for placing long standing orders.", "InputException"
        )
        is MarketClosedError
    )
    assert refusal_class("Insufficient stock holding", "HoldingException") is OrderRejectedError


def test_tags_fit_kite_and_our_ids_pass_unchanged():
    ours = new_client_order_id()
    assert tag_for(ours) == ours
    long = tag_for("desk-7_strategy-alpha-0001")
    assert len(long) == 20 and long.isalnum() and long == tag_for("desk-7_strategy-alpha-0001")
    assert long != tag_for("desk-7_strategy-alpha-0002")


def test_asset_class_from_exchange_and_symbol():
    assert asset_class_of("NSE", "INFY") is AssetClass.STOCK
    assert asset_class_of("NFO", "NIFTY24DECFUT") is AssetClass.FUTURE
    assert asset_class_of("NFO", "NIFTY24D1924500CE") is AssetClass.OPTION
    assert asset_class_of("MCX", "GOLDM24DECFUT") is AssetClass.FUTURE
