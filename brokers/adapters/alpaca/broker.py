"""The Alpaca account: REST calls in worker threads, trade updates from the stream's thread.

Every order payload, whether it came from REST or the stream, goes through ``_ingest``: it moves
the order along the state machine and emits each new fill exactly once. A fill's id is the order
id plus the order's cumulative filled quantity, so the same execution seen twice (stream, then a
resync after a reconnect) is recognised, and executions missed during a gap are not lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from ...base import ACCOUNT_KEYS, Broker
from ...credentials import redact, register_secret, require_secret
from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    ConfigError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...identifiers import account_name
from ...models import (
    AccountStatus,
    AssetClass,
    Balance,
    BrokerCapabilities,
    ConnectionState,
    Fill,
    MarginInfo,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    TimeInForce,
    can_transition,
    utcnow,
)
from ..retry import SharedReads, read_retrying
from .stream import StreamThread, TimeoutSession, UpdateStream
from .wire import (
    FillSource,
    alpaca_refusal,
    api_error,
    check_order_id,
    currency_of,
    dec,
    foreign_source,
    map_status,
    order_fields,
    parse_time,
    payload_dict,
    position_from_payload,
    request_from_payload,
    required,
    unreadable,
    wire_decimal,
)

log = logging.getLogger(__name__)

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
PAPER_STREAM_URL = "wss://paper-api.alpaca.markets/stream"
LIVE_STREAM_URL = "wss://api.alpaca.markets/stream"

_GENERIC_KEYS = {"name", "live", "currency"}
_OWN_KEYS = {"base_url", "stream_url", "timeout", "key_env", "secret_env", "crypto", "reconnect_delay"}

_READ_ATTEMPTS = 3
_LIST_LIMIT = 500  # Alpaca's largest page for GET /v2/orders
_MAX_TRACKED = 10_000
# Orders listed after a stream gap are asked for from a little before it: clocks disagree.
_CLOCK_SLACK = timedelta(seconds=60)
_MAYBE_PLACED = "; the order may or may not have been placed"


@dataclass(frozen=True, slots=True)
class _Progress:
    filled: Decimal
    average: Decimal | None


class AlpacaBroker(Broker):
    """One Alpaca account, paper unless ``live``. Keys come from the keyring or environment."""

    broker_type = "alpaca"
    #: Seconds after a lost submit answer during which the order may still turn up here:
    #: an HTTP request that timed out or lost its connection may still be processed.
    late_order_window = 30.0

    def __init__(
        self,
        name: str = "alpaca",
        *,
        live: bool = False,
        currency: str = "USD",
        api_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        stream_url: str | None = None,
        timeout: float = 10.0,
        key_env: str = "ALPACA_API_KEY",
        secret_env: str = "ALPACA_SECRET_KEY",
        crypto: bool = True,
        reconnect_delay: float = 1.0,
    ) -> None:
        super().__init__(name, live=live, currency=currency)
        register_secret(api_key)
        register_secret(secret_key)
        self._api_key = api_key
        self._secret_key = secret_key
        self._key_env = key_env
        self._secret_env = secret_env
        self._reads = SharedReads()
        self.base_url = (base_url or (LIVE_URL if live else PAPER_URL)).rstrip("/")
        if stream_url:
            self.stream_url = stream_url
        elif base_url:
            self.stream_url = re.sub(r"^http", "ws", self.base_url) + "/stream"
        else:
            self.stream_url = LIVE_STREAM_URL if live else PAPER_STREAM_URL
        self.timeout = float(timeout)
        self.reconnect_delay = float(reconnect_delay)
        self._capabilities = BrokerCapabilities(
            order_types=frozenset(OrderType),
            time_in_force=frozenset(TimeInForce),
            asset_classes=frozenset({AssetClass.STOCK, AssetClass.CRYPTO} if crypto else {AssetClass.STOCK}),
            fractional_quantities=True,
            short_selling=True,
            bulk_cancel=True,
            streaming_updates=True,
            session_expiry=False,
            currencies=frozenset({"USD"}),
        )
        self._client: TradingClient | None = None
        self._stream: StreamThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = ConnectionState.DISCONNECTED
        self._last_error: str | None = None
        self.last_refresh: datetime | None = None
        self.latency_ms: float | None = None
        self._stream_live = asyncio.Event()
        self._stream_seen = False
        self._connecting = False
        self._stream_down_at: datetime | None = None
        self._resync_wanted = False
        self._resync_task: asyncio.Task[None] | None = None
        self._orders: OrderedDict[str, Order] = OrderedDict()
        # Orders placed elsewhere that no ``Order`` can describe: how much of each has filled.
        self._foreign: OrderedDict[str, _Progress] = OrderedDict()
        self._pending: dict[str, OrderRequest] = {}

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> AlpacaBroker:
        unknown = sorted(set(settings) - _GENERIC_KEYS - ACCOUNT_KEYS - _OWN_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_GENERIC_KEYS | _OWN_KEYS))
            hint = ""
            if any("key" in key or "secret" in key for key in unknown):
                hint = " (secrets belong in the keyring: run `trading-console set-creds ACCOUNT`)"
            raise ConfigError(f"alpaca account: unknown setting {unknown[0]!r}{hint}; allowed: {allowed}")
        try:
            name = account_name(settings.get("name"), "'name'")
        except ValueError as exc:
            raise ConfigError(f"alpaca account: {exc}") from None
        prefix = f"alpaca account {name!r}"
        kwargs: dict[str, Any] = {"name": name}
        for key in ("live", "crypto"):
            if key in settings:
                if not isinstance(settings[key], bool):
                    raise ConfigError(f"{prefix}: {key!r} must be true or false, not {settings[key]!r}")
                kwargs[key] = settings[key]
        currency = settings.get("currency", "USD")
        if not isinstance(currency, str) or currency.strip().upper() != "USD":
            raise ConfigError(
                f"{prefix}: 'currency' must be USD (Alpaca accounts are in USD), not {currency!r}"
            )
        for key, schemes in (("base_url", ("http://", "https://")), ("stream_url", ("ws://", "wss://"))):
            if key in settings:
                value = settings[key]
                if not isinstance(value, str) or not value.startswith(schemes) or len(value) > 300:
                    raise ConfigError(
                        f"{prefix}: {key!r} must be a URL starting with {' or '.join(schemes)}, not {value!r}"
                    )
                kwargs[key] = value
        for key, low, high in (("timeout", 0.1, 120.0), ("reconnect_delay", 0.01, 60.0)):
            if key in settings:
                value = settings[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                    raise ConfigError(
                        f"{prefix}: {key!r} must be a number of seconds from {low} to {high}, not {value!r}"
                    )
                kwargs[key] = float(value)
        for key in ("key_env", "secret_env"):
            if key in settings:
                value = settings[key]
                if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
                    raise ConfigError(
                        f"{prefix}: {key!r} must be an environment variable name such as "
                        f"ALPACA_API_KEY, not {value!r}"
                    )
                kwargs[key] = value
        return cls(**kwargs)

    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    # -- connection -----------------------------------------------------------------------
    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def is_connected(self) -> bool:
        return self._state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.DEGRADED)

    def account_status(self) -> AccountStatus:
        return AccountStatus(
            name=self.name,
            broker_type=self.broker_type,
            live=self.live,
            state=self._state,
            last_error=self._last_error,
            last_refresh=self.last_refresh,
            latency_ms=self.latency_ms,
            session_expires_at=None,
            currency=self.currency,
        )

    async def connect(self) -> None:
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._state = ConnectionState.CONNECTING
        self._last_error = None
        try:
            api_key = self._api_key or require_secret(self.name, "api_key", self._key_env)
            secret_key = self._secret_key or require_secret(self.name, "secret_key", self._secret_env)
            client = TradingClient(
                api_key=api_key,
                secret_key=secret_key,
                paper=not self.live,
                raw_data=True,
                url_override=self.base_url,
            )
            # alpaca-py would otherwise sleep 3 s in our worker thread and send again on 429 and
            # 504, which for a submit can place the same order twice.
            client._retry = 0
            client._retry_codes = []
            client._session = TimeoutSession(self.timeout)
            self._client = client
            self._note_account_flags(
                payload_dict(await self._read(client.get_account, what="read the account"), "account")
            )
        except BaseException as exc:
            self._client = None
            self._state = ConnectionState.FAILED
            self._last_error = redact(exc)
            raise
        self._stream_live = asyncio.Event()  # bound to this loop; a later connect may use another
        self._stream_seen = False
        self._stream_down_at = None
        self._resync_wanted = False
        self._connecting = True
        started = utcnow()
        self._start_stream(api_key, secret_key)
        try:
            try:
                await asyncio.wait_for(self._stream_live.wait(), self.timeout)
            except TimeoutError:
                self._last_error = self._last_error or "order update stream did not connect in time"
            self._state = ConnectionState.RESYNCING
            await self._resync(since=None)
        except BaseException as exc:
            await self.disconnect()
            self._state = ConnectionState.FAILED
            self._last_error = redact(exc)
            raise
        finally:
            self._connecting = False
        if self._stream_live.is_set():
            self._state = ConnectionState.CONNECTED
            self._stream_down_at = None
        else:
            # Whatever happens before the stream first connects is a gap like any other.
            self._state = ConnectionState.DEGRADED
            self._stream_down_at = started

    async def disconnect(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            self._resync_task = None
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(stream.stop, self.timeout + 2)
        client, self._client = self._client, None
        if client is not None:
            client._session.close()
        self._stream_live.clear()
        self._state = ConnectionState.DISCONNECTED

    def _note_account_flags(self, account: dict[str, Any]) -> None:
        blocked = [
            flag
            for flag in ("account_blocked", "trading_blocked", "trade_suspended_by_user")
            if account.get(flag)
        ]
        if blocked:
            self._last_error = f"Alpaca reports {', '.join(blocked)} on this account"
            log.warning("%s: %s", self.name, self._last_error)

    def _start_stream(self, api_key: str, secret_key: str) -> None:
        stream = UpdateStream(
            api_key,
            secret_key,
            paper=not self.live,
            raw_data=True,
            url_override=self.stream_url,
            websocket_params={
                "ping_interval": 10,
                "ping_timeout": 20,
                "max_queue": 1024,
                "open_timeout": self.timeout,
                "close_timeout": 1,
            },
            on_up=lambda: self._post(self._stream_up),
            on_down=lambda reason: self._post(self._stream_down, reason),
            reconnect_delay=self.reconnect_delay,
        )

        async def on_trade_update(message: dict[str, Any]) -> None:
            self._post(self._on_trade_update, message)

        stream.subscribe_trade_updates(on_trade_update)
        self._stream = StreamThread(stream, name=f"alpaca-stream-{self.name}")
        self._stream.start()

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Hand work from the stream's thread to our event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    def _stream_up(self) -> None:
        if self._client is None:
            return
        self._stream_live.set()
        first, self._stream_seen = not self._stream_seen, True
        if first and self._connecting:
            self._stream_down_at = None
            return
        self._state = ConnectionState.RESYNCING
        # A running resync may already have listed orders before this latest gap: go round again.
        self._resync_wanted = True
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.get_running_loop().create_task(self._resync_after_gap())

    def _stream_down(self, reason: str) -> None:
        if self._client is None:
            return
        self._stream_live.clear()
        self._last_error = reason
        if self._stream_down_at is None:
            self._stream_down_at = utcnow()
        if self._state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING):
            self._state = ConnectionState.DEGRADED

    async def _resync_after_gap(self) -> None:
        """The stream was down; what happened meanwhile is only in REST (Alpaca never replays)."""
        delay = self.reconnect_delay
        while self._client is not None and self._resync_wanted:
            self._resync_wanted = False
            try:
                await self._resync(since=self._stream_down_at or utcnow())
            except BrokerError as exc:
                self._resync_wanted = True
                self._last_error = f"resync after reconnect failed: {exc}"
                self._state = ConnectionState.DEGRADED
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if self._client is not None and self._stream_live.is_set():
            self._stream_down_at = None
            self._state = ConnectionState.CONNECTED
            self._last_error = None

    async def _resync(self, since: datetime | None) -> None:
        """Bring every order we know up to date. ``since`` marks the start of a stream gap:
        orders placed after it are listed too, and their fills are news."""
        client = self._require_client()
        history = since is not None
        listed = await self._read(
            client.get_orders,
            GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_LIST_LIMIT),
            what="list open orders",
        )
        if since is not None:
            listed += await self._read(
                client.get_orders,
                GetOrdersRequest(
                    status=QueryOrderStatus.ALL,
                    limit=_LIST_LIMIT,
                    after=since - _CLOCK_SLACK,
                    direction=Sort.ASC,
                ),
                what="list recent orders",
            )
        seen: set[str] = set()
        for payload in listed:
            order = self._ingest_quietly(payload, history=history)
            if order is not None and order.broker_order_id:
                seen.add(order.broker_order_id)
        for broker_id, order in list(self._orders.items()):
            if order.is_working and broker_id not in seen:
                payload = await self._read(client.get_order_by_id, broker_id, what="read an order")
                self._ingest_quietly(payload, history=history)
        self.last_refresh = utcnow()

    # -- orders ---------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> Order:
        refusal = self.capabilities.supports(request) or alpaca_refusal(request)
        if refusal:
            raise OrderRejectedError(refusal, broker=self.name, code="UNSUPPORTED")
        client = self._require_client()
        fields = order_fields(request)
        self._pending[request.client_order_id] = request
        try:
            payload = await self._call(client.post, "/orders", fields, op="submit", what="place the order")
        except (BrokerTimeoutError, BrokerConnectionError):
            # The order may exist: keep the request so a later sighting is matched to it.
            raise
        except BaseException:
            self._pending.pop(request.client_order_id, None)
            raise
        try:
            order = self._ingest(payload_dict(payload, "order"), request=request, history=True)
        except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
            raise BrokerConnectionError(
                f"Alpaca's answer to the order cannot be read{_MAYBE_PLACED}: {redact(exc)[:200]}",
                broker=self.name,
            ) from None
        return order.snapshot()

    async def cancel_order(self, broker_order_id: str) -> Order:
        client = self._require_client()
        check_order_id(broker_order_id, self.name)
        try:
            await self._call(client.cancel_order_by_id, broker_order_id, op="cancel", what="cancel the order")
        except OrderRejectedError:
            # Alpaca answers 422 when the order can no longer be cancelled: say where it stands.
            order = await self.get_order(broker_order_id)
            if order.is_terminal:
                return order
            raise
        return await self.get_order(broker_order_id)

    async def cancel_all_orders(self) -> list[str]:
        client = self._require_client()
        answers = await self._call(client.cancel_orders, op="cancel", what="cancel all orders")
        asked: list[str] = []
        for answer in answers if isinstance(answers, list) else []:
            if not isinstance(answer, dict) or not answer.get("id"):
                continue
            asked.append(str(answer["id"]))
            status = answer.get("status")
            if isinstance(status, int) and status >= 400:
                log.warning("%s: Alpaca could not cancel order %s (HTTP %s)", self.name, answer["id"], status)
        return asked

    async def get_order(self, broker_order_id: str) -> Order:
        client = self._require_client()
        check_order_id(broker_order_id, self.name)
        payload = await self._read(client.get_order_by_id, broker_order_id, what="read the order")
        return self._ingest_read(payload)

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        client = self._require_client()
        try:
            payload = await self._read(client.get_order_by_client_id, client_order_id, what="find the order")
        except OrderNotFoundError:
            return None
        return self._ingest_read(payload)

    async def get_open_orders(self) -> list[Order]:
        client = self._require_client()
        listed = await self._read(
            client.get_orders,
            GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_LIST_LIMIT),
            what="list open orders",
        )
        orders = [self._ingest_quietly(payload, history=False) for payload in listed]
        self.last_refresh = utcnow()
        return [order.snapshot() for order in orders if order is not None and order.is_working]

    # -- account --------------------------------------------------------------------------
    async def get_balance(self) -> Balance:
        client = self._require_client()
        account, positions = await asyncio.gather(
            self._read(client.get_account, what="read the account"),
            self._read(client.get_all_positions, what="list positions"),
        )
        account = payload_dict(account, "account")
        if not isinstance(positions, list):
            raise BrokerAPIError("Alpaca sent positions that are not a list", broker=self.name)
        unrealized = sum(
            (
                dec(p.get("unrealized_pl"), "unrealized_pl") or Decimal(0)
                for p in positions
                if isinstance(p, dict)
            ),
            Decimal(0),
        )
        self.last_refresh = utcnow()
        return Balance(
            account=self.name,
            currency=currency_of(account),
            cash=required(account, "cash"),
            equity=required(account, "equity"),
            buying_power=required(account, "buying_power"),
            unrealized_pnl=unrealized,
        )

    async def get_margin(self) -> MarginInfo:
        client = self._require_client()
        account = payload_dict(await self._read(client.get_account, what="read the account"), "account")
        equity = required(account, "equity")
        initial = dec(account.get("initial_margin"), "initial_margin") or Decimal(0)
        maintenance = dec(account.get("maintenance_margin"), "maintenance_margin") or Decimal(0)
        self.last_refresh = utcnow()
        return MarginInfo(
            account=self.name,
            currency=currency_of(account),
            initial_margin=initial,
            maintenance_margin=maintenance,
            available_funds=equity - initial,
            excess_liquidity=equity - maintenance,
            leverage=dec(account.get("multiplier"), "multiplier") or Decimal(1),
        )

    async def get_positions(self) -> list[Position]:
        client = self._require_client()
        listed = await self._read(client.get_all_positions, what="list positions")
        if not isinstance(listed, list):
            raise BrokerAPIError("Alpaca sent positions that are not a list", broker=self.name)
        try:
            positions = [position_from_payload(payload_dict(p, "position"), self.name) for p in listed]
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerAPIError(
                f"Alpaca sent a position that cannot be read: {unreadable(exc)}", broker=self.name
            ) from None
        self.last_refresh = utcnow()
        return positions

    def _ingest_read(self, payload: Any) -> Order:
        """``_ingest`` for a single order asked for: what cannot be read is an API error."""
        try:
            return self._ingest(payload_dict(payload, "order"), history=False).snapshot()
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerAPIError(
                f"Alpaca sent an order that cannot be shown: {unreadable(exc)}", broker=self.name
            ) from None

    # -- the one path every order payload takes -------------------------------------------
    def _on_trade_update(self, message: Any) -> None:
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("order"), dict):
            log.warning("%s: ignored a trade update without an order", self.name)
            return
        self._ingest_quietly(data["order"], history=True, event=data)

    def _ingest_quietly(
        self, payload: Any, *, history: bool, event: dict[str, Any] | None = None
    ) -> Order | None:
        """``_ingest`` for lists and the stream, where one unreadable payload must not stop the rest."""
        try:
            return self._ingest(payload_dict(payload, "order"), history=history, event=event)
        except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: ignored an order Alpaca sent that cannot be read: %s", self.name, redact(exc))
            return None

    def _ingest(
        self,
        payload: dict[str, Any],
        *,
        history: bool,
        request: OrderRequest | None = None,
        event: dict[str, Any] | None = None,
    ) -> Order:
        """Apply one order payload; emit each new fill, then the order if it changed.

        ``history`` says whether the fills already on an order we have never seen are news: they
        are for our own orders, on the stream and for orders placed during a stream gap; an order
        merely found on a listing (placed before we connected) reports none of its past.
        """
        broker_id = str(payload.get("id") or "")
        if not broker_id:
            raise BrokerAPIError("Alpaca sent an order without an id", broker=self.name)
        order = self._orders.get(broker_id)
        fresh = order is None
        if not fresh:
            history = True  # anything new on an order we already follow is news
        if order is None:
            request = request or self._pending.get(str(payload.get("client_order_id") or ""))
            history = history or request is not None
            if request is None:
                try:
                    request = request_from_payload(payload)
                except ValueError:
                    # Not an order we can show (a dollar amount, a multi-leg order), but its
                    # executions move the position all the same.
                    self._follow_foreign(broker_id, payload, event, history=history)
                    raise
            self._pending.pop(request.client_order_id, None)
            order = Order(
                request=request,
                account=self.name,
                broker_order_id=broker_id,
                created_at=parse_time(payload.get("created_at")) or utcnow(),
            )
            reported = self._foreign.pop(broker_id, None)
            if reported is not None:
                # Followed by its executions until now (a dollar amount that has since got a
                # quantity): what was reported then is not reported again.
                order.filled_quantity, order.avg_fill_price = reported.filled, reported.average
            self._remember(broker_id, order)
        fills, changed = self._apply(order, payload, event, history=history)
        for fill in fills:
            self._emit(fill)
        if fresh or changed:
            self._emit(order.snapshot())
        return order

    def _apply(
        self, order: Order, payload: dict[str, Any], event: dict[str, Any] | None, *, history: bool
    ) -> tuple[list[Fill], bool]:
        """Returns the new fills and whether the order changed at all."""
        cumulative = dec(payload.get("filled_qty"), "filled_qty") or Decimal(0)
        if cumulative > order.quantity:
            raise BrokerAPIError(
                f"Alpaca reported {cumulative} filled of order {order.broker_order_id} for {order.quantity}",
                broker=self.name,
            )
        average = dec(payload.get("filled_avg_price"), "filled_avg_price")
        at = parse_time(payload.get("updated_at")) or utcnow()
        fills: list[Fill] = []
        changed = False
        if cumulative > order.filled_quantity and not history:
            order.filled_quantity = cumulative
            order.avg_fill_price = average
            changed = True
        elif cumulative > order.filled_quantity:
            fill = self._fill_for(order, cumulative, average, event, at)
            if fill is not None and order.apply_fill(fill):
                fills.append(fill)
        if average is not None and cumulative > 0 and order.filled_quantity == cumulative:
            order.avg_fill_price = average  # Alpaca's own average is the one to show
        target = map_status(str(payload.get("status") or ""), cumulative, order.quantity)
        if target is not order.status and can_transition(order.status, target):
            if target is OrderStatus.REJECTED:
                order.reject_code = "BROKER_REJECTED"
                order.reject_reason = str(payload.get("reject_reason") or "Alpaca rejected the order")
            changed = order.transition(target, at=at) or changed
        elif target is not order.status:
            # A listing older than an update already applied: the newer state stands.
            log.debug(
                "%s: kept %s for %s over a stale %s",
                self.name,
                order.status.value,
                order.broker_order_id,
                target.value,
            )
        return fills, changed or bool(fills)

    def _fill_for(
        self,
        order: Order,
        cumulative: Decimal,
        average: Decimal | None,
        event: dict[str, Any] | None,
        at: datetime,
    ) -> Fill | None:
        """The execution(s) that took the order from what we knew to ``cumulative``."""
        return self._execution(
            _Progress(order.filled_quantity, order.avg_fill_price),
            FillSource(str(order.broker_order_id), order.client_order_id, order.symbol, order.side),
            cumulative,
            average,
            event,
            at,
        )

    def _execution(
        self,
        known: _Progress,
        source: FillSource,
        cumulative: Decimal,
        average: Decimal | None,
        event: dict[str, Any] | None,
        at: datetime,
    ) -> Fill | None:
        delta = cumulative - known.filled
        price: Decimal | None = None
        if event is not None and event.get("event") in ("fill", "partial_fill"):
            if dec(event.get("qty"), "qty") == delta:
                price = dec(event.get("price"), "price")
            at = parse_time(event.get("timestamp")) or at
        if price is None and average is not None:
            # Several executions seen at once (after a gap): their average price, from the totals.
            known_cost = (known.average or Decimal(0)) * known.filled
            derived = (average * cumulative - known_cost) / delta
            price = derived if derived > 0 else average
        if price is None or price <= 0:
            log.warning("%s: %s filled %s but Alpaca sent no price yet", self.name, source.broker_id, delta)
            return None
        if price.as_tuple().exponent < -9:  # type: ignore[operator]
            price = price.quantize(Decimal("1e-9")).normalize()
        return Fill(
            # The same id whichever way the execution is seen: stream, listing, or both.
            fill_id=f"{source.broker_id}:{wire_decimal(cumulative)}",
            account=self.name,
            symbol=source.symbol,
            side=source.side,
            quantity=delta,
            price=price,
            currency="USD",
            broker_order_id=source.broker_id,
            client_order_id=source.client_order_id,
            timestamp=at,
        )

    def _follow_foreign(
        self, broker_id: str, payload: dict[str, Any], event: dict[str, Any] | None, *, history: bool
    ) -> None:
        """Emit the new executions of an order placed elsewhere that no ``Order`` can describe."""
        cumulative = dec(payload.get("filled_qty"), "filled_qty") or Decimal(0)
        average = dec(payload.get("filled_avg_price"), "filled_avg_price")
        known = self._foreign.get(broker_id)
        if known is None:
            # Found on a listing (placed before we connected): its past is not news.
            known = _Progress(Decimal(0), None) if history else _Progress(cumulative, average)
            self._foreign[broker_id] = known
            while len(self._foreign) > _MAX_TRACKED:
                self._foreign.popitem(last=False)
        if cumulative <= known.filled:
            return
        fill = self._execution(
            known,
            foreign_source(broker_id, payload),
            cumulative,
            average,
            event,
            parse_time(payload.get("updated_at")) or utcnow(),
        )
        if fill is None:
            return
        self._foreign[broker_id] = _Progress(cumulative, average or fill.price)
        self._emit(fill)

    def _remember(self, broker_id: str, order: Order) -> None:
        self._orders[broker_id] = order
        if len(self._orders) > _MAX_TRACKED:
            for old_id, old in list(self._orders.items()):
                if len(self._orders) <= _MAX_TRACKED:
                    break
                if old.is_terminal:
                    del self._orders[old_id]

    # -- calling alpaca-py ----------------------------------------------------------------
    def _require_client(self) -> TradingClient:
        if self._client is None:
            raise BrokerConnectionError("not connected to Alpaca", broker=self.name)
        return self._client

    async def _read(self, fn: Callable[..., Any], *args: Any, what: str) -> Any:
        """A read: retried with backoff, on transient failures only; the same read asked for
        twice at once (``get_balance`` and ``get_positions`` both list positions) is sent once."""
        return await self._reads.read(what + repr(args), lambda: self._read_retrying(fn, *args, what=what))

    async def _read_retrying(self, fn: Callable[..., Any], *args: Any, what: str) -> Any:
        async for attempt in read_retrying(_READ_ATTEMPTS, first_wait=0.2):
            with attempt:
                return await self._call(fn, *args, op="read", what=what)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, fn: Callable[..., Any], *args: Any, op: str, what: str) -> Any:
        """One call in a worker thread, never retried here; failures become our errors."""
        maybe = _MAYBE_PLACED if op == "submit" else ""
        started = time.monotonic()
        try:
            return await asyncio.to_thread(fn, *args)
        except APIError as exc:
            raise api_error(exc, broker=self.name, op=op, what=what) from None
        except ValueError as exc:  # a 2xx answer that is not JSON
            error_cls = BrokerConnectionError if op == "submit" else BrokerAPIError
            raise error_cls(
                f"Alpaca's answer cannot be read when asked to {what}{maybe}: {redact(exc)[:200]}",
                broker=self.name,
            ) from None
        except requests.Timeout:
            raise BrokerTimeoutError(
                f"Alpaca did not answer within {self.timeout:g} s when asked to {what}{maybe}",
                broker=self.name,
            ) from None
        except requests.RequestException as exc:
            raise BrokerConnectionError(
                f"lost the connection to Alpaca when asked to {what}{maybe} ({type(exc).__name__})",
                broker=self.name,
            ) from None
        finally:
            self.latency_ms = round((time.monotonic() - started) * 1000, 1)
