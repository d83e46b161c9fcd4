"""The rules for the names the library is keyed by: account names and currency codes.

Each rule lives here once, as a function (raising ``ValueError`` with a sentence naming the field
and what is allowed) and as a pydantic type for models and settings. Whatever reads a name from a
person, a config file or a broker's payload goes through these, so an account the config accepts
is one the manager accepts and an order may name.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, ValidationInfo

__all__ = [
    "ACCOUNT_NAME_RULE",
    "CURRENCY_CODE_RULE",
    "AccountName",
    "CurrencyCode",
    "OptionalAccountName",
    "OptionalCurrencyCode",
    "account_name",
    "currency_code",
]

ACCOUNT_NAME_RULE = "1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
CURRENCY_CODE_RULE = "a 3-letter code such as USD or INR"

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_QUOTED_MAX_LEN = 40


def _quoted(value: object) -> str:
    """A value as an error message quotes it: short, whatever was typed or sent."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= _QUOTED_MAX_LEN else f"{text[: _QUOTED_MAX_LEN - 4]}...'"


def _as_account_name(value: object) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        if _ACCOUNT_NAME.fullmatch(text):
            return text
    return None


def _as_currency_code(value: object) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 3 and text.isascii() and text.isalpha():
            return text.upper()
    return None


def account_name(value: object, field: str = "account name") -> str:
    """``value`` as an account name (surrounding spaces dropped), or ValueError.

    ASCII only: two names that look alike on screen must not be two accounts.
    """
    text = _as_account_name(value)
    if text is None:
        raise ValueError(f"{field} must be {ACCOUNT_NAME_RULE}, not {_quoted(value)}")
    return text


def currency_code(value: object, field: str = "currency") -> str:
    """``value`` as an upper-case 3-letter currency code, or ValueError."""
    code = _as_currency_code(value)
    if code is None:
        raise ValueError(f"{field} must be {CURRENCY_CODE_RULE}, not {_quoted(value)}")
    return code


# In a model, pydantic's error already names the field and quotes the input.
def _account_name(value: object, info: ValidationInfo) -> str:
    text = _as_account_name(value)
    if text is None:
        raise ValueError(f"{info.field_name or 'account name'} must be {ACCOUNT_NAME_RULE}")
    return text


def _currency_code(value: object, info: ValidationInfo) -> str:
    code = _as_currency_code(value)
    if code is None:
        raise ValueError(f"{info.field_name or 'currency'} must be {CURRENCY_CODE_RULE}")
    return code


AccountName = Annotated[str, BeforeValidator(_account_name)]
"""An account name in a pydantic model: validated and stripped by ``account_name``."""

CurrencyCode = Annotated[str, BeforeValidator(_currency_code)]
"""A currency code in a pydantic model: validated and upper-cased by ``currency_code``."""


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _optional_account_name(value: object, info: ValidationInfo) -> str | None:
    return None if _blank(value) else _account_name(value, info)


def _optional_currency_code(value: object, info: ValidationInfo) -> str | None:
    return None if _blank(value) else _currency_code(value, info)


OptionalAccountName = Annotated[str | None, BeforeValidator(_optional_account_name)]
"""An account name that may be left out: None, or blank text, is None."""

OptionalCurrencyCode = Annotated[str | None, BeforeValidator(_optional_currency_code)]
"""A currency code that may be left out: None, or blank text, is None."""
