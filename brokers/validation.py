"""Rules for the numbers people and brokers type, and how validation failures read.

Money and quantities are ``Decimal``: whatever arrives (text with separators, a float, an int)
becomes a finite Decimal within a sanity ceiling and a number of decimal places, or a
``ValueError`` naming the field. Error messages quote the bad value short enough to read.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

__all__ = [
    "MAX_DECIMALS",
    "MAX_NOTIONAL",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "check_positive_amount",
    "decimal_places",
    "describe_validation_error",
    "field_errors",
    "shown",
    "to_decimal",
]

# Sanity ceilings: no real order is larger, and a value past them is a typo or an attack.
MAX_QUANTITY = Decimal("1000000000")
MAX_PRICE = Decimal("1000000000")
# An order for an amount of money (``OrderRequest.notional``), in its trading currency.
MAX_NOTIONAL = Decimal("1000000000")
# Quantities and prices to 9 decimal places: Alpaca's fractional shares and crypto go that far.
MAX_DECIMALS = 9

_ONE = Decimal(1)

_SHOWN_MAX_LEN = 40


def shown(value: object) -> str:
    """A value as an error message quotes it: short enough to read whatever was typed or sent
    (a megabyte of text, a number with a million digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        value = Decimal(value)  # repr() of an int over 4,300 digits raises
    if isinstance(value, Decimal):
        text = f"{value:,}" if value.is_finite() and value.adjusted() < 20 else str(value)
        return text if len(text) <= _SHOWN_MAX_LEN else f"{value:.6E}"
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN_MAX_LEN else text[: _SHOWN_MAX_LEN - 1] + "…"


def to_decimal(value: object, field: str) -> Decimal:
    """Turn user or broker input into a finite Decimal, or raise ValueError naming the field."""
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number, not {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # repr() keeps 0.1 as 0.1 rather than its binary expansion
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        if not text:
            raise ValueError(f"{field} is empty; enter a number")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{field} must be a number, not {shown(value)}") from None
    else:
        raise ValueError(f"{field} must be a number, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field} must be a finite number, not {shown(value)}")
    return result


def decimal_places(value: Decimal) -> int:
    # Counted on the digits themselves: normalize() would first round to the context's 28
    # significant digits and let 1.00000000000000000000000000001 pass as 1.
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or not any(digits):
        return 0  # whole numbers, the usual quantity, need no counting
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


def check_positive_amount(value: object, field: str, ceiling: Decimal) -> Decimal:
    amount = to_decimal(value, field)
    if amount <= 0:
        raise ValueError(f"{field} must be greater than 0, not {shown(amount)}")
    if amount > ceiling:
        raise ValueError(f"{field} must be at most {ceiling:,}, not {shown(amount)}")
    if amount.as_tuple().exponent == 0:
        return amount  # a whole number written without a point or exponent: canonical already
    if decimal_places(amount) > MAX_DECIMALS:
        raise ValueError(f"{field} allows at most {MAX_DECIMALS} decimal places, not {shown(amount)}")
    # Canonical form: 10 not 1E+1 or 10.00, 10.5 not 10.50.
    return amount.quantize(_ONE) if amount == amount.to_integral_value() else amount.normalize()


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the field: what a person sees for bad input."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if field and not message.startswith(field):
            lines.append(f"{field}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Field name -> message, for showing a message next to the input that caused it."""
    result: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = loc[0] if loc else ""
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        result.setdefault(field, message)
    return result
