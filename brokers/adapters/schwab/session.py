"""The link to Schwab through schwab-py's asynchronous client: the OAuth token kept in the
keyring (schwab-py refreshes the access token and hands each new one back to be stored), the
refresh token's seven-day life, the account's hash, every call under a time limit with Schwab's
answers turned into ours, and the state of the link.

schwab-py and its HTTP stack are imported on connecting, never before.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ...credentials import get_secret, redact, register_secret, require_secret, set_secret
from ...errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    CredentialsError,
    InsufficientFundsError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...models import ConnectionState, utcnow
from .settings import REFRESH_TOKEN_DAYS

log = logging.getLogger(__name__)

MAYBE_PLACED = "; the order may or may not have been placed"
TOKEN_KEY = "token"


class Answer(Protocol):
    """An HTTP response as schwab-py returns it (an ``httpx.Response``)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Any: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class SessionSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def key_env(self) -> str: ...
    @property
    def secret_env(self) -> str: ...
    @property
    def account_number(self) -> str | None: ...


def renew_command(account: str) -> str:
    return f"trading-console set-creds {account} --key token"


def stored_token(account: str) -> dict[str, Any] | None:
    """The token schwab-py wrote, as kept in the keyring: ``{"creation_timestamp", "token"}``."""
    text = get_secret(account, TOKEN_KEY)
    if not text:
        return None
    try:
        token = json.loads(text)
    except ValueError:
        return None
    if not isinstance(token, dict) or not isinstance(token.get("token"), dict):
        return None
    for key in ("access_token", "refresh_token"):
        value = token["token"].get(key)
        register_secret(value if isinstance(value, str) else None)
    return token


def store_token(account: str, token: dict[str, Any]) -> None:
    inner = token.get("token")
    if isinstance(inner, dict):
        for key in ("access_token", "refresh_token"):
            value = inner.get(key)
            register_secret(value if isinstance(value, str) else None)
    set_secret(account, TOKEN_KEY, json.dumps(token))


def expiry_of(token: dict[str, Any] | None) -> datetime | None:
    """When the refresh token dies: seven days after the login that made it."""
    if token is None:
        return None
    created = token.get("creation_timestamp")
    if isinstance(created, bool) or not isinstance(created, int | float):
        return None
    return datetime.fromtimestamp(created, UTC) + timedelta(days=REFRESH_TOKEN_DAYS)


def _import_client() -> None:
    for name in ("schwab.auth", "schwab.client", "authlib.integrations.httpx_client"):
        importlib.import_module(name)


