"""The one way adapters retry a read: backoff on transient failures only, the last failure
raised as itself. Orders are never retried (see ``brokers.execution``)."""

from __future__ import annotations

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ..errors import is_transient


def read_retrying(attempts: int, first_wait: float) -> AsyncRetrying:
    """``async for attempt in read_retrying(...): with attempt: ...``: up to ``attempts`` tries,
    waiting ``first_wait`` seconds after the first failure, then doubling, at most 2 s."""
    return AsyncRetrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(attempts),
                         wait=wait_exponential(multiplier=first_wait, max=2), reraise=True)
