"""A loopback stand-in for TWS / IB Gateway that speaks the TWS API socket protocol.

The wire format is the real one: the client opens with ``API\\0`` and a length-prefixed version
range, the server answers with its version and connection time, the client sends startApi, the
server sends managedAccounts and nextValidId, and from then on every message is a 4-byte
big-endian length followed by NUL-terminated text fields, the first being the message id.

It announces server version 176, the newest that both ib_async (up to 178) and ib_insync (up to
176) accept, and writes every message with the field lists their decoders read at that version
(openOrder with faProfile, execDetails without pendingPriceRevision, errors with the
advanced-reject field, ...).

It is stateful enough to behave like a paper account: orders rest, fill (fully or in parts) at
the instrument's price, trigger on price moves, are cancelled one by one or all at once, move
cash and positions, and are replayed on request (open orders, completed orders, executions,
positions, account values and summary). Tests steer it with ``react()`` (what to do with the
next order), ``fill()``, ``cancel()``, ``set_status()``, ``set_price()``, ``send_error()``,
``send_raw()``, ``replies`` (canned answers), ``latency``, ``drop_connections()`` and
``stop_listening()`` / ``start_listening()``.

It also plays the message sequences the TWS API documents and real sessions show:

- an orderStatus(Filled) before the execDetails that make it so (``fill(..., status_first=True)``,
  the ``fill_status_first()`` reaction, ``withhold=True`` and ``release_executions()``);
- an execution correction: the same execDetails again with the execId's last part raised
  (``correct()``);
- informational codes about a working order (10349, 399, 404, ...: the ``notice()`` reaction);
- an order modified in TWS: openOrder again with a new quantity or price (``modify()``);
- CFD, option, future and forex contracts (``default_instruments()``);
- contract details, market data lines and snapshots (``market_data``, see ``tws_market_data``).
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from .tws_market_data import REQUESTS as MARKET_DATA_REQUESTS
from .tws_market_data import MarketData

SERVER_VERSION = 176
MIN_CLIENT_VERSION = 157
UNSET_DOUBLE = "1.7976931348623157E308"
TWS_ZONE = ZoneInfo("US/Eastern")

# Incoming (client -> TWS) message ids.
PLACE_ORDER, CANCEL_ORDER, REQ_OPEN_ORDERS, REQ_ACCOUNT_UPDATES, REQ_EXECUTIONS, REQ_IDS = 3, 4, 5, 6, 7, 8
REQ_ALL_OPEN_ORDERS, REQ_MANAGED_ACCTS, REQ_CURRENT_TIME, REQ_GLOBAL_CANCEL = 16, 17, 49, 58
REQ_POSITIONS, REQ_ACCOUNT_SUMMARY, CANCEL_ACCOUNT_SUMMARY, CANCEL_POSITIONS = 61, 62, 63, 64
START_API, REQ_ACCOUNT_UPDATES_MULTI, REQ_COMPLETED_ORDERS = 71, 76, 99

# Outgoing (TWS -> client) message ids.
ORDER_STATUS, ERR_MSG, OPEN_ORDER, ACCT_VALUE, PORTFOLIO_VALUE, ACCT_UPDATE_TIME = 3, 4, 5, 6, 7, 8
NEXT_VALID_ID, EXECUTION_DATA, MANAGED_ACCTS, CURRENT_TIME, OPEN_ORDER_END = 9, 11, 15, 49, 53
ACCT_DOWNLOAD_END, EXECUTION_DATA_END, COMMISSION_REPORT, POSITION_DATA, POSITION_END = 54, 55, 59, 61, 62
ACCOUNT_SUMMARY, ACCOUNT_SUMMARY_END, ACCOUNT_UPDATE_MULTI, ACCOUNT_UPDATE_MULTI_END = 63, 64, 73, 74
COMPLETED_ORDER, COMPLETED_ORDERS_END = 101, 102

WORKING = ("PendingSubmit", "PreSubmitted", "Submitted")
MARGIN_TEXT = (
    "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION "
    "YOUR EQUITY WITH LOAN VALUE [{equity} USD] MUST EXCEED THE INITIAL MARGIN [{margin} USD]"
)


def text(value: object) -> str:
    """A field as TWS writes it: empty for None, 1/0 for booleans, plain decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")
    return str(value)


