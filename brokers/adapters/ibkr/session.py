"""The connection to TWS / IB Gateway: the API handshake, the account it trades, the state of the
link (ours to TWS and TWS's to IB) with the resync after TWS got IB back, and read requests with a
timeout and retries.

ib_async (and ib_insync) run on asyncio, so every call is made on the running loop; nothing blocks
it and no thread is involved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from ...errors import BrokerConnectionError, BrokerError, BrokerTimeoutError, ConfigError
from ...models import ConnectionState, utcnow
from ..retry import read_retrying
from .codes import CONNECTIVITY_LOST, RESTORED_DATA_KEPT, RESTORED_DATA_LOST, SERVER_CONNECTIVITY_BROKEN

log = logging.getLogger(__name__)


class SessionSettings(Protocol):
    """What the session is told by its owner, read each time it is used: a setting may be changed
    after the session is built."""

    @property
    def name(self) -> str: ...
    @property
    def live(self) -> bool: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def client_id(self) -> int: ...
    @property
    def account_code(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def read_attempts(self) -> int: ...


class IBSession:
    """One API connection to TWS and the account it trades through it.

    ``new_client`` builds the client library's ``IB`` object with its events already connected
    to their handlers; it is called once, on the first connect, and the object is kept across
    reconnects. ``refresh_orders`` brings every order up to date with what TWS lists, for the
    resync after TWS lost IB.
    """

    def __init__(
        self,
        settings: SessionSettings,
        *,
        new_client: Callable[[], Any],
        refresh_orders: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._new_client = new_client
        self._refresh_orders = refresh_orders
        self._ib: Any = None
        self._account = settings.account_code or ""
        self._state = ConnectionState.DISCONNECTED
        self._last_error: str | None = None
        self._last_refresh: datetime | None = None
        self._latency_ms: float | None = None
        self._connecting = False
        self._closing = False
        self._resync_task: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    # -- what the session knows ---------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The client library's ``IB`` object, None before the first connect; it may be
        disconnected (``require`` says so)."""
        return self._ib

    @property
    def account(self) -> str:
        """The IB account code traded, chosen on connecting ("" before)."""
        return self._account

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def last_refresh(self) -> datetime | None:
        return self._last_refresh

    @property
    def latency_ms(self) -> float | None:
        return self._latency_ms

    @property
    def connecting(self) -> bool:
        """In the API handshake: a disconnect now is the handshake failing, not a lost link."""
        return self._connecting

    @property
    def closing(self) -> bool:
        """Disconnecting on purpose (or refusing the login): nothing more is asked of TWS."""
        return self._closing

    def refreshed(self) -> None:
        """TWS has just answered with current data."""
        self._last_refresh = utcnow()

    def is_connected(self) -> bool:
        return (
            self._ib is not None
            and self._ib.isConnected()
            and not self._closing
            and self._state
            in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.DEGRADED)
        )

    def require(self) -> Any:
        """The connected client, or BrokerConnectionError."""
        if self._ib is None or not self._ib.isConnected() or self._closing:
            raise BrokerConnectionError(
                f"not connected to TWS/IB Gateway ({self._state.value.lower()})", broker=self._settings.name
            )
        return self._ib

    def set_state(self, state: ConnectionState, error: str | None = None) -> None:
        if state is not self._state:
            log.info("%s: %s -> %s", self._settings.name, self._state.value, state.value)
        self._state = state
        if error is not None:
            self._last_error = error
        elif state is ConnectionState.CONNECTED:
            self._last_error = None

    # -- opening and closing ------------------------------------------------------------------
    async def open(self) -> None:
        """The API handshake and the choice of account; leaves the session RESYNCING, for the
        owner to reconcile what TWS replayed before it is CONNECTED."""
        settings = self._settings
        self._closing = False
        self.set_state(ConnectionState.CONNECTING)
        if self._ib is None:
            self._ib = self._new_client()
        ib = self._ib
        where = f"TWS/IB Gateway at {settings.host}:{settings.port}"
        self._connecting = True
        try:
            await ib.connectAsync(
                settings.host,
                settings.port,
                clientId=settings.client_id,
                timeout=settings.timeout,
                readonly=settings.readonly,
                account=settings.account_code or "",
            )
        except TimeoutError:
            raise BrokerTimeoutError(
                f"{where} did not finish the API handshake within {settings.timeout:g} s "
                f"(is the API enabled and client id {settings.client_id} free?)",
                broker=settings.name,
            ) from None
        except OSError as exc:
            raise BrokerConnectionError(
                f"cannot reach {where}: {exc.strerror or exc}", broker=settings.name
            ) from None
        finally:
            self._connecting = False
        try:
            self._choose_account(ib.managedAccounts())
        except ConfigError:
            self._closing = True
            ib.disconnect()
            raise
        self.set_state(ConnectionState.RESYNCING)

    def _choose_account(self, accounts: list[str]) -> None:
        settings = self._settings
        if settings.account_code:
            if settings.account_code not in accounts:
                raise ConfigError(
                    f"IB account {settings.account_code} is not managed by this TWS login "
                    f"(it manages {', '.join(accounts) or 'none'}); fix the 'account' setting"
                )
            code = settings.account_code
        elif len(accounts) == 1:
            code = accounts[0]
        else:
            raise ConfigError(
                f"this TWS login manages several accounts ({', '.join(accounts)}); "
                f"set 'account' for {settings.name!r} to one of them"
            )
        # IB paper accounts are the D-prefixed ones (DU..., DF...): refuse to trade real money
        # from an account the config calls paper.
        if not settings.live and not code.upper().startswith("D"):
            raise ConfigError(
                f"account {settings.name!r} is configured as paper (live = false) but TWS is "
                f"logged in to live account {code}; log TWS in to paper or set live = true"
            )
        if settings.live and code.upper().startswith("D"):
            log.warning(
                "%s is configured as live but TWS is logged in to paper account %s", settings.name, code
            )
        self._account = code

    def begin_closing(self) -> None:
        """From now on nothing more is asked of TWS; a resync under way is called off."""
        self._closing = True
        if self._resync_task is not None:
            self._resync_task.cancel()

    def close(self) -> None:
        if self._ib is not None:
            self._ib.disconnect()
        self.set_state(ConnectionState.DISCONNECTED)

    async def ping(self) -> float:
        """Round trip to TWS in milliseconds (also kept as ``latency_ms``)."""
        ib = self.require()
        started = time.perf_counter()
        await self.read("current time", ib.reqCurrentTimeAsync)
        self._latency_ms = (time.perf_counter() - started) * 1000
        self.refreshed()
        return self._latency_ms

    # -- TWS's link to IB ---------------------------------------------------------------------
    def on_error(self, code: int, message: str) -> None:
        """The codes by which TWS reports its own link to IB lost, and restored with or without
        the data kept meanwhile."""
        if code in (CONNECTIVITY_LOST, SERVER_CONNECTIVITY_BROKEN):
            self.set_state(ConnectionState.DEGRADED, f"IB {code}: {message}")
        elif code == RESTORED_DATA_LOST and not self._connecting:
            # Orders may have filled or ended unseen: ask again before trading on.
            self.set_state(ConnectionState.RESYNCING, f"IB {code}: {message}")
            self._start_resync(full=True)
        elif code == RESTORED_DATA_KEPT and not self._connecting:
            self.set_state(ConnectionState.CONNECTED)
            self._start_resync(full=False)  # nothing should be missing; checking is cheap

    def _start_resync(self, *, full: bool) -> None:
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.ensure_future(self._resync(full=full))

    async def _resync(self, *, full: bool) -> None:
        try:
            await self._refresh_orders()
            if full:
                await self.read("account summary", self._ib.reqAccountSummaryAsync)
        except BrokerError as exc:
            log.warning("%s: resync after TWS reconnected to IB failed: %s", self._settings.name, exc)
            if self._state is ConnectionState.RESYNCING:
                self.set_state(ConnectionState.DEGRADED, f"resync failed: {exc}")
            return
        # Only a resync that is still wanted ends it: TWS may have lost IB again meanwhile.
        if self._state is ConnectionState.RESYNCING:
            self.set_state(ConnectionState.CONNECTED)
        self.refreshed()

    # -- reads --------------------------------------------------------------------------------
    async def read(self, what: str, request: Callable[[], Awaitable[Any]]) -> Any:
        """A read request with a timeout, retried with backoff while the failure is transient.
        One at a time per kind: the client library keys some answers by kind, not by request."""
        settings = self._settings
        self.require()  # no point waiting out the retries while nothing is connected
        lock = self._locks.setdefault(what, asyncio.Lock())
        async with lock:
            async for attempt in read_retrying(settings.read_attempts, first_wait=0.2):
                with attempt:
                    self.require()
                    try:
                        result = await asyncio.wait_for(request(), settings.timeout)
                    except TimeoutError:
                        raise BrokerTimeoutError(
                            f"no answer to the {what} request within {settings.timeout:g} s",
                            broker=settings.name,
                        ) from None
                    except ConnectionError as exc:
                        raise BrokerConnectionError(
                            f"{what} request failed: {exc}", broker=settings.name
                        ) from None
        return result
