"""The exception hierarchy.

Each broker error says whether it is a *definite* rejection (the broker said no; retrying will
not help and must not happen) or a *transient* failure (network, timeout; a read may be retried
with backoff). A submit is never retried either way: a lost answer makes the order UNKNOWN.
"""

from __future__ import annotations

from .enums import RejectCode


class TradingConsoleError(Exception):
    """Base of everything this library raises on purpose."""


class ConfigError(TradingConsoleError):
    """The configuration file is missing, malformed or holds a value that is not allowed."""


class CredentialsError(TradingConsoleError):
    """Secrets are missing, or there is nowhere safe to keep them."""


class BrokerError(TradingConsoleError):
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        broker: str | None = None,
        code: str | int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.broker = broker
        self.code = code
        if retryable is not None:
            self.retryable = retryable

    @property
    def definite(self) -> bool:
        """The broker gave a final answer: do not retry."""
        return not self.retryable

    def __str__(self) -> str:
        prefix = f"{self.broker}: " if self.broker else ""
        return f"{prefix}{self.message}" if self.message else prefix.rstrip(": ") or type(self).__name__


def is_transient(exc: BaseException) -> bool:
    """A failure worth trying again: one of ours that says it may pass (network, timeout)."""
    return isinstance(exc, BrokerError) and exc.retryable


class BrokerConnectionError(BrokerError):
    """The connection is down or was lost mid-call."""

    retryable = True


class BrokerTimeoutError(BrokerError):
    """The broker did not answer in time. For a submit the outcome is unknown."""

    retryable = True


class BrokerAPIError(BrokerError):
    """The broker answered with an error we cannot classify further. Definite unless it says so."""


class AuthenticationError(BrokerError):
    """Credentials were refused or the session expired."""


class OrderRejectedError(BrokerError):
    """The broker refused the order."""


class InsufficientFundsError(OrderRejectedError):
    """Not enough buying power or margin for the order."""


class InvalidSymbolError(OrderRejectedError):
    """The broker does not know the instrument."""


class MarketClosedError(OrderRejectedError):
    """The market is closed for this order type and time in force."""


class OrderNotFoundError(BrokerError):
    """The broker has no order with that id."""


class UnknownAccountError(TradingConsoleError, KeyError):
    """No account of that name is configured. A ``KeyError`` too, so mapping-style code works."""

    def __init__(self, account: str, known: list[str] | None = None) -> None:
        self.account = account
        self.known = list(known or [])
        choices = ", ".join(self.known) if self.known else "none are configured"
        self.message = f"unknown account {account!r}; accounts: {choices}"
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError would otherwise print the message in quotes.
        return self.message


def refusal_code(exc: Exception) -> RejectCode | None:
    """The reject code of a failed ``place_order`` that is a definite refusal; None when the
    broker may still have taken the order (a lost answer, a dropped link, an error that says it
    may pass, or one nobody classified)."""
    for kind, code in _REFUSALS:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, BrokerError) and not exc.retryable:
        return RejectCode.BROKER_REJECTED
    return None


_REFUSALS: tuple[tuple[type[Exception], RejectCode], ...] = (
    (InsufficientFundsError, RejectCode.INSUFFICIENT_FUNDS),
    (InvalidSymbolError, RejectCode.INVALID_SYMBOL),
    (OrderRejectedError, RejectCode.BROKER_REJECTED),
    (AuthenticationError, RejectCode.BROKER_UNAVAILABLE),
)
