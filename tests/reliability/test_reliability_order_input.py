"""Bad order input, generated: every case is either a valid order or refused with a message that
names the field; nothing crashes, and nothing refused reaches the journal or a broker."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from reliability_rig import CountingSim, Rig, note

from brokers.models import (
    MAX_DECIMALS,
    MAX_PRICE,
    MAX_QUANTITY,
    AssetClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    decimal_places,
    describe_validation_error,
    field_errors,
)

CATEGORY = "bad input: orders"
FIELDS = tuple(OrderRequest.model_fields)
# A message a person reads next to a field: a sentence, not a dump of the value.
MESSAGE_LIMIT = 300


def generated(cases: int) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- values ----------------------------------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.integers(min_value=10**300, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
)

# Decimals built from an integer and a scale: st.decimals() costs several times as much to draw.
scaled = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(-(10**14), 10**14),
    st.integers(-3, 12),
)

number_text = st.one_of(
    scaled.map(str),
    st.sampled_from(
        [
            "10",
            " 5 ",
            "1,000",
            "1_000",
            "1e3",
            "1E+999999",
            "-1E+999999",
            "1e-999999",
            "NaN",
            "sNaN",
            "-Infinity",
            "inf",
            "0",
            "-0",
            "0.000000001",
            "12.3456789",
            "0x10",
            "٣",
            "1/2",
            "",
            "   ",
            "10 shares",
            "1.2.3",
            "+7",
            "9" * 60,
            "0." + "0" * 40 + "1",
            "1.00000000000000000000000000001",
            "999999999.000000000000000000001",
            "2.500000000",
            "12345678.12345678",
            "x" * 5000,
        ]
    ),
)

amount = st.one_of(
    st.integers(-5, 10**10),
    st.integers(min_value=10**20),
    st.integers(max_value=-(10**20)),
    st.floats(allow_nan=True, allow_infinity=True),
    scaled,
    st.sampled_from(
        [
            Decimal("sNaN"),
            Decimal("NaN"),
            Decimal("-Infinity"),
            Decimal("1E+999999"),
            Decimal("1E-999999"),
            Decimal("-0"),
            Decimal("0.123456789"),
            MAX_QUANTITY,
            MAX_QUANTITY + 1,
            Decimal("1e-8"),
        ]
    ),
    number_text,
)


def enum_values(enum) -> st.SearchStrategy[Any]:
    names = [member.value for member in enum]
    return st.one_of(
        st.sampled_from(list(enum)),
        st.sampled_from(names),
        st.sampled_from(names).map(str.lower),
        st.sampled_from(names).map(lambda v: f"  {v.title().replace('_', '-')} "),
    )


symbols = st.one_of(
    st.sampled_from(
        [
            "AAPL",
            "brk.b",
            " msft ",
            "RELIANCE",
            "NIFTY24DECFUT",
            "BTC/USD",
            "ES=F",
            "^GSPC",
            "EUR.USD",
            "7203:T",
        ]
    ),
    st.text(min_size=0, max_size=60),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./:-_^=& ", min_size=1, max_size=45),
    st.sampled_from(["", " ", "\x00AAPL", "AAPL\n", "ＡＡＰＬ", "AAPL;DROP", "-AAPL", ".X", "A" * 41]),
)

names = st.one_of(
    st.none(),
    st.sampled_from(["paper-us", "alpaca_main", "kite.1", "", "  ", "a" * 65, "bad name", "naïve", "acct/1"]),
    st.text(max_size=70),
)
currencies = st.one_of(
    st.none(), st.sampled_from(["USD", "inr", " eur ", "US", "DOLLARS", "12$", ""]), st.text(max_size=4)
)
client_ids = st.one_of(
    st.sampled_from(["TC0001", "my-order_1", "", "a" * 48, "a" * 49, "id with space", "ÆØÅ", "x\n"]),
    st.text(max_size=50),
)


def either(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = junk) -> st.SearchStrategy[Any]:
    """Mostly the kind of value a field wants (so deeper rules get reached), sometimes junk."""
    return st.one_of(good, good, good, bad)


ORDER_TYPES = either(enum_values(OrderType))
REQUIRED = {"symbol": either(symbols), "side": either(enum_values(Side)), "quantity": either(amount)}
OPTIONAL = {
    "limit_price": either(amount),
    "stop_price": either(amount),
    "trail_percent": either(amount),
    "trail_amount": either(amount),
    "time_in_force": either(enum_values(TimeInForce)),
    "account": either(names),
    "asset_class": either(enum_values(AssetClass)),
    "exchange": either(names),
    "currency": either(currencies),
    "client_order_id": either(client_ids),
}
TRAILS = st.sampled_from(["trail_percent", "trail_amount"])
STRAY_KEYS = st.sampled_from(["qty", "price", "Symbol", "limit", "notes"])
DROPPED_KEYS = st.sampled_from(["symbol", "side", "quantity"])


@st.composite
def wild_order_fields(draw) -> dict[str, Any]:
    """A dict of order fields as a careless person, a buggy script or a damaged file sends them."""
    kind = draw(ORDER_TYPES)
    data: dict[str, Any] = {key: draw(strategy) for key, strategy in REQUIRED.items()}
    if draw(st.booleans()):
        data["order_type"] = kind
    for key, strategy in OPTIONAL.items():
        if draw(st.booleans()):
            data[key] = draw(strategy)
    # Usually give a priced order the price it needs, or the deeper rules would never be reached.
    if draw(st.integers(0, 3)):
        try:
            chosen = OrderType(kind)
        except (ValueError, TypeError):
            chosen = None
        if chosen in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            data.setdefault("limit_price", draw(amount))
        if chosen in (OrderType.STOP, OrderType.STOP_LIMIT):
            data.setdefault("stop_price", draw(amount))
        if chosen is OrderType.TRAILING_STOP:
            data.setdefault(draw(TRAILS), draw(amount))
    if draw(st.integers(0, 20)) == 0:
        data[draw(STRAY_KEYS)] = draw(junk)
    if draw(st.integers(0, 20)) == 0:
        data.pop(draw(DROPPED_KEYS))
    return data


good_amount = st.one_of(
    st.integers(1, 10**6),
    st.sampled_from(["1", "0.5", " 250 ", "1,000", "1_000", "12.5", "0.00000001", "999999999"]),
    st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places), st.integers(1, 10**9), st.integers(0, 8)
    ).filter(lambda d: d <= MAX_PRICE),
)
GOOD = {
    "symbol": st.sampled_from(["AAPL", "brk.b", " msft ", "RELIANCE", "BTC/USD", "ES=F", "EUR.USD"]),
    "side": enum_values(Side),
    "quantity": good_amount,
    "time_in_force": enum_values(TimeInForce),
    "account": st.sampled_from([None, "paper-us", "alpaca_main", "kite.1", ""]),
    "asset_class": enum_values(AssetClass),
    "exchange": st.sampled_from([None, "NSE", "nasdaq", "SMART"]),
    "currency": st.sampled_from([None, "USD", "inr", " eur "]),
    "client_order_id": st.sampled_from(["TC0001", "my-order_1", "a" * 48]),
}
PRICES = {
    OrderType.MARKET: (),
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.STOP_LIMIT: ("limit_price", "stop_price"),
}
BAD = {**REQUIRED, **OPTIONAL, "order_type": ORDER_TYPES}


@st.composite
def nearly_valid_order_fields(draw) -> dict[str, Any]:
    """A valid order, then (two times in three) one field spoilt: the rule for that one field
    is what gets tested."""
    kind = draw(st.sampled_from(list(OrderType)))
    data: dict[str, Any] = {
        "symbol": draw(GOOD["symbol"]),
        "side": draw(GOOD["side"]),
        "quantity": draw(GOOD["quantity"]),
        "order_type": kind,
    }
    for key in ("time_in_force", "account", "asset_class", "exchange", "currency", "client_order_id"):
        if draw(st.booleans()):
            data[key] = draw(GOOD[key])
    for key in PRICES.get(kind, ()):
        data[key] = draw(good_amount)
    if kind is OrderType.TRAILING_STOP:
        key = draw(TRAILS)
        data[key] = draw(st.integers(1, 99)) if key == "trail_percent" else draw(good_amount)
    if draw(st.integers(0, 2)):
        key = draw(st.sampled_from(sorted(BAD)))
        data[key] = draw(BAD[key])
    return data


order_fields = st.one_of(nearly_valid_order_fields(), wild_order_fields())


# -- the checks ------------------------------------------------------------------------------------


NUMBER_FIELDS = ("quantity", "limit_price", "stop_price", "trail_percent", "trail_amount")


def names_a_field(loc: tuple, message: str, data: dict[str, Any]) -> bool:
    """The error is placed on a field the order has (or a key it was sent with), or its text
    names one."""
    field = str(loc[0]) if loc else ""
    return field in FIELDS or field in data or any(name in message for name in FIELDS)


def as_typed(raw: Any) -> Decimal | None:
    """The number a person meant by ``raw``, exactly, where it is one."""
    if isinstance(raw, str):
        text = raw.strip().replace("_", "").replace(",", "")
        return Decimal(text) if text else None
    if isinstance(raw, float):
        return Decimal(repr(raw))
    if isinstance(raw, int | Decimal) and not isinstance(raw, bool):
        return Decimal(raw)
    return None


def check_refusal(exc: ValidationError, data: dict[str, Any]) -> None:
    errors = exc.errors()
    assert errors
    for error in errors:
        message = str(error.get("msg", ""))
        loc = tuple(error.get("loc", ()))
        assert names_a_field(loc, message, data), (loc, message)
        assert 0 < len(message) <= MESSAGE_LIMIT, (loc, message[:200], len(message))
    summary = describe_validation_error(exc)
    assert summary and len(summary) <= MESSAGE_LIMIT * len(errors) + 100
    assert field_errors(exc)


def check_valid(request: OrderRequest) -> None:
    """What a valid request promises everyone downstream."""
    for name, ceiling in (
        ("quantity", MAX_QUANTITY),
        ("limit_price", MAX_PRICE),
        ("stop_price", MAX_PRICE),
        ("trail_amount", MAX_PRICE),
        ("trail_percent", Decimal(100)),
    ):
        value = getattr(request, name)
        if value is None:
            continue
        assert isinstance(value, Decimal) and value.is_finite(), (name, value)
        assert 0 < value <= ceiling and decimal_places(value) <= MAX_DECIMALS, (name, value)
    kind = request.order_type
    assert (request.limit_price is not None) == (kind in (OrderType.LIMIT, OrderType.STOP_LIMIT))
    assert (request.stop_price is not None) == (kind in (OrderType.STOP, OrderType.STOP_LIMIT))
    trails = (request.trail_percent is not None) + (request.trail_amount is not None)
    assert trails == (1 if kind is OrderType.TRAILING_STOP else 0)
    assert request.symbol and request.symbol == request.symbol.strip().upper()
    assert isinstance(request.side, Side) and isinstance(request.time_in_force, TimeInForce)
    assert request.currency is None or (len(request.currency) == 3 and request.currency.isupper())
    assert OrderRequest.model_validate_json(request.model_dump_json()) == request  # survives the journal


def validate(data: dict[str, Any]) -> OrderRequest | None:
    try:
        request = OrderRequest.model_validate(data)
    except ValidationError as exc:
        check_refusal(exc, data)
        return None
    check_valid(request)
    for field in NUMBER_FIELDS:
        if field in data and as_typed(data[field]) is not None:
            # Taken exactly as given, never rounded to something the trader did not type.
            assert getattr(request, field) == as_typed(data[field]), (field, data[field])
    return request


OUTCOMES = {"valid": 0, "refused": 0}


@pytest.fixture
def outcomes():
    OUTCOMES.update(valid=0, refused=0)
    yield OUTCOMES
    note(
        CATEGORY,
        f"OrderRequest: {OUTCOMES['valid']:,} generated cases valid, {OUTCOMES['refused']:,} "
        f"refused naming the field, 0 crashes",
    )


@generated(10_000)
@given(data=order_fields)
def test_10000_generated_order_requests_are_valid_or_refused_by_field(data, tally, outcomes):
    with tally.case():
        outcomes["refused" if validate(data) is None else "valid"] += 1


@generated(300)
@given(
    text=st.one_of(st.text(max_size=30), number_text),
    field=st.sampled_from(["quantity", "limit_price", "stop_price", "trail_percent", "trail_amount"]),
)
def test_a_number_field_typed_as_text_is_read_or_refused_by_name(text, field, tally):
    with tally.case():
        data = {"symbol": "AAPL", "side": "BUY", "quantity": "1"}
        data["order_type"] = {
            "limit_price": "LIMIT",
            "stop_price": "STOP",
            "trail_percent": "TRAILING_STOP",
            "trail_amount": "TRAILING_STOP",
            "quantity": "MARKET",
        }[field]
        data[field] = text
        try:
            request = OrderRequest.model_validate(data)
        except ValidationError as exc:
            check_refusal(exc, data)
            messages = " ".join(str(e["msg"]) for e in exc.errors())
            locs = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            assert field in locs or field in messages
            return
        check_valid(request)
        assert getattr(request, field) == Decimal(text.strip().replace("_", "").replace(",", ""))


# -- the order-entry form --------------------------------------------------------------------------

FORM_FIELDS = {"account", "symbol", "side", "quantity", "type", "limit", "stop", "trail", "tif"}


@st.composite
def form_values(draw) -> dict[str, Any]:
    text = st.one_of(st.text(max_size=20), number_text, symbols.filter(lambda s: isinstance(s, str)))
    return {
        "account": draw(st.sampled_from(["__auto__", "paper-us", "paper-in", None, ""])),
        "symbol": draw(st.one_of(symbols, text)),
        "side": draw(st.sampled_from([*Side, None])),
        "quantity": draw(st.one_of(number_text, text)),
        "type": draw(st.sampled_from([*OrderType, None])),
        "limit": draw(st.one_of(number_text, text)),
        "stop": draw(st.one_of(number_text, text)),
        "trail": draw(st.one_of(number_text, number_text.map(lambda t: t + "%"), text)),
        "tif": draw(st.sampled_from([*TimeInForce, None])),
    }


@generated(600)
@given(values=form_values())
def test_order_entry_fields_as_typed_are_read_or_refused_next_to_the_field(values, tally):
    import console.tui.widgets.order_entry as order_entry

    with tally.case():
        request, errors = order_entry.build_request(values)
        if request is not None:
            assert errors == {}
            check_valid(request)
            return
        assert errors and set(errors) <= FORM_FIELDS, errors
        for field, message in errors.items():
            assert message and len(message) <= MESSAGE_LIMIT, (field, message[:100])


# -- through the order path ------------------------------------------------------------------------


# What a broker itself answers (the paper account trades AAPL, MSFT and BRK.B only).
BROKER_REFUSALS = {"BROKER_REJECTED", "INVALID_SYMBOL", "INSUFFICIENT_FUNDS"}


@pytest.fixture
def order_path(tmp_path):
    """One paper account behind the execution service, shared by the generated cases."""
    loop = asyncio.new_event_loop()
    broker = CountingSim("paper", prices={"AAPL": 100, "MSFT": 400, "BRK.B": 450}, initial_cash=10**12)
    rig = Rig(tmp_path, {"paper": broker}, default="paper")
    loop.run_until_complete(rig.manager.connect_all())
    yield loop, rig, broker
    loop.run_until_complete(rig.manager.disconnect_all())
    rig.journal.close()
    loop.close()


@generated(250)
@given(data=order_fields)
def test_bad_orders_never_reach_the_journal_or_a_broker(data, order_path, tally):
    loop, rig, broker = order_path
    with tally.case():
        rows_before = len(rig.journal.events())
        placed_before = len(broker.placed)
        try:
            valid: OrderRequest | None = OrderRequest.model_validate(data)
        except ValidationError:
            valid = None
        order = loop.run_until_complete(rig.service.submit(data))
        if valid is None:
            assert order.status is OrderStatus.REJECTED and order.reject_code == "INVALID_ORDER", order
            assert order.reject_reason and any(
                name in order.reject_reason for name in (*FIELDS, *map(str, data))
            )
            assert len(rig.journal.events()) == rows_before, "a refused order reached the journal"
            assert len(broker.placed) == placed_before, "a refused order reached the broker"
        else:
            assert order.status is not OrderStatus.PENDING
            if order.status is OrderStatus.REJECTED and order.reject_code not in BROKER_REFUSALS:
                assert len(broker.placed) == placed_before, order.reject_code


@pytest.mark.parametrize(
    "field",
    [
        "symbol",
        "side",
        "quantity",
        "order_type",
        "limit_price",
        "time_in_force",
        "account",
        "asset_class",
        "exchange",
        "currency",
        "client_order_id",
    ],
)
def test_a_number_too_long_to_print_is_refused_by_name(field):
    """Python refuses to turn an int of more than 4,300 digits into text; the message must not."""
    data = {"symbol": "AAPL", "side": "BUY", "quantity": 1, "order_type": "LIMIT", "limit_price": 10}
    data[field] = 10**5000
    validate(data)


def test_the_generated_cases_reach_both_outcomes():
    """The generators are not so wild that everything is refused, nor so tame that nothing is."""
    from hypothesis import find

    assert find(
        order_fields, lambda d: validate(d) is not None, settings=settings(max_examples=2_000, database=None)
    )
    assert find(
        order_fields, lambda d: validate(d) is None, settings=settings(max_examples=200, database=None)
    )
