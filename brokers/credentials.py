"""Secrets: the system keyring first, then environment variables. Never the config file.

Every secret this process loads is registered for redaction, so ``redact()`` can scrub it from any
text that might reach a log, the journal, the screen or an exception.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable

import keyring
import keyring.backends.fail
import keyring.errors

from .errors import CredentialsError

SERVICE = "trading-console"
MASK = "***"
# Shorter values are too likely to occur by chance in ordinary text to be worth masking.
_MIN_REDACT_LEN = 4

_secrets: set[str] = set()
_lock = threading.Lock()


def _username(account: str, key: str) -> str:
    return f"{account}:{key}"


def register_secret(value: str | None) -> None:
    if value and len(value) >= _MIN_REDACT_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: object) -> str:
    result = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in result:
            result = result.replace(secret, MASK)
    return result


def keyring_available() -> bool:
    backend = keyring.get_keyring()
    return not isinstance(backend, keyring.backends.fail.Keyring) and backend.priority > 0


def _no_backend_message() -> str:
    return (
        "no system keyring is available on this machine. Install and unlock one (for example "
        "gnome-keyring or KWallet, or `pip install keyrings.alt` for a file-based store), or "
        "provide the secrets through environment variables instead"
    )


def get_secret(account: str, key: str, env_var: str | None = None) -> str | None:
    """The secret ``key`` of ``account``, from the keyring, else from ``env_var``."""
    value: str | None = None
    try:
        value = keyring.get_password(SERVICE, _username(account, key))
    except keyring.errors.KeyringError:
        value = None
    if not value and env_var:
        value = os.environ.get(env_var) or None
    register_secret(value)
    return value


def require_secret(account: str, key: str, env_var: str | None = None) -> str:
    value = get_secret(account, key, env_var)
    if value:
        return value
    where = f"run `trading-console set-creds {account}`"
    if env_var:
        where += f" or set the environment variable {env_var}"
    raise CredentialsError(f"account {account!r} has no {key}: {where}")


def set_secret(account: str, key: str, value: str) -> None:
    if not value:
        raise CredentialsError(f"{key} for account {account!r} is empty")
    register_secret(value)
    if not keyring_available():
        raise CredentialsError(_no_backend_message())
    try:
        keyring.set_password(SERVICE, _username(account, key), value)
    except keyring.errors.KeyringError as exc:
        raise CredentialsError(f"could not store {key} for {account!r}: {redact(exc)}") from None


def delete_secret(account: str, key: str) -> None:
    try:
        keyring.delete_password(SERVICE, _username(account, key))
    except keyring.errors.PasswordDeleteError:
        pass


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets from every record that passes through a handler or logger.

    ``fields`` names JSON fields whose values are masked as well, whatever they hold: a client
    library that logs its authentication frame may do so before the secrets in it are
    registered, or cut the line short in the middle of one.
    """

    def __init__(self, fields: Iterable[str] = ()) -> None:
        super().__init__()
        names = "|".join(re.escape(name) for name in fields)
        self._fields = re.compile(rf'("(?:{names})"\s*:\s*")[^"]*') if names else None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if self._fields is not None:
            cleaned = self._fields.sub(lambda match: match.group(1) + MASK, cleaned)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
