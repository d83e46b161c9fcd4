from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass, OrderRequest, RejectCode
from brokers.routing import Router, Routes, RoutingRule, split_quantity
from brokers.sim import SimBroker

ACCOUNTS = ["us", "india", "crypto", "fx"]


def request(**fields):
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 1, **fields})


RULES = [
    RoutingRule(account="india", currency="inr"),
    RoutingRule(account="india", exchange="nse"),
    RoutingRule(account="crypto", asset_class=AssetClass.CRYPTO),
    RoutingRule(account="fx", symbol="*.FX"),
    RoutingRule(account="gone", symbol="*"),  # names an account that no longer exists
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"account": "fx"}, "fx"),
        ({"currency": "INR"}, "india"),
        ({"exchange": "NSE", "symbol": "INFY"}, "india"),
        ({"asset_class": "CRYPTO", "symbol": "BTC/USD"}, "crypto"),
        ({"symbol": "EURUSD.FX"}, "fx"),
        ({}, "us"),
    ],
)
def test_route_order_of_precedence(fields, expected):
    assert Router(RULES, "us").route(request(**fields), ACCOUNTS) == expected


def test_explicit_account_wins_even_if_unknown():
    # The caller then refuses it by name instead of sending the order elsewhere.
    assert Router(RULES, "us").route(request(account="nowhere"), ACCOUNTS) == "nowhere"


def test_first_matching_rule_wins():
    rules = [RoutingRule(account="fx", currency="INR"), RoutingRule(account="india", currency="INR")]
    assert Router(rules, None).route(request(currency="INR"), ACCOUNTS) == "fx"


def test_rule_with_every_criterion_needs_all_of_them():
    rule = RoutingRule(
        account="india", asset_class=AssetClass.STOCK, exchange="NSE", currency="INR", symbol="INF*"
    )
    assert rule.matches(request(symbol="INFY", exchange="NSE", currency="INR"))
    assert not rule.matches(request(symbol="TCS", exchange="NSE", currency="INR"))
    assert not rule.matches(request(symbol="INFY", exchange="BSE", currency="INR"))


def test_no_route_without_default():
    assert Router(RULES[:1], None).route(request(), ACCOUNTS) is None


def test_default_that_is_not_an_account_is_no_route():
    assert Router([], "closed").route(request(), ACCOUNTS) is None


def test_split_one_one_one_of_one_hundred():
    parts = split_quantity(Decimal(100), {"a": 1, "b": 1, "c": 1})
    assert parts == {"a": Decimal(34), "b": Decimal(33), "c": Decimal(33)}


def test_split_by_weight_largest_remainder():
    assert split_quantity(Decimal(7), {"a": 2, "b": 1}) == {"a": Decimal(5), "b": Decimal(2)}
    assert split_quantity(Decimal(10), {"a": 0.5, "b": 0.3, "c": 0.2}) == {
        "a": Decimal(5),
        "b": Decimal(3),
        "c": Decimal(2),
    }


def test_split_remainder_tie_goes_to_larger_weight():
    # Equal remainders and weights: the account listed first; otherwise the larger weight.
    assert split_quantity(Decimal(3), {"small": 1, "big": 1}) == {"small": Decimal(2), "big": Decimal(1)}
    assert split_quantity(Decimal(1), {"small": 1, "big": 1.0000001}) == {"big": Decimal(1)}


def test_split_leaves_out_zero_weights_and_empty_parts():
    assert split_quantity(Decimal(1), {"a": 1, "b": 1, "c": 0}) == {"a": Decimal(1)}


def test_split_fractional_where_allowed():
    parts = split_quantity(Decimal("10.5"), {"whole": 1, "frac": 1}, {"frac": True})
    assert parts == {"whole": Decimal(5), "frac": Decimal("5.5")}


def test_split_fraction_that_no_account_can_hold():
    with pytest.raises(ValueError, match="whole units"):
        split_quantity(Decimal("10.5"), {"a": 1, "b": 1})


@pytest.mark.parametrize("weights", [{}, {"a": 0}, {"a": -1, "b": 2}, {"a": float("nan")}])
def test_split_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        split_quantity(Decimal(10), weights)


@settings(max_examples=200, deadline=None)
@given(
    quantity=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2),
    weights=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6),
    fractional=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_split_properties(quantity, weights, fractional):
    names = [f"acct{i}" for i in range(len(weights))]
    weight_map = dict(zip(names, weights, strict=True))
    frac_map = dict(zip(names, fractional, strict=False))
    try:
        parts = split_quantity(quantity, weight_map, frac_map)
    except ValueError:
        positive = [n for n in names if weight_map[n] > 0]
        assert not positive or (quantity % 1 and not any(frac_map[n] for n in positive))
        return
    assert sum(parts.values()) == quantity
    total = sum(weights)
    for name, part in parts.items():
        assert part > 0 and weight_map[name] > 0
        if not frac_map[name]:
            assert part == part.to_integral_value()
        exact = quantity * weight_map[name] / total
        # Largest remainder: nobody is more than one unit (plus any leftover fraction) off.
        assert abs(part - exact) < 2


