"""The order status state machine and fill bookkeeping on ``Order``."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokers.models import LEGAL_TRANSITIONS, Fill, Order, OrderRequest, OrderStatus, Side

S = OrderStatus
D = Decimal
T0 = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)

# Written out by hand from the rules (terminal states are final; UNKNOWN may resolve to anything
# but PENDING; nothing goes back to PENDING; a partial fill can repeat but cannot be rejected),
# so a change to the table has to be made in two places on purpose.
EXPECTED = {
    S.PENDING: {
        S.SUBMITTED,
        S.ACCEPTED,
        S.PARTIALLY_FILLED,
        S.FILLED,
        S.CANCELLED,
        S.REJECTED,
        S.EXPIRED,
        S.UNKNOWN,
    },
    S.SUBMITTED: {S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.UNKNOWN},
    S.ACCEPTED: {S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.UNKNOWN},
    S.PARTIALLY_FILLED: {S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED, S.UNKNOWN},
    S.UNKNOWN: {S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED},
    S.FILLED: set(),
    S.CANCELLED: set(),
    S.REJECTED: set(),
    S.EXPIRED: set(),
}

ALL_PAIRS = list(itertools.product(OrderStatus, OrderStatus))


def make_order(status: OrderStatus = S.PENDING, quantity: str = "10") -> Order:
    request = OrderRequest(symbol="AAPL", side="BUY", quantity=quantity, client_order_id="C1")
    return Order(request=request, status=status, created_at=T0, updated_at=T0)


def make_fill(fill_id: str, quantity: str, price: str, at: datetime = T0) -> Fill:
    return Fill(
        fill_id=fill_id,
        account="sim",
        symbol="AAPL",
        side=Side.BUY,
        quantity=D(quantity),
        price=D(price),
        timestamp=at,
    )


def test_the_table_covers_every_status_and_matches_the_rules():
    assert set(LEGAL_TRANSITIONS) == set(OrderStatus)
    assert {status: set(targets) for status, targets in LEGAL_TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_transition(current: OrderStatus, new: OrderStatus, caplog):
    order = make_order(current)
    later = T0 + timedelta(seconds=5)
    with caplog.at_level(logging.WARNING, logger="brokers.orders"):
        changed = order.transition(new, at=later)
    if new in EXPECTED[current]:
        assert changed is True
        assert order.status is new
        assert order.updated_at == later
        assert not caplog.records
    else:
        assert changed is False
        assert order.status is current
        assert order.updated_at == T0
        if new is current:
            assert not caplog.records  # staying put is not an error worth a warning
        else:
            assert "refused illegal status change" in caplog.text


def test_transition_accepts_status_text():
    order = make_order()
    assert order.transition("accepted") is True
    assert order.status is S.ACCEPTED


def test_terminal_and_working_sets_split_the_statuses():
    for status in OrderStatus:
        assert status.is_terminal != status.is_working
        assert status.is_terminal == (not EXPECTED[status])


def test_a_fill_applied_twice_counts_once():
    order = make_order(S.ACCEPTED)
    fill = make_fill("F1", "4", "100")
    assert order.apply_fill(fill) is True
    assert order.apply_fill(fill) is False
    assert order.filled_quantity == D(4)
    assert order.avg_fill_price == D(100)
    assert order.status is S.PARTIALLY_FILLED
    assert [f.fill_id for f in order.fills] == ["F1"]


def test_fills_in_any_order_give_the_same_totals():
    fills = [make_fill("F1", "2", "100"), make_fill("F2", "3", "101"), make_fill("F3", "5", "102.5")]
    in_order, reversed_order = make_order(S.ACCEPTED), make_order(S.ACCEPTED)
    for fill in fills:
        in_order.apply_fill(fill)
    for fill in reversed(fills):
        reversed_order.apply_fill(fill)
    # (2*100 + 3*101 + 5*102.5) / 10 = 1015.5 / 10
    for order in (in_order, reversed_order):
        assert order.filled_quantity == D(10)
        assert order.avg_fill_price == D("101.55")
        assert order.status is S.FILLED
        assert order.remaining_quantity == D(0)


def test_partial_fills_walk_through_partially_filled_to_filled():
    order = make_order(S.SUBMITTED)
    order.apply_fill(make_fill("F1", "3", "10", T0 + timedelta(seconds=1)))
    assert order.status is S.PARTIALLY_FILLED and order.remaining_quantity == D(7)
    order.apply_fill(make_fill("F2", "3", "11", T0 + timedelta(seconds=2)))
    assert order.status is S.PARTIALLY_FILLED and order.updated_at == T0 + timedelta(seconds=2)
    order.apply_fill(make_fill("F3", "4", "12", T0 + timedelta(seconds=3)))
    assert order.status is S.FILLED
    assert order.avg_fill_price == D("11.1")  # (30 + 33 + 48) / 10


def test_a_fill_after_cancel_is_counted_but_the_order_stays_cancelled(caplog):
    order = make_order(S.ACCEPTED)
    order.transition(S.CANCELLED)
    with caplog.at_level(logging.WARNING, logger="brokers.orders"):
        assert order.apply_fill(make_fill("LATE", "2", "99")) is True
    assert order.status is S.CANCELLED
    assert order.filled_quantity == D(2)
    assert "LATE" in caplog.text


def test_a_late_status_cannot_revive_a_filled_order():
    order = make_order(S.ACCEPTED)
    order.apply_fill(make_fill("F1", "10", "100"))
    assert order.status is S.FILLED
    for stale in (S.ACCEPTED, S.PARTIALLY_FILLED, S.SUBMITTED, S.UNKNOWN, S.CANCELLED):
        assert order.transition(stale) is False
    assert order.status is S.FILLED


def test_known_fill_ids_survive_a_round_trip_through_the_fields():
    order = make_order(S.ACCEPTED)
    order.apply_fill(make_fill("F1", "4", "100"))
    copy = Order(**{f.name: getattr(order, f.name) for f in dataclasses.fields(order) if f.init})
    assert copy == order
    assert copy.apply_fill(make_fill("F1", "4", "100")) is False
    assert copy.filled_quantity == D(4)


def test_a_snapshot_copies_every_field():
    order = Order(
        request=OrderRequest(symbol="AAPL", side="BUY", quantity="10", client_order_id="C1"),
        account="acct",
        broker_order_id="B1",
        status=S.PARTIALLY_FILLED,
        filled_quantity=D(4),
        avg_fill_price=D(100),
        reject_code="CODE",
        reject_reason="why",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        fills=[make_fill("F1", "4", "100")],
    )
    defaults = Order(request=order.request)
    init_fields = [f.name for f in dataclasses.fields(Order) if f.init]
    # Every field differs from its default here, so one left out of the copy would show.
    assert all(getattr(order, name) != getattr(defaults, name) for name in init_fields if name != "request")
    copy = order.snapshot()
    assert copy == order
    assert all(getattr(copy, name) == getattr(order, name) for name in init_fields)
    assert copy.fills is not order.fills and copy.has_fill("F1")


def test_an_order_needs_a_request_and_aware_times():
    request = OrderRequest(symbol="AAPL", side="BUY", quantity="1")
    with pytest.raises(TypeError):
        Order(request={"symbol": "AAPL"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Order(request=request, created_at=datetime(2024, 1, 2))
    assert Order(request=OrderRequest(symbol="AAPL", side="BUY", quantity="1", account="a")).account == "a"
