"""The Charles Schwab adapter (TD Ameritrade's accounts moved there): one account through the
Trader API with schwab-py's asynchronous client.

- ``session``: the client (schwab-py imported on connecting), the OAuth token in the keyring and
  its refresh, the seven-day login, the account's hash, the state of the link;
- ``mirror``: our copy of every order at Schwab, and its executions as fills;
- ``orders``: placing, cancelling, looking up and listing orders, and the poll that stands in for
  a push channel;
- ``account``: balances and positions.

The refresh token lives seven days: ``session_expires_at`` says when, like Kite's daily token, and
``trading-console set-creds NAME --key token`` logs in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime

from ...credentials import redact, require_secret
from ...errors import AuthenticationError
from ...models import BrokerCapabilities, ConnectionState, Order
from ..composed import ComposedBroker
from .account import AccountReads
from .login import authorization_url, complete_login
from .mirror import OrderMirror
from .orders import OrderDesk
from .session import SchwabSession, expiry_of
from .settings import CAPABILITIES, DEFAULT_CALLBACK, check_paper, read_settings

log = logging.getLogger(__name__)

__all__ = ["SchwabBroker"]


class SchwabBroker(ComposedBroker[SchwabSession, OrderDesk, AccountReads]):
    """One Schwab account. Secrets: "api_key" (the app key), "secret_key" (the app secret) and
    "token" (the OAuth token schwab-py keeps current), in the keyring."""

    broker_type = "schwab"
    late_order_window = 30.0

    def __init__(
        self,
        name: str = "schwab",
        *,
        live: bool = True,
        currency: str = "USD",
        account_number: str | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 2.0,
        key_env: str = "SCHWAB_APP_KEY",
        secret_env: str = "SCHWAB_APP_SECRET",
        callback_url: str = DEFAULT_CALLBACK,
    ) -> None:
        super().__init__(name, live=live, currency=currency)
        check_paper(live, base_url, f"schwab account {name!r}")
        self.account_number = account_number
        self.base_url = base_url
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.key_env = key_env
        self.secret_env = secret_env
        self.callback_url = callback_url
        self._mirror = OrderMirror(name, self._emit)
        self._session = SchwabSession(self)
        self._orders = OrderDesk(self, self._session, self._mirror)
        self._account = AccountReads(name, self._session)
        self._poll_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> SchwabBroker:
        read = read_settings(settings)
        return cls(
            read.name,
            live=read.live,
            account_number=read.account_number,
            base_url=read.base_url,
            timeout=read.timeout,
            poll_interval=read.poll_interval,
            key_env=read.key_env,
            secret_env=read.secret_env,
            callback_url=read.callback_url,
        )

    @property
    def capabilities(self) -> BrokerCapabilities:
        return CAPABILITIES

    @property
    def session_expires_at(self) -> datetime | None:
        return self._session.expires_at

    async def connect(self) -> None:
        await self._session.open()
        try:
            await self._orders.open_orders()
        except BaseException:
            await self._session.close()
            raise
        if self._poll_task is None or self._poll_task.done():
            self._stopping = asyncio.Event()
            self._poll_task = asyncio.create_task(self._poll(), name=f"{self.name}-poll")

    async def disconnect(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None:
            self._stopping.set()
            try:
                async with asyncio.timeout(self.timeout + 5.0):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._session.close()

    async def _poll(self) -> None:
        """Schwab has no push channel for a retail app's orders: the order list is polled."""
        session, failures = self._session, 0
        while True:
            delay = min(self.poll_interval * 2**failures, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            try:
                await self._orders.sync()
            except AuthenticationError as exc:
                session.state = ConnectionState.FAILED
                session.last_error = redact(exc)
                log.warning("%s: order polling stopped: %s", self.name, session.last_error)
                return
            except Exception as exc:  # the stream must outlive any one bad poll
                failures += 1
                session.last_error = redact(exc)
                session.state = ConnectionState.DEGRADED if failures >= 2 else ConnectionState.CONNECTED
                log.warning("%s: order poll failed (%d in a row): %s", self.name, failures, redact(exc))
                continue
            failures = 0
            session.state = ConnectionState.CONNECTED
            session.last_error = None

    async def cancel_order(self, broker_order_id: str) -> Order:
        return await self._orders.cancel(broker_order_id)

    # -- logging in -------------------------------------------------------------------------
    def login_url(self) -> tuple[str, str]:
        """Where the account holder logs in and allows the app, and the state to check."""
        app_key = require_secret(self.name, "api_key", self.key_env)
        return authorization_url(app_key, self.callback_url)

    async def complete_login(self, received_url: str, state: str) -> datetime | None:
        """Keep the token for the address the browser was sent back to; returns when the new
        login ends."""
        kept = await complete_login(
            self.name,
            app_key=require_secret(self.name, "api_key", self.key_env),
            app_secret=require_secret(self.name, "secret_key", self.secret_env),
            callback_url=self.callback_url,
            state=state,
            received_url=received_url,
            base_url=self.base_url,
            request_timeout=self.timeout,
        )
        self._session.expires_at = expiry_of(kept)
        return self._session.expires_at