def test_routes_pick_and_split_as_the_order_path_does():
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("us", SimBroker("us"), default=True)
    manager.add_broker("in", SimBroker("in", currency="INR"), weight=0)
    routes = Routes(manager, Router([RoutingRule(account="in", currency="INR")]))
    assert routes.account_for(OrderRequest(symbol="INFY", side="BUY", quantity=1, currency="INR")) == "in"
    assert routes.account_for(OrderRequest(symbol="AAPL", side="BUY", quantity=1)) == "us"  # the default
    assert routes.account_for(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="elsewhere")) == (
        "elsewhere"
    )
    code, reason = routes.unknown_account(["us", "elsewhere"])
    assert code is RejectCode.UNKNOWN_ACCOUNT and "'elsewhere'" in reason and "us, in" in reason
    assert routes.unknown_account(["us", "in"]) is None
    assert routes.split(OrderRequest(symbol="AAPL", side="BUY", quantity=3)) == {"us": Decimal(3)}
    assert routes.split(OrderRequest(symbol="AAPL", side="BUY", quantity=3), {"nowhere": 1})[0] is (
        RejectCode.UNKNOWN_ACCOUNT
    )
    code, reason = routes.split(OrderRequest(symbol="AAPL", side="BUY", quantity=3), {"us": 0})
    assert code is RejectCode.UNSUPPORTED and "cannot split" in reason
    manager.set_default(None)
    assert Routes(manager, None).account_for(OrderRequest(symbol="AAPL", side="BUY", quantity=1)) is None
    assert Routes.no_route(OrderRequest(symbol="AAPL", side="BUY", quantity=1))[0] is RejectCode.NO_ROUTE


class ListsAnything(SimBroker):
    """An account that cannot tell which symbols it lists (as a real broker without a symbol
    directory): it trades whatever names its currency or none, as ``Broker.trades`` says."""

    def trades(self, instrument):
        return instrument.currency is None or instrument.currency == self.currency


def _order(symbol, **fields):
    return OrderRequest(symbol=symbol, side="BUY", quantity=1, **fields)


def test_an_unrouted_symbol_goes_to_an_account_that_trades_it():
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("us", SimBroker("us", prices={"AAPL": 200}), default=True)
    manager.add_broker("us-cash", SimBroker("us-cash", prices={"AAPL": 200, "SPY": 590}))
    manager.add_broker("in", SimBroker("in", currency="INR", prices={"INFY": 1875}))
    routes = Routes(manager, Router([], "us"))
    # The INR share whose price is on screen goes to the INR account, not the USD default.
    assert routes.account_for(_order("INFY")) == "in"
    assert routes.account_for(_order("INFY", currency="INR")) == "in"
    # The default keeps what it trades; another account takes what only it lists.
    assert routes.account_for(_order("AAPL")) == "us"
    assert routes.account_for(_order("SPY")) == "us-cash"
    # Nothing lists it: the default, whose refusal says why.
    assert routes.account_for(_order("ZZZZ")) == "us"
    # The preview names the account the order would reach.
    preview_targets = routes.split(_order("INFY"), {"in": 1})
    assert preview_targets == {"in": Decimal(1)}


def test_rules_and_an_explicit_account_still_come_first():
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("us", SimBroker("us", prices={"AAPL": 200}), default=True)
    manager.add_broker("in", SimBroker("in", currency="INR", prices={"INFY": 1875}))
    routes = Routes(manager, Router([RoutingRule(account="us", symbol="INF*")], "us"))
    assert routes.account_for(_order("INFY")) == "us"
    assert routes.account_for(_order("INFY", account="in")) == "in"
    assert Routes(manager, Router([], "us")).account_for(_order("INFY", account="us")) == "us"


def test_a_price_in_another_currency_moves_an_order_only_off_a_default_that_has_none():
    manager = MultiBrokerManager(heartbeat_interval=3600)
    # "us" stands for an account that knows no prices until asked (no symbol directory).
    manager.add_broker("us", ListsAnything("us", prices={}), default=True)
    manager.add_broker("ib", ListsAnything("ib", prices={"AAPL": 200}))
    manager.add_broker("kite", ListsAnything("kite", currency="INR", prices={"INFY": 1875}))
    routes = Routes(manager, Router([], "us"))
    # Listed in the default's own currency elsewhere: the default keeps it.
    assert routes.account_for(_order("AAPL")) == "us"
    # Priced only in INR: the INR account.
    assert routes.account_for(_order("INFY")) == "kite"
    # Priced nowhere: the default, which trades anything in its currency.
    assert routes.account_for(_order("ZZZZ")) == "us"
    # An INR order no rule places goes to the account that trades INR, priced or not.
    assert routes.account_for(_order("TCS", currency="INR")) == "kite"
    # Once the default has a price of its own, it keeps even the dual-listed symbol.
    manager.get("us").set_price("INFY", 18)
    assert routes.account_for(_order("INFY")) == "us"


def test_what_the_default_was_seen_to_list_is_asked_again_of_a_new_default():
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("us", SimBroker("us", prices={"INFY": 18}), default=True)
    manager.add_broker("in", SimBroker("in", currency="INR", prices={"INFY": 1875}))
    routes = Routes(manager, Router([], "us"))
    assert routes.account_for(_order("INFY")) == "us"
    assert routes.account_for(_order("INFY")) == "us"  # remembered
    # Another broker under the same name that does not list it: asked again, not remembered.
    manager.remove_broker("us")
    manager.add_broker("us", SimBroker("us", prices={"AAPL": 200}), default=True)
    assert routes.account_for(_order("INFY")) == "in"
    # An order in another currency or asset class is a different question.
    manager.get("us").set_price("INFY", 18)
    assert routes.account_for(_order("INFY")) == "us"
    assert routes.account_for(_order("INFY", currency="INR")) == "in"
