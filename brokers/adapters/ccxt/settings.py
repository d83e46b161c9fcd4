"""The settings of a crypto account reached through ccxt, what each venue supports, and where its
sandbox is.

Nothing here imports ccxt: it costs seconds to import, and reading a config must not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...base import ACCOUNT_KEYS
from ...errors import ConfigError
from ...identifiers import account_name
from ...models import AssetClass, BrokerCapabilities, OrderType, TimeInForce

_GENERIC_KEYS = {"name", "live", "currency"}
_OWN_KEYS = {
    "exchange",
    "base_url",
    "timeout",
    "poll_interval",
    "request_interval",
    "cancel_after_seconds",
    "key_env",
    "secret_env",
    "order_stream",
}


@dataclass(frozen=True, slots=True)
class Venue:
    """What this adapter knows of one venue: its name, what it trades here, how a stop order is
    asked for, and its sandbox where it has one."""

    title: str
    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    # The ccxt parameter that carries a stop order's trigger price at this venue.
    stop_param: str
    # Whether cancel-all needs a symbol (Binance cancels per market).
    cancel_all_per_symbol: bool
    # The venue's cancel-all-after timer (a dead man's switch), through ccxt.
    cancel_after: bool
    # Whether the venue cancels every order (or every order of a market) in one request.
    bulk_cancel: bool
    sandbox_url: str | None = None
    # Whether order and fill updates are taken from the venue's private websocket (ccxt.pro's
    # ``watch_orders`` and ``watch_my_trades``), with polling as the fallback.
    order_stream: bool = False
    # Whether the stream carries the account's trades (``watch_my_trades``); without them an order
    # update that shows more filled makes the poller read the trades, with their fees, at once.
    stream_trades: bool = True
    # The ccxt parameter that carries our client order id to the venue.
    client_id_param: str = "clientOrderId"
    # Whether a market buy is sized in coins (Coinbase sizes it in the money to spend).
    market_buy_by_quantity: bool = True
    # ccxt options set for this venue: which of its endpoints ccxt uses.
    ccxt_options: tuple[tuple[str, str], ...] = ()
    # The fiat currencies an account can be kept in here: it trades the markets quoted in it.
    currencies: frozenset[str] = frozenset({"USD"})


# The venues this adapter has been tested against (their wire formats are served by the
# loopback peer in the tests). Crypto trades around the clock: none has a DAY time in force.
VENUES: dict[str, Venue] = {
    "kraken": Venue(
        title="Kraken",
        order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}),
        time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC}),
        stop_param="stopLossPrice",
        cancel_all_per_symbol=False,
        cancel_after=True,
        bulk_cancel=True,
        # The v2 private ``executions`` channel.
        order_stream=True,
        currencies=frozenset({"USD", "EUR", "GBP", "CAD"}),
    ),
    "binanceus": Venue(
        title="Binance.US",
        # Binance.US spot has stop-limit orders (STOP_LOSS_LIMIT) but no stop-market.
        order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT}),
        time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
        stop_param="triggerPrice",
        cancel_all_per_symbol=True,
        cancel_after=False,
        bulk_cancel=True,
        # ccxt.pro follows Binance's spot orders on binance.com's websocket API, which Binance.US
        # does not serve at that address: polled only.
        currencies=frozenset({"USD"}),
    ),
    "coinbase": Venue(
        title="Coinbase Advanced Trade",
        order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT}),
        time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
        stop_param="stopPrice",
        cancel_all_per_symbol=False,
        cancel_after=False,
        bulk_cancel=False,
        # Coinbase's static sandbox for the Advanced Trade API (no keys needed, canned answers).
        sandbox_url="https://api-sandbox.coinbase.com",
        # ccxt sends its own id unless given one under Coinbase's own name.
        client_id_param="client_order_id",
        # The Advanced Trade ``user`` channel: order updates, no trades.
        order_stream=True,
        stream_trades=False,
        market_buy_by_quantity=False,
        # The Advanced Trade wallets, which report what is on hold (the v2 ones report totals).
        ccxt_options=(("fetchBalance", "v3PrivateGetBrokerageAccounts"),),
        currencies=frozenset({"USD", "EUR", "GBP"}),
    ),
}


@dataclass(frozen=True, slots=True)
class CcxtSettings:
    """An account's settings as the config gave them; what it leaves out takes the default."""

    name: str
    exchange: str = "kraken"
    live: bool = False
    currency: str = "USD"
    base_url: str | None = None
    timeout: float = 10.0
    poll_interval: float = 2.0
    # Seconds between requests (ccxt's throttle); None keeps ccxt's figure for the venue.
    request_interval: float | None = None
    cancel_after_seconds: int = 60
    key_env: str = "CCXT_API_KEY"
    secret_env: str = "CCXT_SECRET_KEY"
    # None: the venue's default (its websocket where this adapter takes one).
    order_stream: bool | None = None


def venue_of(exchange: str, where: str) -> Venue:
    try:
        return VENUES[exchange]
    except KeyError:
        raise ConfigError(
            f"{where}: 'exchange' must be one of {', '.join(sorted(VENUES))}, not {exchange!r}"
        ) from None