class SchwabSession:
    """The schwab-py client of one account and the state of its link."""

    def __init__(self, settings: SessionSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self.account_hash: str | None = None
        self.state = ConnectionState.DISCONNECTED
        self.last_error: str | None = None
        self.last_refresh: datetime | None = None
        self.latency_ms: float | None = None
        self.expires_at: datetime | None = expiry_of(stored_token(settings.name))

    def is_connected(self) -> bool:
        return self.state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.DEGRADED)

    def refreshed(self) -> None:
        self.last_refresh = utcnow()

    def require(self) -> tuple[Any, str]:
        if self._client is None or self.account_hash is None or not self.is_connected():
            raise BrokerConnectionError("not connected", broker=self._settings.name)
        return self._client, self.account_hash

    # -- opening and closing ------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        name = self._settings.name
        self.state = ConnectionState.CONNECTING
        self.last_error = None
        try:
            # schwab-py and its HTTP stack are imported in a worker thread: the import takes long
            # enough to freeze the event loop (and the halt key) meanwhile.
            await asyncio.to_thread(_import_client)
            self._client = self._build()
            numbers = await self.call(self._client.get_account_numbers, what="list the accounts")
            self.account_hash = self._choose(numbers)
        except BaseException as exc:
            await self.close()
            self.state = ConnectionState.FAILED
            self.last_error = redact(exc)
            raise
        self.state = ConnectionState.CONNECTED
        self.refreshed()
        log.info("%s: connected to Schwab; the login lasts until %s", name, self.expires_at)

    def _build(self) -> Any:
        settings, name = self._settings, self._settings.name
        app_key = require_secret(name, "api_key", settings.key_env)
        app_secret = require_secret(name, "secret_key", settings.secret_env)
        token = stored_token(name)
        if token is None:
            raise CredentialsError(f"account {name!r} has no Schwab login yet: run `{renew_command(name)}`")
        self.expires_at = expiry_of(token)
        if self.expires_at is not None and self.expires_at <= utcnow():
            raise AuthenticationError(
                f"the Schwab login expired at {self.expires_at:%Y-%m-%d %H:%M} UTC (it lasts "
                f"{REFRESH_TOKEN_DAYS} days): run `{renew_command(name)}`",
                broker=name,
            )
        auth = importlib.import_module("schwab.auth")
        client_module = importlib.import_module("schwab.client")
        oauth = importlib.import_module("authlib.integrations.httpx_client")

        def write(wrapped: dict[str, Any], *args: object, **kwargs: object) -> None:
            store_token(name, wrapped)
            self.expires_at = expiry_of(wrapped)

        metadata = auth.TokenMetadata.from_loaded_token(token, write)
        wrapped_write = metadata.wrapped_token_write_func()

        async def update_token(new: dict[str, Any], *args: object, **kwargs: object) -> None:
            wrapped_write(new, *args, **kwargs)

        extra: dict[str, Any] = {"timeout": settings.timeout}
        endpoint = auth.TOKEN_ENDPOINT
        if settings.base_url is not None:
            from .transport import Loopback

            extra["transport"] = Loopback(settings.base_url)
        session = oauth.AsyncOAuth2Client(
            app_key,
            client_secret=app_secret,
            token=metadata.token,
            token_endpoint=endpoint,
            update_token=update_token,
            leeway=300,
            **extra,
        )
        return client_module.AsyncClient(app_key, session, token_metadata=metadata, enforce_enums=False)

    def _choose(self, numbers: object) -> str:
        name, wanted = self._settings.name, self._settings.account_number
        accounts = [a for a in numbers if isinstance(a, dict)] if isinstance(numbers, list) else []
        if wanted is not None:
            match = next((a for a in accounts if a.get("accountNumber") == wanted), None)
            if match is None or not match.get("hashValue"):
                raise BrokerAPIError(f"this Schwab login has no account ending {wanted[-4:]}", broker=name)
            return str(match["hashValue"])
        if len(accounts) != 1 or not accounts[0].get("hashValue"):
            raise BrokerAPIError(
                f"this Schwab login has {len(accounts)} accounts: set account_number to choose one",
                broker=name,
            )
        return str(accounts[0]["hashValue"])

    async def close(self) -> None:
        client, self._client = self._client, None
        self.account_hash = None
        self.state = ConnectionState.DISCONNECTED
        if client is not None:
            try:
                async with asyncio.timeout(5.0):
                    await client.close_async_session()
            except Exception as exc:  # closing must not stop a disconnect
                log.debug("%s: closing the Schwab client: %s", self._settings.name, redact(exc))

    # -- calls --------------------------------------------------------------------------------
    async def call(
        self,
        fn: Callable[..., Awaitable[Answer]],
        *args: Any,
        what: str,
        submit: bool = False,
        **kwargs: Any,
    ) -> Any:
        """``fn(*args)``'s JSON body (the response itself for a submit), with Schwab's errors
        as ours."""
        answer = await self.send(fn, *args, what=what, submit=submit, **kwargs)
        if submit:
            return answer
        try:
            return answer.json() if answer.text else None
        except ValueError:
            raise BrokerAPIError(
                f"Schwab's answer to {what} is not JSON", broker=self._settings.name
            ) from None

    async def send(
        self, fn: Callable[..., Awaitable[Answer]], *args: Any, what: str, submit: bool = False, **kwargs: Any
    ) -> Answer:
        name = self._settings.name
        maybe = MAYBE_PLACED if submit else ""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._settings.timeout + 1.0):
                answer = await fn(*args, **kwargs)
        except TimeoutError:
            raise BrokerTimeoutError(
                f"no answer to {what} within {self._settings.timeout:g} s{maybe}", broker=name
            ) from None
        except BrokerError:
            raise
        except Exception as exc:
            raise self._failure(exc, what, maybe) from None
        self.latency_ms = (time.monotonic() - started) * 1000
        status = answer.status_code
        if status < 400:
            return answer
        detail = _message(answer)
        if status == 401:
            raise AuthenticationError(
                f"Schwab refused the login ({detail}): run `{renew_command(name)}`", broker=name
            )
        if status == 404:
            raise OrderNotFoundError(f"Schwab has no such {what.split()[-1]}: {detail}", broker=name)
        if status in (400, 403, 422):
            if submit and "fund" in detail.lower():
                raise InsufficientFundsError(f"Schwab refused the order: {detail}", broker=name)
            kind = OrderRejectedError if submit else BrokerAPIError
            raise kind(f"Schwab refused to {what}: {detail}", broker=name, code=status)
        raise BrokerConnectionError(
            f"Schwab could not {what} (HTTP {status}){maybe}: {detail}", broker=name, code=status
        )

    def _failure(self, exc: Exception, what: str, maybe: str) -> BrokerError:
        name = self._settings.name
        kind = type(exc).__name__
        if kind in ("OAuthError", "InvalidTokenError", "MissingTokenError"):
            return AuthenticationError(
                f"Schwab refused to renew the access token ({redact(exc)[:200]}): run `{renew_command(name)}`",
                broker=name,
            )
        if "Timeout" in kind:
            return BrokerTimeoutError(f"no answer to {what}{maybe}", broker=name)
        return BrokerConnectionError(f"could not {what}{maybe}: {kind}: {redact(exc)[:200]}", broker=name)


def _message(answer: Answer) -> str:
    try:
        body = answer.json()
    except ValueError:
        return redact(answer.text[:200])
    if isinstance(body, dict):
        for key in ("message", "error_description", "error"):
            if isinstance(body.get(key), str):
                return redact(body[key][:200])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return redact(str(errors[0].get("detail") or errors[0].get("title") or errors[0])[:200])
    return redact(str(body)[:200])
