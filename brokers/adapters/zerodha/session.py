"""The connection to Kite: the kiteconnect client and its calls (in worker threads, each with a
time limit; reads retried on transient failures), the daily access token and when it dies, and
the state of the link."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from ...credentials import register_secret, require_secret
from ...errors import BrokerConnectionError, BrokerTimeoutError
from ...models import ConnectionState
from ..retry import SharedReads, read_retrying
from .failures import TOKEN_REFUSED, CallFailed, translate
from .wire import token_expiry


class KiteSession:
    """The Kite Connect client of one account and the access token it uses.

    ``clock`` is asked for the time on each use. The token's issue time is ``configured_issue``
    for the first token when the config gives one, otherwise when the token was first loaded.
    """

    def __init__(
        self,
        name: str,
        *,
        root: str | None,
        timeout: float,
        read_attempts: int,
        configured_issue: datetime | None,
        api_key: str | None,
        access_token: str | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._name = name
        self._root = root
        self.timeout = timeout
        self._read_attempts = read_attempts
        self._configured_issue = configured_issue
        self._clock = clock
        register_secret(api_key)
        register_secret(access_token)
        self._given = (api_key, access_token)
        self._kite: Any = None
        self._token_digest: str | None = None
        self._token_issued: datetime | None = None
        self._token_refused_at: datetime | None = None
        self.state = ConnectionState.DISCONNECTED
        self.last_error: str | None = None
        self.last_refresh: datetime | None = None
        self.latency_ms: float | None = None
        self._tls = threading.local()
        self._reads = SharedReads()

    def is_connected(self) -> bool:
        return self._kite is not None and self.state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING)

    # -- the access token ---------------------------------------------------------------------
    @property
    def expires_at(self) -> datetime | None:
        issued = self._token_issued or self._configured_issue
        expiry = token_expiry(issued) if issued else None
        if self._token_refused_at is not None:
            return min(expiry, self._token_refused_at) if expiry else self._token_refused_at
        return expiry

    @property
    def token_refused(self) -> bool:
        return self._token_refused_at is not None

    @property
    def needs_new_token(self) -> bool:
        expiry = self.expires_at
        return self._token_refused_at is not None or (expiry is not None and expiry <= self._clock())

    def adopt_token(self, token: str) -> None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest == self._token_digest:
            return  # the same token again: reconnecting must not push its expiry out
        first = self._token_digest is None
        self._token_digest = digest
        self._token_refused_at = None
        self._token_issued = self._configured_issue if first and self._configured_issue else self._clock()

    def _on_token_refused(self) -> None:
        if self._token_refused_at is None:
            self._token_refused_at = self._clock()
        self.state = ConnectionState.FAILED
        self.last_error = "Kite access token expired or revoked: a new login is needed"

    # -- opening and closing ------------------------------------------------------------------
    async def open(self) -> None:
        """A new client with the keys from the keyring or environment, its token proven."""
        api_key, token = await asyncio.to_thread(self._load_credentials)
        kiteconnect = await asyncio.to_thread(importlib.import_module, "kiteconnect")
        self.adopt_token(token)
        self.close()
        self._kite = kiteconnect.KiteConnect(
            api_key, access_token=token, root=self._root, timeout=self.timeout
        )
        self._kite.reqsession.hooks["response"].append(self._note_error_type)
        await self.call("profile")  # proves the token before anything else is read
        self._token_refused_at = None

    def ticker_credentials(self) -> tuple[str, str] | None:
        """The api key and access token of the open client, for the quote websocket; None when
        no client is open."""
        kite = self._kite
        if kite is None:
            return None
        return str(kite.api_key), str(kite.access_token)

    def close(self) -> None:
        kite, self._kite = self._kite, None
        if kite is not None:
            with contextlib.suppress(Exception):
                kite.reqsession.close()

    def _load_credentials(self) -> tuple[str, str]:
        api_key, token = self._given
        api_key = api_key or require_secret(self._name, "api_key", "KITE_API_KEY")
        token = token or require_secret(self._name, "access_token", "KITE_ACCESS_TOKEN")
        return api_key, token

    # -- calls ----------------------------------------------------------------------------
    def _note_error_type(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # kiteconnect turns error types it has no class for (MarginException, HoldingException)
        # into GeneralException; keep the name Kite sent so the mapping can use it.
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            with contextlib.suppress(Exception):
                self._tls.error_type = response.json().get("error_type")

    def _in_worker(self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._tls.error_type = None
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise CallFailed(exc, getattr(self._tls, "error_type", None)) from exc

    async def call(self, method_name: str, *args: Any, op: str = "read", **kwargs: Any) -> Any:
        kite = self._kite
        if kite is None:
            raise BrokerConnectionError("not connected to Kite", broker=self._name)
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(self._in_worker, getattr(kite, method_name), args, kwargs),
                self.timeout * 2 + 1,
            )
        except TimeoutError:
            raise BrokerTimeoutError(
                f"Kite did not answer within {self.timeout:g} s", broker=self._name
            ) from None
        except CallFailed as failed:
            error = translate(failed.cause, failed.error_type, op, broker=self._name, timeout=self.timeout)
            if error.code == TOKEN_REFUSED:
                self._on_token_refused()
            raise error from None
        self.latency_ms = (time.monotonic() - started) * 1000
        return result

    async def read(self, method_name: str, *args: Any) -> Any:
        """A read, retried with backoff on transient failures; concurrent identical reads share
        one request so a refresh that asks for balance and positions at once costs no extra."""
        return await self._reads.read(
            method_name + repr(args), lambda: self._read_retrying(method_name, *args)
        )

    async def _read_retrying(self, method_name: str, *args: Any) -> Any:
        result = None
        async for attempt in read_retrying(self._read_attempts, first_wait=0.1):
            with attempt:
                result = await self.call(method_name, *args)
        return result
