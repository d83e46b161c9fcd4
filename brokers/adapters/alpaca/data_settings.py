"""An Alpaca account's market-data settings: which feed, how many symbols it may stream, and
where the data endpoints are."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import ConfigError

DATA_URL = "https://data.alpaca.markets"
DATA_STREAM_URL = "wss://stream.data.alpaca.markets"
FEEDS = ("iex", "sip")
FREE_PLAN_SYMBOLS = 30
"""Alpaca's free (Basic) market-data plan streams at most 30 symbols on its one connection."""
MAX_SYMBOLS = 100_000

STREAM_RETRY_SECONDS = 5.0
"""The first wait before a refused data stream is tried again (then doubling, at most 5 min)."""

DATA_KEYS = frozenset(
    {"data_feed", "quote_symbol_limit", "data_url", "data_stream_url", "quote_stream_retry_seconds"}
)


@dataclass(frozen=True, slots=True)
class DataSettings:
    """``data_feed``: "iex" (free) or "sip" (a paid plan: every US exchange).
    ``quote_symbol_limit``: symbols streamed at once over stocks and crypto; the rest are asked for
    as snapshots. ``data_url``, ``data_stream_url``: only to point at another endpoint.
    ``quote_stream_retry_seconds``: the first wait before a data stream Alpaca refused is tried
    again (its instruments are asked for as snapshots meanwhile)."""

    feed: str = "iex"
    symbol_limit: int = FREE_PLAN_SYMBOLS
    data_url: str = DATA_URL
    stream_url: str = DATA_STREAM_URL
    stream_retry_seconds: float = STREAM_RETRY_SECONDS

    @property
    def stock_stream_url(self) -> str:
        return f"{self.stream_url}/v2/{self.feed}"

    @property
    def crypto_stream_url(self) -> str:
        return f"{self.stream_url}/v1beta3/crypto/us"


def read_data_settings(settings: Mapping[str, object], prefix: str) -> DataSettings:
    """The market-data keys of an account's settings, or ConfigError naming the key and what
    is allowed. ``prefix`` names the account in messages."""
    defaults = DataSettings()
    feed = settings.get("data_feed", defaults.feed)
    if not isinstance(feed, str) or feed.strip().lower() not in FEEDS:
        raise ConfigError(
            f"{prefix}: 'data_feed' must be one of {', '.join(FEEDS)} "
            f"(sip needs a paid market-data plan), not {feed!r}"
        )
    limit = settings.get("quote_symbol_limit", defaults.symbol_limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SYMBOLS:
        raise ConfigError(
            f"{prefix}: 'quote_symbol_limit' must be a whole number from 1 to {MAX_SYMBOLS:,} "
            f"(Alpaca's free plan streams {FREE_PLAN_SYMBOLS}), not {limit!r}"
        )
    retry = settings.get("quote_stream_retry_seconds", defaults.stream_retry_seconds)
    if (
        isinstance(retry, bool)
        or not isinstance(retry, int | float)
        or not math.isfinite(retry)
        or not 0.05 <= retry <= 300
    ):
        raise ConfigError(
            f"{prefix}: 'quote_stream_retry_seconds' must be a number of seconds from 0.05 to 300, "
            f"not {retry!r}"
        )
    urls: dict[str, str] = {}
    for key, schemes, default in (
        ("data_url", ("http://", "https://"), defaults.data_url),
        ("data_stream_url", ("ws://", "wss://"), defaults.stream_url),
    ):
        value = settings.get(key, default)
        if not isinstance(value, str) or not value.startswith(schemes) or len(value) > 300:
            raise ConfigError(
                f"{prefix}: {key!r} must be a URL starting with {' or '.join(schemes)}, not {value!r}"
            )
        urls[key] = value.rstrip("/")
    return DataSettings(
        feed=feed.strip().lower(),
        symbol_limit=limit,
        data_url=urls["data_url"],
        stream_url=urls["data_stream_url"],
        stream_retry_seconds=float(retry),
    )