def frame(*fields: object) -> bytes:
    payload = "".join(text(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def tws_time(moment: datetime) -> str:
    return moment.astimezone(TWS_ZONE).strftime("%Y%m%d %H:%M:%S US/Eastern")


@dataclass
class Instrument:
    sec_type: str
    symbol: str
    price: Decimal
    con_id: int
    expiry: str = ""
    strike: Decimal | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""

    @property
    def mult(self) -> Decimal:
        return Decimal(self.multiplier) if self.multiplier else Decimal(1)

    @property
    def margin_rate(self) -> Decimal:
        """Initial margin as a share of the position's value (Reg T stocks, roughly SPAN futures)."""
        return {"STK": Decimal("0.5"), "OPT": Decimal(1), "FUT": Decimal("0.05")}.get(
            self.sec_type, Decimal("0.03")
        )

    def contract(self, exchange: str | None = None) -> list[object]:
        """conId .. tradingClass as openOrder, execDetails and position carry them."""
        return [
            self.con_id,
            self.symbol,
            self.sec_type,
            self.expiry,
            self.strike,
            self.right,
            self.multiplier,
            exchange or self.exchange,
            self.currency,
            self.local_symbol,
            self.trading_class,
        ]

    def portfolio_contract(self) -> list[object]:
        return [
            self.con_id,
            self.symbol,
            self.sec_type,
            self.expiry,
            self.strike,
            self.right,
            self.multiplier,
            self.primary_exchange or self.exchange,
            self.currency,
            self.local_symbol,
            self.trading_class,
        ]


def default_instruments() -> list[Instrument]:
    return [
        Instrument(
            "STK",
            "AAPL",
            Decimal("150"),
            265598,
            primary_exchange="NASDAQ",
            local_symbol="AAPL",
            trading_class="NMS",
        ),
        Instrument(
            "STK",
            "MSFT",
            Decimal("300"),
            272093,
            primary_exchange="NASDAQ",
            local_symbol="MSFT",
            trading_class="NMS",
        ),
        Instrument(
            "OPT",
            "AAPL",
            Decimal("5"),
            650001,
            expiry="20240119",
            strike=Decimal("150"),
            right="C",
            multiplier="100",
            local_symbol="AAPL  240119C00150000",
            trading_class="AAPL",
        ),
        Instrument(
            "FUT",
            "ES",
            Decimal("5000.25"),
            620731,
            expiry="20250321",
            multiplier="50",
            exchange="CME",
            local_symbol="ESH5",
            trading_class="ES",
        ),
        Instrument(
            "CFD",
            "AAPL",
            Decimal("150"),
            143631496,
            local_symbol="AAPL",
            trading_class="AAPL",
        ),
        Instrument(
            "CASH",
            "EUR",
            Decimal("1.085"),
            12087792,
            exchange="IDEALPRO",
            local_symbol="EUR.USD",
            trading_class="EUR.USD",
        ),
    ]


@dataclass
class PeerOrder:
    order_id: int
    client_id: int
    perm_id: int
    instrument: Instrument
    exchange: str
    action: str
    quantity: Decimal
    order_type: str
    limit: Decimal | None
    aux: Decimal | None
    trailing_percent: Decimal | None
    tif: str
    account: str
    order_ref: str
    fields: list[str]
    status: str = "PendingSubmit"
    filled: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    last_fill_price: Decimal = Decimal(0)
    anchor: Decimal | None = None
    triggered: bool = False
    completed_time: str = ""
    # Attached orders: the parent's order id (0: none) and the OCA group ("" none).
    parent_id: int = 0
    oca_group: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def working(self) -> bool:
        return self.status in WORKING

    @property
    def sign(self) -> int:
        return 1 if self.action == "BUY" else -1


@dataclass
class PeerExecution:
    exec_id: str
    order: PeerOrder
    time: datetime
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    commission: Decimal
    realized_pnl: Decimal | None


@dataclass
class PeerAccount:
    code: str
    cash: Decimal
    currency: str = "USD"
    realized: Decimal = Decimal(0)
    # con_id -> [instrument, quantity, average cost per unit of price]
    positions: dict[int, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Reaction:
    """What the peer does with the next order: see the constructors below."""

    kind: str
    quantity: Decimal | None = None
    code: int = 0
    message: str = ""
    seconds: float = 0.0


def fill() -> Reaction:
    return Reaction("fill")


def partial(quantity: str | int) -> Reaction:
    return Reaction("partial", quantity=Decimal(str(quantity)))


def rest() -> Reaction:
    return Reaction("rest")


def reject(
    code: int = 201, message: str = "Order rejected - reason:Order size exceeds the limit"
) -> Reaction:
    return Reaction("reject", code=code, message=message)


def notice(code: int, message: str, *, alone: bool = False) -> Reaction:
    """Send a warning about the order (399, 404, 10349, ...), then treat it as usual. alone=True
    lets the client read the warning by itself before the order's openOrder and orderStatus
    follow, as when TWS sends them a moment apart."""
    return Reaction("notice", code=code, message=message, seconds=0.05 if alone else 0.0)


def fill_status_first() -> Reaction:
    """Fill the order at once, but say Filled before sending its execution, which is held back
    until ``release_executions()``."""
    return Reaction("fill_status_first")


def silent() -> Reaction:
    """Take the order into the book and answer nothing (the client times out)."""
    return Reaction("silent")


def drop(*, after: bool = False) -> Reaction:
    """Close the connection before reading the order, or (after=True) once it is in the book."""
    return Reaction("drop_after" if after else "drop")


def delay(seconds: float) -> Reaction:
    """Wait, then treat the order as usual (the next reaction, if any, still applies)."""
    return Reaction("delay", seconds=seconds)


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    version: int
    client_id: int = -1
    positions: bool = False
    account_updates: str | None = None
    summaries: dict[int, set[str]] = field(default_factory=dict)

    def send(self, *fields: object) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(*fields))


class TwsPeer:
    def __init__(
        self,
        accounts: tuple[str, ...] = ("DU1234567",),
        *,
        cash: Decimal | int = 100_000,
        instruments: list[Instrument] | None = None,
        next_order_id: int = 1,
        commission_per_unit: Decimal = Decimal("0.005"),
        min_commission: Decimal = Decimal("1"),
        fx_rates: dict[str, Decimal] | None = None,
    ) -> None:
        self.accounts = {code: PeerAccount(code, Decimal(cash)) for code in accounts}
        self.instruments = default_instruments() if instruments is None else list(instruments)
        self.orders: list[PeerOrder] = []
        # The placeOrder messages that named an order already placed: modifications.
        self.modifications: list[dict[str, str]] = []
        self.executions: list[PeerExecution] = []
        self.received: list[tuple[int, list[str]]] = []
        self.reactions: deque[Reaction] = deque()
        # Request id -> messages to answer it with instead of the peer's own state (recorded or
        # documented payloads); a field "$REQ_ID" is replaced by the request's id.
        self.replies: dict[int, list[list[object]]] = {}
        self.latency = 0.0
        self.send_commission_reports = True
        # Executions filled with withhold=True, sent by release_executions().
        self.withheld: list[PeerExecution] = []
        # Orders sent with transmit off, held until their group's last order is transmitted.
        self.untransmitted: list[PeerOrder] = []
        # Every placeOrder as read (see ``parse_place_order``), in arrival order.
        self.placed: list[dict[str, str]] = []
        self.fx_rates = dict(fx_rates or {"EUR": Decimal("1.085")})
        self.commission_per_unit = commission_per_unit
        self.min_commission = min_commission
        self.host = "127.0.0.1"
        self.port = 0
        self._next_order_id = next_order_id
        self._next_perm_id = 1_000_000_001
        self._clients: list[_Client] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Contract details, market data lines and snapshots (see tws_market_data).
        self.market_data = MarketData(self)

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> TwsPeer:
        await self.start_listening()
        return self

    async def start_listening(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections (as when TWS is not running); open ones stay up."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def stop(self) -> None:
        await self.stop_listening()
        self.drop_connections()
        # Aborted sockets end every handler by themselves; cancelling them instead makes asyncio
        # log the cancellation as an error.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)

    def drop_connections(self) -> None:
        """Close every client socket at once, as a crashing or restarting TWS does."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._clients.clear()

    @property
    def connected_client_ids(self) -> list[int]:
        return [c.client_id for c in self._clients if c.client_id >= 0]

    # -- test controls ------------------------------------------------------------------
    def react(self, *reactions: Reaction) -> None:
        self.reactions.extend(reactions)

    def requests(self, msg_id: int) -> list[list[str]]:
        return [fields for _, fields in self.received if fields and fields[0] == str(msg_id)]

    def instrument(self, symbol: str, sec_type: str = "STK") -> Instrument:
        return next(i for i in self.instruments if i.symbol == symbol and i.sec_type == sec_type)

    def order(self, order_ref: str) -> PeerOrder:
        return next(o for o in self.orders if o.order_ref == order_ref)

    def send_raw(self, *fields: object) -> None:
        """Send one message, field by field, to every connected client."""
        for client in self._clients:
            client.send(*fields)

    def send_summary_value(
        self, tag: str, value: object, currency: str = "USD", account: str | None = None
    ) -> int:
        """Push one account summary value to every live summary subscription, as TWS does when a
        figure changes. Returns how many subscriptions it went to."""
        code = account or next(iter(self.accounts))
        sent = 0
        for client in self._clients:
            for req_id in client.summaries:
                client.send(ACCOUNT_SUMMARY, 1, req_id, code, tag, value, currency)
                sent += 1
        return sent

    def send_account_summary(self) -> None:
        """Push every subscribed summary again, from the peer's own books."""
        for client in self._clients:
            for req_id in client.summaries:
                self._send_summary(client, req_id)

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        for client in self._clients:
            client.send(ERR_MSG, 2, req_id, code, message, "")

    def set_price(self, symbol: str, price: Decimal | str, sec_type: str = "STK") -> None:
        instrument = self.instrument(symbol, sec_type)
        instrument.price = Decimal(str(price))
        for order in [o for o in self.orders if o.instrument is instrument and o.working]:
            self._work(order)
        self._push_account_updates()

    def fill(
        self,
        order: PeerOrder,
        quantity: Decimal | int | str | None = None,
        price: Decimal | str | None = None,
        *,
        notify: bool = True,
        status_first: bool = False,
        withhold: bool = False,
    ) -> PeerExecution:
        """Execute (part of) a working order. notify=False keeps it from the client, as when
        TWS loses its connection to IB and the client must resync to learn of it.
        status_first=True sends orderStatus and openOrder before execDetails (the API does not
        order them); withhold=True also holds execDetails and the commission report back
        until ``release_executions()`` (TWS still has the execution: reqExecutions lists it)."""
        assert order.working, f"order {order.order_id} is {order.status}"
        shares = order.remaining if quantity is None else Decimal(str(quantity))
        assert 0 < shares <= order.remaining
        at = Decimal(str(price)) if price is not None else self._fill_price(order)
        previous = order.filled
        order.filled += shares
        order.avg_price = (order.avg_price * previous + at * shares) / order.filled
        order.last_fill_price = at
        if order.remaining == 0:
            order.status = "Filled"
            order.completed_time = tws_time(datetime.now(UTC))
        else:
            order.status = "Submitted"
        commission = max(self.min_commission, (self.commission_per_unit * shares).quantize(Decimal("0.01")))
        realized = self._book(order, shares, at, commission)
        execution = PeerExecution(
            exec_id=f"0000e0d5.{order.perm_id:08x}.{len(self.executions) + 1:02d}.01",
            order=order,
            time=datetime.now(UTC),
            shares=shares,
            price=at,
            cum_qty=order.filled,
            avg_price=order.avg_price,
            commission=commission,
            realized_pnl=realized,
        )
        self.executions.append(execution)
        if notify:
            self._notify_fill(order, execution, status_first=status_first, withhold=withhold)
        self._after_fill(order)
        return execution

    def _notify_fill(
        self, order: PeerOrder, execution: PeerExecution, *, status_first: bool, withhold: bool
    ) -> None:
        owner = self._owner(order)
        if owner is not None and not (status_first or withhold):
            owner.send(*self._exec_details(-1, execution))
            owner.send(*self._order_status(order))
            owner.send(*self._open_order(order, owner.version))
            if self.send_commission_reports:
                owner.send(*self._commission_report(execution))
        elif owner is not None:
            owner.send(*self._order_status(order))
            owner.send(*self._open_order(order, owner.version))
            if withhold:
                self.withheld.append(execution)
            else:
                self._send_execution(owner, execution)
        self._push_positions(order.instrument, self.accounts[order.account])
        self._push_account_updates()

    def release_executions(self) -> None:
        """Send the executions ``fill(..., withhold=True)`` held back."""
        while self.withheld:
            execution = self.withheld.pop(0)
            owner = self._owner(execution.order)
            if owner is not None:
                self._send_execution(owner, execution)

    def correct(
        self,
        execution: PeerExecution,
        price: Decimal | str | None = None,
        shares: Decimal | int | None = None,
    ) -> PeerExecution:
        """Publish a correction of ``execution``: "an additional execDetails callback with all
        parameters identical except for the execID", which "will differ only in the digits after
        the final period" (TWS API, Executions and Commissions). Optionally at a corrected
        price or size (a trade bust or price adjustment); the order's figures follow."""
        base, _, revision = execution.exec_id.rpartition(".")
        order = execution.order
        corrected = PeerExecution(
            exec_id=f"{base}.{int(revision, 16) + 1:02x}",
            order=order,
            time=execution.time,
            shares=execution.shares if shares is None else Decimal(str(shares)),
            price=execution.price if price is None else Decimal(str(price)),
            cum_qty=execution.cum_qty,
            avg_price=execution.avg_price,
            commission=execution.commission,
            realized_pnl=execution.realized_pnl,
        )
        self.executions.append(corrected)
        owner = self._owner(order)
        if owner is not None:
            self._send_execution(owner, corrected)
        return corrected

    def modify(
        self,
        order: PeerOrder,
        quantity: Decimal | int | str | None = None,
        limit: Decimal | str | None = None,
    ) -> None:
        """Change a working order from the TWS side: TWS sends openOrder again, with the same
        order id and permId and the new totalQuantity or limit price, then its status."""
        assert order.working, f"order {order.order_id} is {order.status}"
        if quantity is not None:
            order.quantity = Decimal(str(quantity))
            assert order.quantity > order.filled
        if limit is not None:
            order.limit = Decimal(str(limit))
        owner = self._owner(order)
        if owner is not None:
            owner.send(*self._open_order(order, owner.version))
            owner.send(*self._order_status(order))

    def _send_execution(self, client: _Client, execution: PeerExecution) -> None:
        client.send(*self._exec_details(-1, execution))
        if self.send_commission_reports:
            client.send(*self._commission_report(execution))

    def set_status(self, order: PeerOrder, status: str) -> None:
        """Change an order's status from the TWS side (Inactive when IB deactivates it, ...)."""
        order.status = status
        owner = self._owner(order)
        if owner is not None:
            owner.send(*self._order_status(order))

    def cancel(self, order: PeerOrder, reason: str = "", *, notify: bool = True) -> None:
        """Cancel from the TWS side (a trader in TWS, end of day, risk desk)."""
        order.status = "Cancelled"
        order.completed_time = tws_time(datetime.now(UTC))
        owner = self._owner(order) if notify else None
        if owner is not None:
            owner.send(ERR_MSG, 2, order.order_id, 202, f"Order Canceled - reason:{reason}", "")
            owner.send(*self._order_status(order))

    # -- connection handling ------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        client: _Client | None = None
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            versions = (await self._read(reader)).decode()
            low, _, high = versions.split(" ")[0].lstrip("v").partition("..")
            version = min(int(high or low), SERVER_VERSION)
            if version < max(int(low), MIN_CLIENT_VERSION):
                return
            writer.write(frame(version, tws_time(datetime.now(UTC))))
            client = _Client(writer, version)
            while True:
                fields = (await self._read(reader)).decode().split("\0")[:-1]
                if not fields:
                    continue
                self.received.append((client.client_id, fields))
                if self.latency:
                    await asyncio.sleep(self.latency)
                if not await self._handle(client, fields):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if client in self._clients:
                self._clients.remove(client)
            if client is not None:
                self.market_data.forget(client)
            writer.transport.abort()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> bytes:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        return await reader.readexactly(size)

    async def _handle(self, client: _Client, fields: list[str]) -> bool:
        msg_id = int(fields[0])
        if msg_id == START_API:
            client_id = int(fields[2])
            if client_id in self.connected_client_ids:
                client.send(
                    ERR_MSG,
                    2,
                    -1,
                    326,
                    "Unable to connect as the client id is already in use. Retry with a unique client id.",
                    "",
                )
                return False
            client.client_id = client_id
            self._clients.append(client)
            client.send(MANAGED_ACCTS, 1, ",".join(self.accounts))
            client.send(NEXT_VALID_ID, 1, self._next_order_id)
            for farm in (
                "Market data farm connection is OK:usfarm",
                "HMDS data farm connection is OK:ushmds",
                "Sec-def data farm connection is OK:secdefil",
            ):
                code = 2104 if farm.startswith("Market") else 2106 if farm.startswith("HMDS") else 2158
                client.send(ERR_MSG, 2, -1, code, farm, "")
        elif client.client_id < 0:
            return False  # TWS drops a client that talks before startApi
        elif msg_id in self.replies:
            req_id = fields[2] if len(fields) > 2 else ""
            for message in self.replies[msg_id]:
                client.send(*[req_id if f == "$REQ_ID" else f for f in message])
        elif msg_id == PLACE_ORDER:
            return await self._place_order(client, fields)
        elif msg_id == CANCEL_ORDER:
            self._cancel_request(client, int(fields[2]))
        elif msg_id == REQ_GLOBAL_CANCEL:
            for order in [o for o in self.orders if o.working]:
                self.cancel(order)
        elif msg_id in (REQ_OPEN_ORDERS, REQ_ALL_OPEN_ORDERS):
            for order in self.orders:
                if order.working and (msg_id == REQ_ALL_OPEN_ORDERS or order.client_id == client.client_id):
                    client.send(*self._open_order(order, client.version))
                    client.send(*self._order_status(order))
            client.send(OPEN_ORDER_END, 1)
        elif msg_id == REQ_COMPLETED_ORDERS:
            for order in self.orders:
                if not order.working:
                    client.send(*self._completed_order(order, client.version))
            client.send(COMPLETED_ORDERS_END)
        elif msg_id == REQ_EXECUTIONS:
            self._executions_request(client, fields)
        elif msg_id == REQ_POSITIONS:
            client.positions = True
            for account in self.accounts.values():
                for instrument, quantity, cost in account.positions.values():
                    client.send(*self._position(account, instrument, quantity, cost))
            client.send(POSITION_END, 1)
        elif msg_id == CANCEL_POSITIONS:
            client.positions = False
        elif msg_id == REQ_ACCOUNT_UPDATES:
            client.account_updates = fields[3] if fields[2] == "1" and fields[3] in self.accounts else None
            if client.account_updates:
                self._send_account_updates(client, self.accounts[client.account_updates])
            if fields[2] == "1":
                client.send(ACCT_DOWNLOAD_END, 1, fields[3])
        elif msg_id == REQ_ACCOUNT_SUMMARY:
            req_id = int(fields[2])
            client.summaries[req_id] = set(fields[4].split(","))
            self._send_summary(client, req_id)
            client.send(ACCOUNT_SUMMARY_END, 1, req_id)
        elif msg_id == CANCEL_ACCOUNT_SUMMARY:
            client.summaries.pop(int(fields[2]), None)
        elif msg_id == REQ_ACCOUNT_UPDATES_MULTI:
            req_id, account = int(fields[2]), self.accounts.get(fields[3])
            if account is not None:
                for tag, value, currency in self._account_values(account)[:4]:
                    client.send(ACCOUNT_UPDATE_MULTI, 1, req_id, account.code, "", tag, value, currency)
            client.send(ACCOUNT_UPDATE_MULTI_END, 1, req_id)
        elif msg_id == REQ_CURRENT_TIME:
            client.send(CURRENT_TIME, 1, int(datetime.now(UTC).timestamp()))
        elif msg_id == REQ_IDS:
            client.send(NEXT_VALID_ID, 1, self._next_order_id)
        elif msg_id == REQ_MANAGED_ACCTS:
            client.send(MANAGED_ACCTS, 1, ",".join(self.accounts))
        elif msg_id in MARKET_DATA_REQUESTS:
            self.market_data.handle(client, fields)
        return True

    # -- orders -------------------------------------------------------------------------
    async def _place_order(self, client: _Client, fields: list[str]) -> bool:
        reaction = self.reactions.popleft() if self.reactions else None
        while reaction is not None and reaction.kind == "delay":
            await asyncio.sleep(reaction.seconds)
            reaction = self.reactions.popleft() if self.reactions else None
        kind = reaction.kind if reaction else "auto"
        if kind == "drop":
            return False
        parsed = parse_place_order(fields, client.version)
        self.placed.append(parsed)
        order_id = int(parsed["order_id"])
        if parsed["what_if"] == "1":
            return True
        existing = next(
            (o for o in self.orders if o.client_id == client.client_id and o.order_id == order_id), None
        )
        if existing is not None:
            return self._modify_request(client, existing, parsed)
        instrument = self._find_instrument(parsed)
        if instrument is None:
            client.send(
                ERR_MSG, 2, order_id, 200, "No security definition has been found for the request", ""
            )
            return True
        if kind in ("reject", "notice"):
            assert reaction is not None
            client.send(ERR_MSG, 2, order_id, reaction.code, reaction.message, "")
            if kind == "reject":
                return True
            if reaction.seconds:
                await client.writer.drain()
                await asyncio.sleep(reaction.seconds)
        account = self.accounts.get(parsed["account"]) or next(iter(self.accounts.values()))
        order = PeerOrder(
            order_id=order_id,
            client_id=client.client_id,
            perm_id=self._next_perm_id,
            instrument=instrument,
            exchange=parsed["exchange"] or instrument.exchange,
            action=parsed["action"],
            quantity=Decimal(parsed["quantity"]),
            order_type=parsed["order_type"],
            limit=_decimal(parsed["lmt_price"]),
            aux=_decimal(parsed["aux_price"]),
            trailing_percent=_decimal(parsed["trailing_percent"]),
            tif=parsed["tif"] or "DAY",
            account=account.code,
            order_ref=parsed["order_ref"],
            fields=fields,
            anchor=instrument.price,
            parent_id=int(parsed["parent_id"] or 0),
            oca_group=parsed["oca_group"],
        )
        required = self._initial_margin(account, order)
        equity = self._net_liquidation(account)
        if order.sign > 0 and required > equity:
            client.send(
                ERR_MSG,
                2,
                order_id,
                201,
                MARGIN_TEXT.format(equity=f"{equity:.2f}", margin=f"{required:.2f}"),
                "",
            )
            return True
        self._next_perm_id += 1
        self._next_order_id = max(self._next_order_id, order_id + 1)
        self.orders.append(order)
        order.status = "PreSubmitted" if order.order_type in ("STP", "STP LMT", "TRAIL") else "Submitted"
        if order.parent_id:
            order.status = "PreSubmitted"  # held until its parent fills
        if parsed["transmit"] != "1":
            # TWS holds an order sent with transmit off until a later order of its group
            # (a child naming it as parent) is transmitted.
            self.untransmitted.append(order)
            return True
        held = [o for o in self.untransmitted if o.client_id == client.client_id]
        if held:
            self.untransmitted = [o for o in self.untransmitted if o not in held]
            for earlier in held:
                client.send(*self._open_order(earlier, client.version))
                client.send(*self._order_status(earlier))
            client.send(*self._open_order(order, client.version))
            client.send(*self._order_status(order))
            for earlier in (*held, order):
                if earlier.working and not earlier.parent_id:
                    self._work(earlier)
            return True
        if kind == "drop_after":
            return False
        if kind == "silent":
            return True
        client.send(*self._open_order(order, client.version))
        client.send(*self._order_status(order))
        if kind == "fill":
            self.fill(order)
        elif kind == "fill_status_first":
            self.fill(order, withhold=True)
        elif kind == "partial":
            assert reaction is not None and reaction.quantity is not None
            self.fill(order, reaction.quantity)
        elif kind in ("auto", "notice"):
            self._work(order)
        return True

    def _modify_request(self, client: _Client, order: PeerOrder, parsed: dict[str, str]) -> bool:
        """placeOrder with the id of an order this client placed: TWS modifies that order
        (https://interactivebrokers.github.io/tws-api/modifying_orders.html) and sends openOrder
        again with the same order id and permId and the new values, then its status. An order
        that has ended cannot be modified."""
        self.modifications.append(parsed)
        if not order.working:
            client.send(ERR_MSG, 2, order.order_id, 104, "Can't modify a filled order.", "")
            return True
        quantity = Decimal(parsed["quantity"])
        if quantity <= order.filled:
            client.send(ERR_MSG, 2, order.order_id, 434, "The order size cannot be zero.", "")
            return True
        order.quantity = quantity
        order.limit = _decimal(parsed["lmt_price"])
        order.aux = _decimal(parsed["aux_price"])
        order.tif = parsed["tif"] or order.tif
        client.send(*self._open_order(order, client.version))
        client.send(*self._order_status(order))
        self._work(order)
        return True

    def _cancel_request(self, client: _Client, order_id: int) -> None:
        order = next(
            (o for o in self.orders if o.client_id == client.client_id and o.order_id == order_id), None
        )
        if order is None:
            client.send(
                ERR_MSG,
                2,
                order_id,
                10147,
                f"OrderId {order_id} that needs to be cancelled is not found.",
                "",
            )
        elif not order.working:
            client.send(
                ERR_MSG,
                2,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}.",
                "",
            )
        else:
            self.cancel(order)
            for child in self._children(order):  # TWS cancels a cancelled parent's children
                if child.working:
                    self.cancel(child)

    def _children(self, order: PeerOrder) -> list[PeerOrder]:
        return [o for o in self.orders if o.client_id == order.client_id and o.parent_id == order.order_id]

    def _after_fill(self, order: PeerOrder) -> None:
        """A filled parent activates its children; any fill cancels the rest of its OCA group
        (ocaType 1)."""
        if order.oca_group:
            for other in self.orders:
                if other is not order and other.oca_group == order.oca_group and other.working:
                    self.cancel(other, "OCA group")
        if order.status == "Filled":
            for child in self._children(order):
                if child.working and child not in self.untransmitted:
                    child.status = "Submitted" if child.order_type in ("LMT", "MKT") else "PreSubmitted"
                    child.parent_id = 0  # active on its own now
                    owner = self._owner(child)
                    if owner is not None:
                        owner.send(*self._order_status(child))
                    self._work(child)

    def _work(self, order: PeerOrder) -> None:
        """Fill a working order whose price condition is met, as an exchange would."""
        if order.parent_id or order in self.untransmitted:
            return  # held: its parent has not filled, or its group was never transmitted
        price = order.instrument.price
        buy = order.sign > 0
        kind = order.order_type
        if kind == "TRAIL":
            anchor = order.anchor or price
            order.anchor = min(anchor, price) if buy else max(anchor, price)
            offset = (
                order.anchor * order.trailing_percent / 100
                if order.trailing_percent
                else order.aux or Decimal(0)
            )
            stop = order.anchor + offset if buy else order.anchor - offset
            triggered = price >= stop if buy else price <= stop
        elif kind in ("STP", "STP LMT"):
            assert order.aux is not None
            triggered = order.triggered or (price >= order.aux if buy else price <= order.aux)
        else:
            triggered = True
        if not triggered:
            return
        order.triggered = True
        if order.status == "PreSubmitted":
            order.status = "Submitted"
        if kind in ("LMT", "STP LMT"):
            assert order.limit is not None
            if not (price <= order.limit if buy else price >= order.limit):
                owner = self._owner(order)
                if owner is not None and kind == "STP LMT":
                    owner.send(*self._order_status(order))
                return
        self.fill(order)

    def _fill_price(self, order: PeerOrder) -> Decimal:
        price = order.instrument.price
        if order.limit is not None and order.order_type in ("LMT", "STP LMT"):
            price = min(price, order.limit) if order.sign > 0 else max(price, order.limit)
        return price

    def _find_instrument(self, parsed: dict[str, str]) -> Instrument | None:
        sec_type = parsed["sec_type"]
        for instrument in self.instruments:
            if instrument.sec_type != sec_type:
                continue
            if parsed["con_id"] not in ("", "0") and int(parsed["con_id"]) == instrument.con_id:
                return instrument
            if sec_type == "FUT" and parsed["local_symbol"]:
                if parsed["local_symbol"] == instrument.local_symbol:
                    return instrument
                continue
            if parsed["symbol"] != instrument.symbol or (parsed["currency"] or "USD") != instrument.currency:
                continue
            if sec_type == "OPT" and (
                parsed["expiry"] != instrument.expiry
                or parsed["right"][:1] != instrument.right
                or Decimal(parsed["strike"] or 0) != instrument.strike
            ):
                continue
            if sec_type == "FUT" and not instrument.expiry.startswith(parsed["expiry"]):
                continue
            return instrument
        return None

    def _owner(self, order: PeerOrder) -> _Client | None:
        return next((c for c in self._clients if c.client_id == order.client_id), None)

    # -- money --------------------------------------------------------------------------
    def _book(self, order: PeerOrder, shares: Decimal, price: Decimal, commission: Decimal) -> Decimal | None:
        account = self.accounts[order.account]
        instrument = order.instrument
        mult = instrument.mult
        account.cash -= order.sign * shares * price * mult + commission
        held = account.positions.get(instrument.con_id, [instrument, Decimal(0), Decimal(0)])
        _, quantity, cost = held
        signed = order.sign * shares
        realized = None
        if quantity and (quantity > 0) != (signed > 0):
            closed = min(abs(quantity), shares)
            realized = (price - cost) * closed * mult * (1 if quantity > 0 else -1) - commission
            account.realized += realized
        new_quantity = quantity + signed
        if new_quantity == 0:
            account.positions.pop(instrument.con_id, None)
        else:
            if quantity == 0 or (quantity > 0) == (signed > 0):
                cost = (cost * abs(quantity) + price * shares) / abs(new_quantity)
            elif (new_quantity > 0) != (quantity > 0):
                cost = price
            account.positions[instrument.con_id] = [instrument, new_quantity, cost]
        return realized

    def _market_value(self, account: PeerAccount) -> tuple[Decimal, Decimal, Decimal]:
        net = gross = unrealized = Decimal(0)
        for instrument, quantity, cost in account.positions.values():
            net += quantity * instrument.price * instrument.mult
            gross += abs(quantity) * instrument.price * instrument.mult
            unrealized += (instrument.price - cost) * quantity * instrument.mult
        return net, gross, unrealized

    def _net_liquidation(self, account: PeerAccount) -> Decimal:
        return account.cash + self._market_value(account)[0]

    def _initial_margin(self, account: PeerAccount, order: PeerOrder | None = None) -> Decimal:
        margin = sum(
            (
                abs(quantity) * instrument.price * instrument.mult * instrument.margin_rate
                for instrument, quantity, _ in account.positions.values()
            ),
            Decimal(0),
        )
        if order is not None:
            instrument = order.instrument
            margin += (
                order.quantity * (order.limit or instrument.price) * instrument.mult * instrument.margin_rate
            )
        return margin

    def _account_values(self, account: PeerAccount) -> list[tuple[str, str, str]]:
        net, gross, unrealized = self._market_value(account)
        liquidation = account.cash + net
        initial = self._initial_margin(account)
        maintenance = initial / 2
        money = {
            "NetLiquidation": liquidation,
            "TotalCashValue": account.cash,
            "BuyingPower": (liquidation - initial) * 2,
            "AvailableFunds": liquidation - initial,
            "ExcessLiquidity": liquidation - maintenance,
            "InitMarginReq": initial,
            "MaintMarginReq": maintenance,
            "GrossPositionValue": gross,
            "EquityWithLoanValue": liquidation,
            "RealizedPnL": account.realized,
            "UnrealizedPnL": unrealized,
        }
        values = [(tag, f"{value:.2f}", account.currency) for tag, value in money.items()]
        leverage = gross / liquidation if liquidation > 0 else Decimal(0)
        values.append(("Leverage", f"{leverage:.4f}", ""))
        values.append(("AccountType", "INDIVIDUAL", ""))
        return values

    # -- pushed updates -----------------------------------------------------------------
    def _push_positions(self, instrument: Instrument, account: PeerAccount) -> None:
        held = account.positions.get(instrument.con_id)
        quantity, cost = (held[1], held[2]) if held else (Decimal(0), Decimal(0))
        for client in self._clients:
            if client.positions:
                client.send(*self._position(account, instrument, quantity, cost))

    def _push_account_updates(self) -> None:
        for client in self._clients:
            if client.account_updates:
                self._send_account_updates(client, self.accounts[client.account_updates])
            for req_id in client.summaries:
                self._send_summary(client, req_id)

    def _send_account_updates(self, client: _Client, account: PeerAccount) -> None:
        client.send(ACCT_VALUE, 2, "AccountCode", account.code, "", account.code)
        client.send(ACCT_VALUE, 2, "Currency", account.currency, account.currency, account.code)
        for tag, value, currency in self._account_values(account):
            client.send(ACCT_VALUE, 2, tag, value, currency, account.code)
        client.send(ACCT_VALUE, 2, "ExchangeRate", "1.00", account.currency, account.code)
        for currency, rate in self.fx_rates.items():
            client.send(ACCT_VALUE, 2, "ExchangeRate", text(rate), currency, account.code)
        for instrument, quantity, cost in account.positions.values():
            mult = instrument.mult
            value = quantity * instrument.price * mult
            client.send(
                PORTFOLIO_VALUE,
                8,
                *instrument.portfolio_contract(),
                quantity,
                instrument.price,
                f"{value:.2f}",
                cost * mult,
                f"{value - cost * quantity * mult:.2f}",
                "0",
                account.code,
            )
        client.send(ACCT_UPDATE_TIME, 1, datetime.now(TWS_ZONE).strftime("%H:%M"))

    def _send_summary(self, client: _Client, req_id: int) -> None:
        tags = client.summaries[req_id]
        for account in self.accounts.values():
            for tag, value, currency in self._account_values(account):
                if tag in tags:
                    client.send(ACCOUNT_SUMMARY, 1, req_id, account.code, tag, value, currency)
            if "$LEDGER:ALL" in tags:
                _, _, unrealized = self._market_value(account)
                for currency in ("BASE", account.currency):
                    client.send(
                        ACCOUNT_SUMMARY,
                        1,
                        req_id,
                        account.code,
                        "CashBalance",
                        f"{account.cash:.2f}",
                        currency,
                    )
                    client.send(
                        ACCOUNT_SUMMARY,
                        1,
                        req_id,
                        account.code,
                        "RealizedPnL",
                        f"{account.realized:.2f}",
                        currency,
                    )
                    client.send(
                        ACCOUNT_SUMMARY,
                        1,
                        req_id,
                        account.code,
                        "UnrealizedPnL",
                        f"{unrealized:.2f}",
                        currency,
                    )
                    client.send(ACCOUNT_SUMMARY, 1, req_id, account.code, "ExchangeRate", "1.00", currency)

    # -- message builders ---------------------------------------------------------------
    def _position(
        self, account: PeerAccount, instrument: Instrument, quantity: Decimal, cost: Decimal
    ) -> list[object]:
        return [POSITION_DATA, 3, account.code, *instrument.contract(), quantity, cost * instrument.mult]

    def _order_status(self, order: PeerOrder) -> list[object]:
        return [
            ORDER_STATUS,
            order.order_id,
            order.status,
            order.filled,
            order.remaining,
            order.avg_price,
            order.perm_id,
            0,
            order.last_fill_price,
            order.client_id,
            "",
            0,
        ]

    def _exec_details(self, req_id: int, execution: PeerExecution) -> list[object]:
        order = execution.order
        return [
            EXECUTION_DATA,
            req_id,
            order.order_id,
            *order.instrument.contract(order.exchange),
            execution.exec_id,
            tws_time(execution.time),
            order.account,
            order.instrument.exchange if order.exchange == "SMART" else order.exchange,
            "BOT" if order.sign > 0 else "SLD",
            execution.shares,
            execution.price,
            order.perm_id,
            order.client_id,
            0,
            execution.cum_qty,
            execution.avg_price,
            order.order_ref,
            "",
            "",
            "",
            1,
        ]

    def _commission_report(self, execution: PeerExecution) -> list[object]:
        realized = UNSET_DOUBLE if execution.realized_pnl is None else f"{execution.realized_pnl:.2f}"
        return [
            COMMISSION_REPORT,
            1,
            execution.exec_id,
            execution.commission,
            execution.order.instrument.currency,
            realized,
            "",
            "",
        ]

    def _executions_request(self, client: _Client, fields: list[str]) -> None:
        req_id, client_filter, account, _since, symbol, sec_type, _exchange, side = fields[2:10]
        for execution in self.executions:
            order = execution.order
            if (
                (client_filter not in ("", "0") and int(client_filter) != order.client_id)
                or (account and account != order.account)
                or (symbol and symbol != order.instrument.symbol)
                or (sec_type and sec_type != order.instrument.sec_type)
                or (side and side[:1] != order.action[:1])
            ):
                continue
            client.send(*self._exec_details(int(req_id), execution))
            if self.send_commission_reports:
                client.send(*self._commission_report(execution))
        client.send(EXECUTION_DATA_END, 1, req_id)

    def _order_fields(self, order: PeerOrder) -> list[object]:
        """action .. orderRef, shared by openOrder and completedOrder."""
        return [
            order.action,
            order.quantity,
            order.order_type,
            order.limit,
            order.aux,
            order.tif,
            "",
            order.account,
            "",
            0,
            order.order_ref,
        ]

    def _open_order(self, order: PeerOrder, version: int) -> list[object]:
        fa_profile = [""] if version < 177 else []
        return [
            OPEN_ORDER,
            order.order_id,
            *order.instrument.contract(order.exchange),
            *self._order_fields(order),
            order.client_id,
            order.perm_id,
            0,
            0,
            "",
            "",
            "",
            "",
            "",
            "",
            *fa_profile,
            # modelCode .. deltaNeutralAuxPrice
            "",
            "",
            "",
            "",
            "",
            0,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            0,
            0,
            "",
            0,
            0,
            0,
            "",
            0,
            0,
            "",
            "",
            "",
            "",
            # continuousUpdate .. comboLegsDescrip, then no legs, order legs or smart-combo params
            0,
            "",
            "",
            order.trailing_percent,
            "",
            "",
            "",
            0,
            0,
            0,
            # scale (no increment), hedgeType, optOutSmartRouting .. notHeld, no delta-neutral contract
            "",
            "",
            "",
            "",
            0,
            "",
            "",
            0,
            0,
            "",  # algoStrategy
            0,
            0,
            order.status,
            *[""] * 9,
            "",
            "",
            "",
            "",
            "",
            0,
            0,  # solicited .. randomizePrice
            0,  # conditions
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            "",
            "",
            "",
            "",
            0,
            0,
            "",
            0,  # adjustedOrderType .. usePriceMgmtAlgo
            "",
            0,
            0,  # duration, postToAts, autoCancelParent
            "",
            "",
            "",
            "",
            "",  # minTradeQty .. midOffsetAtHalf
        ]

    def _completed_order(self, order: PeerOrder, version: int) -> list[object]:
        fa_profile = [""] if version < 177 else []
        completed_status = f"Filled Size: {text(order.filled)}" if order.status == "Filled" else order.status
        return [
            COMPLETED_ORDER,
            *order.instrument.contract(order.exchange),
            *self._order_fields(order),
            order.perm_id,
            0,
            0,
            "",
            "",
            "",
            "",
            "",
            *fa_profile,
            # modelCode .. deltaNeutralAuxPrice
            "",
            "",
            "",
            "",
            "",
            0,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            0,
            "",
            0,
            0,
            "",
            0,
            "",
            "",
            0,
            "",
            "",
            order.trailing_percent,
            "",
            0,
            0,
            0,  # continuousUpdate .. legs and params
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            0,  # scale, hedgeType, clearing .. notHeld, no delta-neutral contract
            "",  # algoStrategy
            0,
            order.status,
            0,
            0,  # solicited, status, randomizeSize, randomizePrice
            0,  # conditions
            "",
            "",
            "",
            0,
            0,
            "",
            order.filled,
            0,
            0,
            "",
            0,
            0,
            0,
            order.completed_time,
            completed_status,
            "",
            "",
            "",
            "",
            "",  # minTradeQty .. midOffsetAtHalf
        ]


def _decimal(value: str) -> Decimal | None:
    if not value or value == UNSET_DOUBLE:
        return None
    return Decimal(value)


_PLACE_ORDER_HEAD = (
    "order_id",
    "con_id",
    "symbol",
    "sec_type",
    "expiry",
    "strike",
    "right",
    "multiplier",
    "exchange",
    "primary_exchange",
    "currency",
    "local_symbol",
    "trading_class",
    "sec_id_type",
    "sec_id",
    "action",
    "quantity",
    "order_type",
    "lmt_price",
    "aux_price",
    "tif",
    "oca_group",
    "account",
    "open_close",
    "origin",
    "order_ref",
    "transmit",
    "parent_id",
    "block_order",
    "sweep_to_fill",
    "display_size",
    "trigger_method",
    "outside_rth",
    "hidden",
)


def parse_place_order(fields: list[str], version: int) -> dict[str, str]:
    """The fields of a placeOrder message that this peer acts on, walking it as TWS does."""
    rest = iter(fields[1:])
    parsed = {name: next(rest) for name in _PLACE_ORDER_HEAD}
    if parsed["sec_type"] == "BAG":
        raise ValueError("combination orders are not supported by this peer")

    def skip(count: int) -> None:
        for _ in range(count):
            next(rest)

    skip(7)  # "", discretionaryAmt, goodAfterTime, goodTillDate, faGroup, faMethod, faPercentage
    if version < 177:
        skip(1)  # faProfile
    skip(22)  # modelCode .. volatilityType
    if next(rest):  # deltaNeutralOrderType
        skip(9)
    else:
        skip(1)
    skip(2)  # continuousUpdate, referencePriceType
    parsed["trail_stop_price"] = next(rest)
    parsed["trailing_percent"] = next(rest)
    skip(2)
    increment = next(rest)
    if increment and 0 < float(increment) < 1.7e308:
        skip(7)
    skip(3)  # scaleTable, activeStartTime, activeStopTime
    if next(rest):  # hedgeType
        skip(1)
    skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if next(rest) == "1":  # delta-neutral contract
        skip(3)
    if next(rest):  # algoStrategy
        skip(2 * int(next(rest)))
    skip(1)  # algoId
    parsed["what_if"] = next(rest)
    return parsed


# Registered under short names; the function names differ so that importing them into a test
# module does not shadow the test functions' arguments.
@pytest.fixture(name="tws_peer")
async def tws_peer_fixture():
    peer = await TwsPeer().start()
    yield peer
    await peer.stop()


@pytest.fixture(name="ibkr")
async def ibkr_fixture(tws_peer):
    """An IBKRBroker connected to ``tws_peer`` with short timeouts."""
    from brokers.adapters.ibkr import IBKRBroker

    broker = IBKRBroker("ib-paper", port=tws_peer.port, timeout=2.0)
    broker.commission_grace = 0.3
    await broker.connect()
    yield broker
    await broker.disconnect()


async def next_event(queue: asyncio.Queue, kind: type, where=lambda event: True, within: float = 3.0):
    """The next event of ``kind`` on a broker's update queue that satisfies ``where``."""
    async with asyncio.timeout(within):
        while True:
            event = await queue.get()
            if isinstance(event, kind) and where(event):
                return event


def drain(queue: asyncio.Queue) -> list:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events
