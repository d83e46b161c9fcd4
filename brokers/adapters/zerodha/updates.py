"""The update stream: Kite has no push channel for order updates, so the order book is polled on
a timer, less often after failures, and the link is marked DEGRADED while polls keep failing."""

from __future__ import annotations

import asyncio
import logging

from ...credentials import redact
from ...errors import AuthenticationError
from ...models import ConnectionState
from .mirror import OrderMirror
from .session import KiteSession

log = logging.getLogger(__name__)


class OrderPoller:
    """Polls ``mirror`` up to date every ``poll_interval`` seconds while ``run`` runs."""

    def __init__(
        self, account: str, session: KiteSession, mirror: OrderMirror, *, poll_interval: float
    ) -> None:
        self._account = account
        self._session = session
        self._mirror = mirror
        self._poll_interval = poll_interval
        self._failures = 0

    def reset(self) -> None:
        """A fresh connection: no failures yet."""
        self._failures = 0

    async def run(self) -> None:
        session = self._session
        while True:
            backoff = min(self._poll_interval * 2**self._failures, 30.0)
            await asyncio.sleep(backoff)
            try:
                # After failures this poll is the resync: it re-reads the whole trade book, and the
                # state stays DEGRADED until it has succeeded, so no order goes out on a dead link.
                await self._mirror.sync(emit=True, force_trades=self._failures > 0)
            except AuthenticationError as exc:
                session.state = ConnectionState.FAILED
                session.last_error = redact(exc)
                log.warning("%s: order polling stopped: %s", self._account, session.last_error)
                return
            except Exception as exc:  # the stream must outlive any one bad poll
                self._failures += 1
                session.last_error = redact(exc)
                # One lost poll is noise; two in a row mean the link is down.
                session.state = ConnectionState.DEGRADED if self._failures >= 2 else ConnectionState.CONNECTED
                log.warning(
                    "%s: order poll failed (%d in a row): %s", self._account, self._failures, redact(exc)
                )
                continue
            self._failures = 0
            session.state = ConnectionState.CONNECTED
            session.last_error = None