def read_settings(settings: Mapping[str, object]) -> CcxtSettings:
    """A ccxt account's settings, or ConfigError naming the key and what is allowed."""
    unknown = sorted(set(settings) - _GENERIC_KEYS - ACCOUNT_KEYS - _OWN_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_GENERIC_KEYS | _OWN_KEYS))
        hint = ""
        if any("key" in key or "secret" in key for key in unknown):
            hint = " (secrets belong in the keyring: run `trading-console set-creds ACCOUNT`)"
        raise ConfigError(f"ccxt account: unknown setting {unknown[0]!r}{hint}; allowed: {allowed}")
    try:
        name = account_name(settings.get("name"), "'name'")
    except ValueError as exc:
        raise ConfigError(f"ccxt account: {exc}") from None
    prefix = f"ccxt account {name!r}"
    exchange = settings.get("exchange")
    if not isinstance(exchange, str) or not exchange.strip():
        raise ConfigError(f"{prefix}: 'exchange' is required: one of {', '.join(sorted(VENUES))}")
    exchange = exchange.strip().lower()
    venue = venue_of(exchange, prefix)
    live = settings.get("live", False)
    if not isinstance(live, bool):
        raise ConfigError(f"{prefix}: 'live' must be true or false, not {live!r}")
    currency = settings.get("currency", "USD")
    if not isinstance(currency, str) or currency.strip().upper() not in venue.currencies:
        raise ConfigError(
            f"{prefix}: 'currency' must be one of {', '.join(sorted(venue.currencies))} "
            f"at {venue.title}, not {currency!r}"
        )
    base_url = settings.get("base_url")
    if base_url is not None and (
        not isinstance(base_url, str)
        or not base_url.startswith(("http://", "https://"))
        or len(base_url) > 300
    ):
        raise ConfigError(
            f"{prefix}: 'base_url' must be a URL starting with http:// or https://, not {base_url!r}"
        )
    numbers: dict[str, float] = {}
    for key, low, high in (
        ("timeout", 0.1, 120.0),
        ("poll_interval", 0.05, 300.0),
        ("request_interval", 0.0, 60.0),
    ):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(
                    f"{prefix}: {key!r} must be a number of seconds from {low} to {high}, not {value!r}"
                )
            numbers[key] = float(value)
    cancel_after = settings.get("cancel_after_seconds", 60)
    if (
        isinstance(cancel_after, bool)
        or not isinstance(cancel_after, int)
        or not (cancel_after == 0 or 10 <= cancel_after <= 86_400)
    ):
        raise ConfigError(
            f"{prefix}: 'cancel_after_seconds' must be 0 (off) or whole seconds from 10 to 86400, "
            f"not {cancel_after!r}"
        )
    variables: dict[str, str] = {}
    for key in ("key_env", "secret_env"):
        if key in settings:
            value = settings[key]
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
                raise ConfigError(
                    f"{prefix}: {key!r} must be an environment variable name such as "
                    f"KRAKEN_API_KEY, not {value!r}"
                )
            variables[key] = value
    order_stream = settings.get("order_stream")
    if order_stream is not None and not isinstance(order_stream, bool):
        raise ConfigError(f"{prefix}: 'order_stream' must be true or false, not {order_stream!r}")
    if order_stream and not venue.order_stream:
        raise ConfigError(
            f"{prefix}: 'order_stream' is not available at {venue.title}; its orders are polled "
            "(leave it out, or set it to false)"
        )
    check_paper(exchange, live, base_url if isinstance(base_url, str) else None, prefix)
    defaults = CcxtSettings(name)
    return CcxtSettings(
        name=name,
        exchange=exchange,
        live=live,
        currency=currency.strip().upper(),
        base_url=base_url if isinstance(base_url, str) else None,
        timeout=numbers.get("timeout", defaults.timeout),
        poll_interval=numbers.get("poll_interval", defaults.poll_interval),
        request_interval=numbers.get("request_interval"),
        cancel_after_seconds=cancel_after,
        key_env=variables.get("key_env", defaults.key_env),
        secret_env=variables.get("secret_env", defaults.secret_env),
        order_stream=order_stream,
    )


def check_paper(exchange: str, live: bool, base_url: str | None, where: str) -> None:
    """A paper account needs somewhere to trade that is not the venue's real market: its
    sandbox, or a test server named by ``base_url``."""
    venue = venue_of(exchange, where)
    if not live and base_url is None and venue.sandbox_url is None:
        raise ConfigError(
            f"{where}: {venue.title} has no paper-trading sandbox; set live = true to trade real "
            "money, or base_url to a test server"
        )


def capabilities_for(exchange: str) -> BrokerCapabilities:
    venue = venue_of(exchange, "ccxt account")
    return BrokerCapabilities(
        order_types=venue.order_types,
        time_in_force=venue.time_in_force,
        asset_classes=frozenset({AssetClass.CRYPTO}),
        fractional_quantities=True,
        # Spot wallets: selling more than is held is refused by the venue.
        short_selling=False,
        bulk_cancel=venue.bulk_cancel,
        # Kraken pushes order updates over its websocket (polls stand in while it is down);
        # elsewhere the REST order book is polled.
        streaming_updates=venue.order_stream,
        session_expiry=False,
        currencies=venue.currencies,
    )
