"""IB settings, capabilities and the mapping of requests, contracts, statuses and errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.adapters.ibkr import (
    LIVE_PORT,
    PAPER_PORT,
    IBKRBroker,
    contract_for,
    effective_status,
    error_for,
    ib_order_for,
    request_from_ib,
    symbol_for,
)
from brokers.adapters.ibkr.api import ib_api
from brokers.errors import (
    BrokerAPIError,
    ConfigError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from brokers.models import AssetClass, OrderRequest, OrderType, TimeInForce
from brokers.registry import BrokerFactory

# -- settings -------------------------------------------------------------------------------


def test_defaults_are_a_paper_tws_on_this_machine():
    broker = IBKRBroker.from_config({"name": "ib-paper"})
    assert (broker.host, broker.port, broker.client_id, broker.account_code) == (
        "127.0.0.1",
        PAPER_PORT,
        1,
        None,
    )
    assert (broker.timeout, broker.readonly, broker.live, broker.currency) == (10.0, False, False, "USD")
    assert IBKRBroker.from_config({"name": "ib-live", "live": True}).port == LIVE_PORT


def test_every_setting_is_taken_and_generic_keys_are_ignored():
    broker = BrokerFactory.create(
        {
            "type": "ibkr",
            "name": "ib-gw",
            "live": True,
            "currency": "eur",
            "host": "gateway.local",
            "port": 4001,
            "client_id": 17,
            "account": "U1234567",
            "timeout": 2.5,
            "readonly": True,
            "default": True,
            "weight": 2.0,
            "risk": {"max_quantity": 10},
            "label": "IB gateway",
        }
    )
    assert isinstance(broker, IBKRBroker)
    assert (broker.name, broker.live, broker.currency, broker.host, broker.port) == (
        "ib-gw",
        True,
        "EUR",
        "gateway.local",
        4001,
    )
    assert (broker.client_id, broker.account_code, broker.timeout, broker.readonly) == (
        17,
        "U1234567",
        2.5,
        True,
    )
    assert repr(broker) == "<IBKRBroker 'ib-gw' LIVE>"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"name": "ib", "password": "x"}, "'password'"),
        ({"name": "ib", "port": 0}, "'port'"),
        ({"name": "ib", "port": 70000}, "'port'"),
        ({"name": "ib", "port": True}, "'port'"),
        ({"name": "ib", "port": "seven"}, "'port'"),
        ({"name": "ib", "client_id": -1}, "'client_id'"),
        ({"name": "ib", "client_id": 1.5}, "'client_id'"),
        ({"name": "ib", "timeout": 0}, "'timeout'"),
        ({"name": "ib", "timeout": "10"}, "'timeout'"),
        ({"name": "ib", "timeout": 301}, "'timeout'"),
        ({"name": "ib", "readonly": "yes"}, "'readonly'"),
        ({"name": "ib", "live": "true"}, "'live'"),
        ({"name": "ib", "account": "DU 123"}, "'account'"),
        ({"name": "ib", "account": 1234567}, "'account'"),
        ({"name": "ib", "host": ""}, "'host'"),
        ({"name": "ib", "host": "my host"}, "'host'"),
        ({"name": "ib", "currency": "US"}, "'currency'"),
        ({"name": ""}, "'name'"),
        ({}, "'name'"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(settings, named):
    with pytest.raises(ConfigError, match=named) as caught:
        IBKRBroker.from_config(settings)
    assert "must" in str(caught.value) or "allowed" in str(caught.value)


def test_port_may_be_written_as_text():
    assert IBKRBroker.from_config({"name": "ib", "port": " 4002 "}).port == 4002


def test_capabilities_are_what_ib_takes():
    caps = IBKRBroker("ib").capabilities
    assert caps.order_types == frozenset(OrderType) and caps.time_in_force == frozenset(TimeInForce)
    assert caps.asset_classes == {
        AssetClass.STOCK,
        AssetClass.OPTION,
        AssetClass.FUTURE,
        AssetClass.FOREX,
        AssetClass.CFD,
    }
    assert "OTHER" in caps.supports(
        OrderRequest(symbol="XYZ WAR", side="BUY", quantity=1, asset_class="OTHER")
    )
    assert caps.bulk_cancel and caps.streaming_updates and caps.short_selling
    assert not caps.fractional_quantities and not caps.session_expiry
    assert IBKRBroker("ib").session_expires_at is None
    assert "CRYPTO" in caps.supports(
        OrderRequest(symbol="BTC/USD", side="BUY", quantity=1, asset_class="CRYPTO")
    )
    assert "whole" in caps.supports(OrderRequest(symbol="AAPL", side="BUY", quantity="0.5"))


# -- contracts and orders -------------------------------------------------------------------


def order(**fields) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 1, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ("STK", "AAPL", "", 0.0, "", "SMART", "USD", "")),
        (
            {"symbol": "BRK B", "exchange": "NYSE", "currency": "usd"},
            ("STK", "BRK B", "", 0.0, "", "NYSE", "USD", ""),
        ),
        (
            {"symbol": "SPY   251219P00450500", "asset_class": "OPTION"},
            ("OPT", "SPY", "20251219", 450.5, "P", "SMART", "USD", ""),
        ),
        (
            {"symbol": "AAPL 20240119 150 CALL", "asset_class": "OPTION", "exchange": "CBOE"},
            ("OPT", "AAPL", "20240119", 150.0, "C", "CBOE", "USD", ""),
        ),
        (
            {"symbol": "ES 202503", "asset_class": "FUTURE", "exchange": "CME"},
            ("FUT", "ES", "202503", 0.0, "", "CME", "USD", ""),
        ),
        (
            {"symbol": "FGBLH5", "asset_class": "FUTURE", "exchange": "EUREX", "currency": "EUR"},
            ("FUT", "", "", 0.0, "", "EUREX", "EUR", "FGBLH5"),
        ),
        ({"symbol": "GBP/JPY", "asset_class": "FOREX"}, ("CASH", "GBP", "", 0.0, "", "IDEALPRO", "JPY", "")),
        ({"symbol": "AAPL CFD", "asset_class": "CFD"}, ("CFD", "AAPL", "", 0.0, "", "SMART", "USD", "")),
        (
            {"symbol": "IBDE40", "asset_class": "CFD", "currency": "EUR"},
            ("CFD", "IBDE40", "", 0.0, "", "SMART", "EUR", ""),
        ),
    ],
)
def test_contract_for(fields, expected):
    c = contract_for(order(**fields))
    assert (
        c.secType,
        c.symbol,
        c.lastTradeDateOrContractMonth,
        c.strike,
        c.right,
        c.exchange,
        c.currency,
        c.localSymbol,
    ) == expected


def test_option_contract_carries_the_multiplier():
    assert contract_for(order(symbol="AAPL240119C00150000", asset_class="OPTION")).multiplier == "100"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ("MKT", None, None, None)),
        ({"order_type": "LIMIT", "limit_price": "10.25"}, ("LMT", 10.25, None, None)),
        ({"order_type": "STOP", "stop_price": "9"}, ("STP", None, 9.0, None)),
        ({"order_type": "STOP_LIMIT", "stop_price": "9", "limit_price": "8.5"}, ("STP LMT", 8.5, 9.0, None)),
        ({"order_type": "TRAILING_STOP", "trail_amount": "0.5"}, ("TRAIL", None, 0.5, None)),
        ({"order_type": "TRAILING_STOP", "trail_percent": "1.5"}, ("TRAIL", None, None, 1.5)),
    ],
)
def test_ib_order_for(fields, expected):
    wanted = order(time_in_force="GTC", **fields)
    ib_order = ib_order_for(wanted, "DU1")
    unset = ib_api.Order().lmtPrice

    def value(x):
        return None if x == unset else x

    assert (
        ib_order.orderType,
        value(ib_order.lmtPrice),
        value(ib_order.auxPrice),
        value(ib_order.trailingPercent),
    ) == expected
    assert (ib_order.action, ib_order.totalQuantity, ib_order.tif) == ("BUY", 1.0, "GTC")
    assert (ib_order.orderRef, ib_order.account, ib_order.transmit) == (wanted.client_order_id, "DU1", True)


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (ib_api.Contract(secType="STK", symbol="AAPL", currency="USD"), ("AAPL", AssetClass.STOCK)),
        (
            ib_api.Contract(
                secType="OPT",
                symbol="SPY",
                lastTradeDateOrContractMonth="20251219",
                strike=450.5,
                right="P",
                multiplier="100",
            ),
            ("SPY251219P00450500", AssetClass.OPTION),
        ),
        (
            ib_api.Contract(
                secType="FUT", symbol="ES", lastTradeDateOrContractMonth="20250321", localSymbol="ESH5"
            ),
            ("ES 202503", AssetClass.FUTURE),
        ),
        (
            ib_api.Contract(secType="CASH", symbol="EUR", currency="USD", localSymbol="EUR.USD"),
            ("EUR.USD", AssetClass.FOREX),
        ),
        (ib_api.Contract(secType="CRYPTO", symbol="BTC", currency="USD"), ("BTC", AssetClass.CRYPTO)),
        # A CFD is never its underlying, nor a security type nothing here models a stock.
        (ib_api.Contract(secType="CFD", symbol="IBDE40", currency="EUR"), ("IBDE40 CFD", AssetClass.CFD)),
        (ib_api.Contract(secType="CFD", symbol="AAPL", currency="USD"), ("AAPL CFD", AssetClass.CFD)),
        (ib_api.Contract(secType="WAR", symbol="XYZ", currency="EUR"), ("XYZ WAR", AssetClass.OTHER)),
        (ib_api.Contract(secType="BOND", symbol="912828YK0"), ("912828YK0 BOND", AssetClass.OTHER)),
    ],
)
def test_symbol_for(contract, expected):
    assert symbol_for(contract) == expected


@pytest.mark.parametrize(
    ("ib_fields", "expected"),
    [
        ({"orderType": "MKT"}, (OrderType.MARKET, None, None, None)),
        ({"orderType": "LMT", "lmtPrice": 148.5}, (OrderType.LIMIT, Decimal("148.5"), None, None)),
        ({"orderType": "STP", "auxPrice": 140.0}, (OrderType.STOP, None, Decimal(140), None)),
        (
            {"orderType": "STP LMT", "lmtPrice": 139.0, "auxPrice": 140.0},
            (OrderType.STOP_LIMIT, Decimal(139), Decimal(140), None),
        ),
        ({"orderType": "TRAIL", "trailingPercent": 2.0}, (OrderType.TRAILING_STOP, None, None, Decimal(2))),
        ({"orderType": "REL", "lmtPrice": 150.0}, (OrderType.LIMIT, Decimal(150), None, None)),
        ({"orderType": "MOC"}, (OrderType.MARKET, None, None, None)),
    ],
)
def test_request_from_ib_for_orders_placed_elsewhere(ib_fields, expected):
    ib_order = ib_api.Order(action="SELL", totalQuantity=25.0, tif="GTD", permId=123456789, **ib_fields)
    rebuilt = request_from_ib(ib_api.Contract(secType="STK", symbol="AAPL", currency="USD"), ib_order)
    assert (rebuilt.order_type, rebuilt.limit_price, rebuilt.stop_price, rebuilt.trail_percent) == expected
    assert (rebuilt.side.value, rebuilt.quantity, rebuilt.time_in_force) == ("SELL", 25, TimeInForce.GTC)
    assert rebuilt.client_order_id == "IB123456789"


def test_request_from_ib_keeps_our_client_order_id():
    ib_order = ib_api.Order(
        action="BUY", totalQuantity=1.0, orderType="MKT", tif="DAY", orderRef="TC0123456789ABCDEF01"
    )
    assert (
        request_from_ib(ib_api.Contract(secType="STK", symbol="AAPL"), ib_order).client_order_id
        == "TC0123456789ABCDEF01"
    )


# -- statuses and errors ----------------------------------------------------------------------


def trade(status: str, *log: tuple[str, int]):
    now = datetime.now(UTC)
    return ib_api.Trade(
        orderStatus=ib_api.OrderStatus(status=status),
        log=[ib_api.TradeLogEntry(now, s, "", code) for s, code in log],
    )


def test_effective_status_skips_what_the_library_made_up():
    # A refused cancel and a notice do not end a working order, whatever the library set.
    assert effective_status(trade("Cancelled", ("Submitted", 0), ("Cancelled", 10148))) == ("Submitted", 0)
    assert effective_status(trade("Cancelled", ("Submitted", 0), ("Cancelled", 161))) == ("Submitted", 0)
    assert effective_status(trade("ValidationError", ("Submitted", 0), ("ValidationError", 399))) == (
        "Submitted",
        0,
    )
    assert effective_status(trade("Cancelled", ("PendingSubmit", 0), ("Cancelled", 201))) == (
        "Cancelled",
        201,
    )
    assert effective_status(trade("Filled")) == ("Filled", 0)


@pytest.mark.parametrize(
    ("code", "text", "error"),
    [
        (200, "No security definition has been found for the request", InvalidSymbolError),
        (
            201,
            "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR "
            "EQUITY WITH LOAN VALUE [1000.00 USD] MUST EXCEED THE INITIAL MARGIN [1500.00 USD]",
            InsufficientFundsError,
        ),
        (201, "Order rejected - reason:The contract is not available for short sale.", OrderRejectedError),
        (
            110,
            "The price does not conform to the minimum price variation for this contract.",
            OrderRejectedError,
        ),
        (10147, "OrderId 12 that needs to be cancelled is not found.", OrderNotFoundError),
        (10148, "OrderId 12 that needs to be cancelled cannot be cancelled, state: Filled.", BrokerAPIError),
    ],
)
def test_error_for(code, text, error):
    raised = error_for(code, text, "ib")
    assert type(raised) is error and raised.code == code and raised.definite
    assert str(raised) == f"ib: IB {code}: {text}"


# -- executions ---------------------------------------------------------------------------------


def test_execution_ledger_takes_corrections_in_place_of_what_they_correct():
    from brokers.adapters.ibkr.executions import ExecutionLedger

    ledger = ExecutionLedger()
    assert ledger.counted_as("0000e0d5.6596a4e1.01.01") == "0000e0d5.6596a4e1.01.01"
    assert ledger.counted_as("0000e0d5.6596a4e1.02.01") == "0000e0d5.6596a4e1.02.01"  # another execution
    assert ledger.counted_as("0000e0d5.6596a4e1.01.02") == "0000e0d5.6596a4e1.01.01"
    assert ledger.counted_as("0000e0d5.6596a4e1.01.0a") == "0000e0d5.6596a4e1.01.01"  # hex: 0a > 09
    assert ledger.counted_as("0000e0d5.6596a4e1.01.01") is None  # the original, replayed late
    assert ledger.counted_as("0000e0d5.6596a4e1.01.02") is None
    assert ledger.counted_as("plain") == "plain"
