"""One order of a venue's listing or stream, read without letting a bad one stop the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..credentials import redact
from ..errors import BrokerAPIError
from ..models import Order

__all__ = ["read_or_skip"]

log = logging.getLogger(__name__)


def read_or_skip(
    ingest: Callable[[dict[str, Any]], Order], payload: object, account: str, sender: str
) -> Order | None:
    """``ingest(payload)``, or None and a warning naming ``sender`` (``the venue``, ``Schwab``)
    for an order that cannot be read: in a listing, one unreadable order must not hide the rest."""
    try:
        if not isinstance(payload, dict):
            raise BrokerAPIError("an order that is not an object", broker=account)
        return ingest(payload)
    except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: ignored an order %s sent that cannot be read: %s", account, sender, redact(exc))
        return None
