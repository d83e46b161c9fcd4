"""What went wrong on a Kite call, as our error: definite refusals apart from lost answers."""

from __future__ import annotations

from typing import Any

import requests

from ...credentials import redact
from ...errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    OrderNotFoundError,
    OrderRejectedError,
)
from .wire import NOT_FOUND, refusal_class

TOKEN_REFUSED = "TokenException"


class CallFailed(Exception):
    """Carries a client-side exception, and the error_type Kite sent with it, out of a worker."""

    def __init__(self, cause: BaseException, error_type: str | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.error_type = error_type


def _unreadable_body(exc: BaseException, text: str) -> str:
    if isinstance(exc, ValueError):
        return "it is not JSON"
    if isinstance(exc, AttributeError | KeyError | TypeError | IndexError | NameError):
        return "it is not the {status, data} envelope Kite always sends"
    return text


def translate(
    exc: BaseException, error_type: str | None, op: str, *, broker: str, timeout: float
) -> BrokerError:
    """``op`` is "read", "place" or "cancel": a place whose outcome is unknown must say so, and
    only reads and cancels can be about an order that does not exist."""
    text = redact(exc)
    if isinstance(exc, requests.Timeout):
        return BrokerTimeoutError(f"Kite did not answer within {timeout:g} s", broker=broker)
    if isinstance(exc, requests.RequestException):
        return BrokerConnectionError(f"connection to Kite failed: {text}", broker=broker)
    code: Any = getattr(exc, "code", None)
    kind = error_type or type(exc).__name__
    if code is None or not type(exc).__module__.startswith("kiteconnect"):
        # The client choked on the body itself; its own words ("'NoneType' object has no
        # attribute 'get'") would mean nothing to a trader.
        what = _unreadable_body(exc, text)
        if op == "place":  # an answer we cannot read: the order may or may not exist
            return BrokerConnectionError(f"unreadable answer from Kite: {what}", broker=broker)
        return BrokerAPIError(f"unreadable answer from Kite: {what}", broker=broker, retryable=True)
    if kind == TOKEN_REFUSED:
        return AuthenticationError(
            f"Kite refused the access token ({text}); log in to Kite and store the new token with "
            f"`trading-console set-creds {broker}` or KITE_ACCESS_TOKEN",
            broker=broker,
            code=kind,
        )
    if kind in ("NetworkException", "DataException") or (isinstance(code, int) and code >= 500):
        if op == "place":  # Kite took the request but cannot say what its OMS did with it
            return BrokerConnectionError(
                f"Kite could not confirm the order, so its outcome is unknown ({kind}: {text})",
                broker=broker,
                code=kind,
            )
        return BrokerAPIError(f"{kind}: {text}", broker=broker, code=kind, retryable=True)
    if code == 429:
        if op == "place":
            return OrderRejectedError(f"Kite rate limit: {text}", broker=broker, code=429)
        return BrokerAPIError(f"Kite rate limit: {text}", broker=broker, code=429, retryable=True)
    if op != "place" and (code == 404 or NOT_FOUND.search(text)):
        return OrderNotFoundError(text, broker=broker, code=kind)
    if op == "place":
        return refusal_class(text, kind)(text, broker=broker, code=kind)
    if kind in ("PermissionException", "UserException"):
        return AuthenticationError(text, broker=broker, code=kind)
    return BrokerAPIError(f"{kind}: {text}", broker=broker, code=kind)
