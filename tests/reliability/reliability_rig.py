"""What the reliability tests build on: a manager, kill switch, journal and execution service over
paper brokers or loopback peers, and the checks that say nothing was lost or doubled."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import keyring

from brokers.base import Broker
from brokers.execution import ExecutionService
from brokers.health import Backoff
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus, can_transition
from brokers.registry import BrokerFactory
from brokers.sim import SimBroker

SERVICE = "trading-console"

# Figures the tests measured, printed under the suite's summary: (category, sentence).
NOTES: list[tuple[str, str]] = []


def note(category: str, text: str) -> None:
    NOTES.append((category, text))


class CountingSim(SimBroker):
    """A paper broker that notes every call that reaches it, in order, with a clock reading."""

    def __init__(self, *args: Any, log: list | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[str, str, float]] = log if log is not None else []
        self.placed: list[str] = []
        self.connects = 0
        self.connecting = 0
        self.most_connecting = 0

    async def place_order(self, request: OrderRequest) -> Order:
        self.placed.append(request.client_order_id)
        self.log.append(("place", request.client_order_id, time.perf_counter()))
        return await super().place_order(request)

    async def cancel_all_orders(self) -> list[str]:
        self.log.append(("cancel_all", self.name, time.perf_counter()))
        return await super().cancel_all_orders()

    async def connect(self) -> None:
        self.connects += 1
        self.connecting += 1
        self.most_connecting = max(self.most_connecting, self.connecting)
        try:
            await super().connect()
        finally:
            self.connecting -= 1


class Rig:
    """Manager + kill switch + journal + execution service, started and stopped as one."""

    def __init__(
        self,
        root: Path,
        brokers: dict[str, Broker],
        *,
        default: str | None = None,
        risk: Any = None,
        halt_settings: HaltSettings | None = None,
        submit_timeout: float = 10.0,
        call_timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        manager_timeout: float = 5.0,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.brokers = brokers
        self.manager = MultiBrokerManager(
            heartbeat_interval=3600, timeout=manager_timeout, backoff=backoff, sleep=sleep
        )
        for name, broker in brokers.items():
            self.manager.add_broker(name, broker, default=(name == default))
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(
            self.manager,
            self.switch,
            risk=risk,
            journal=self.journal,
            halt_settings=halt_settings,
            submit_timeout=submit_timeout,
            call_timeout=call_timeout,
        )
        self.manager.book_provider = self.service.book_positions
        self.history: dict[str, list[tuple[OrderStatus, Decimal]]] = defaultdict(list)
        self.service.subscribe(self._seen)

    def _seen(self, order: Order) -> None:
        self.history[order.client_order_id].append((order.status, order.filled_quantity))

    async def start(self) -> Rig:
        await self.manager.connect_all()
        await self.manager.start()
        await self.service.start()
        return self

    async def stop(self) -> None:
        await self.service.stop()
        await self.manager.stop()
        await self.manager.disconnect_all()
        self.journal.close()

    async def __aenter__(self) -> Rig:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def settle(self) -> None:
        """Let every event the brokers have sent so far be applied: a few turns of the loop
        carry them from the broker through the manager to the execution service."""
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)


def regressions(history: dict[str, list[tuple[OrderStatus, Decimal]]]) -> list[str]:
    """Every place an order's reported state went backwards: a status change the state machine
    forbids, or a filled quantity that shrank."""
    found = []
    for client_order_id, seen in history.items():
        for (before, filled_before), (after, filled_after) in zip(seen, seen[1:], strict=False):
            if after is not before and not can_transition(before, after):
                found.append(f"{client_order_id}: {before.value} -> {after.value}")
            if filled_after < filled_before:
                found.append(f"{client_order_id}: filled {filled_before} -> {filled_after}")
    return found


def journal_positions(
    journal: Journal, accounts: Iterable[str] | None = None
) -> dict[tuple[str, str], Decimal]:
    """(account, symbol) -> signed quantity filled, from the journal's last word on each order."""
    wanted = set(accounts) if accounts is not None else None
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for order in journal.orders().values():
        if wanted is not None and order.account not in wanted:
            continue
        if order.filled_quantity:
            totals[(order.account or "", order.symbol)] += order.filled_quantity * order.side.sign
    return {key: value for key, value in totals.items() if value}


async def broker_positions(broker: Broker) -> dict[str, Decimal]:
    return {p.symbol: p.quantity for p in await broker.get_positions() if p.quantity}


# -- loopback peers behind one face ----------------------------------------------------------------


class PeerSide:
    """One loopback peer and the adapter that talks to it, steered the same way for every kind."""

    kind = ""
    symbol = ""

    async def start(self) -> PeerSide:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def settings(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def broker(self, name: str) -> Broker:
        return BrokerFactory.create(self.settings(name))

    def orders_with(self, client_order_id: str) -> int:
        """How many orders the peer holds under this client order id."""
        raise NotImplementedError

    def submits(self) -> int:
        """How many order submissions reached the peer."""
        raise NotImplementedError

    def lose_next_answer(self, how: str) -> None:
        """The next order reaches the peer but its answer is lost: "drop" cuts the connection,
        "timeout" answers too late."""
        raise NotImplementedError

    def refuse_next(self) -> None:
        raise NotImplementedError

    def request(self, **fields: Any) -> OrderRequest:
        return OrderRequest(**{"symbol": self.symbol, "side": "BUY", "quantity": 1, **fields})


class AlpacaSide(PeerSide):
    kind = "alpaca"
    symbol = "AAPL"

    def __init__(self, **peer_options: Any) -> None:
        from peers.alpaca_peer import AlpacaPeer

        self.peer = AlpacaPeer(**{"cash": Decimal(10) ** 9, **peer_options})
        self.timeout = 1.0

    async def start(self) -> AlpacaSide:
        await self.peer.start()
        return self

    async def stop(self) -> None:
        await self.peer.stop()

    def store_keys(self, name: str) -> None:
        keyring.set_password(SERVICE, f"{name}:api_key", self.peer.api_key)
        keyring.set_password(SERVICE, f"{name}:secret_key", self.peer.secret_key)

    def settings(self, name: str) -> dict[str, Any]:
        self.store_keys(name)
        return self.peer.settings(name, timeout=self.timeout)

    def orders_with(self, client_order_id: str) -> int:
        return sum(1 for o in self.peer.orders.values() if o["client_order_id"] == client_order_id)

    def submits(self) -> int:
        return self.peer.count("POST", "/v2/orders")

    def lose_next_answer(self, how: str) -> None:
        if how == "drop":
            self.peer.drop_next("POST", "/v2/orders")
        else:
            self.peer.delay_next("POST", "/v2/orders", self.timeout + 0.5)

    def refuse_next(self) -> None:
        self.peer.fail_next(
            "POST", "/v2/orders", 403, {"code": 40310000, "message": "insufficient buying power"}
        )


class KiteSide(PeerSide):
    kind = "zerodha"
    symbol = "INFY"

    def __init__(self, **peer_options: Any) -> None:
        from peers.kite_peer import KitePeer

        self.peer = KitePeer(**{"cash": Decimal(10) ** 9, **peer_options})
        self.timeout = 1.0

    async def start(self) -> KiteSide:
        await self.peer.start()
        return self

    async def stop(self) -> None:
        await self.peer.stop()

    def store_keys(self, name: str) -> None:
        keyring.set_password(SERVICE, f"{name}:api_key", self.peer.api_key)
        keyring.set_password(SERVICE, f"{name}:access_token", self.peer.access_token)

    def settings(self, name: str) -> dict[str, Any]:
        self.store_keys(name)
        return {
            "type": "zerodha",
            "name": name,
            "root": self.peer.root,
            "poll_interval": 0.2,
            "timeout": self.timeout,
        }

    def orders_with(self, client_order_id: str) -> int:
        from brokers.adapters.zerodha import tag_for

        tag = tag_for(client_order_id)
        return sum(1 for o in self.peer.orders.values() if o.tag == tag)

    def submits(self) -> int:
        return self.peer.count("POST", "/orders")

    def lose_next_answer(self, how: str) -> None:
        if how == "drop":
            self.peer.plan("accept_then_drop")
        else:
            self.peer.plan("delay", seconds=self.timeout + 0.5)

    def refuse_next(self) -> None:
        self.peer.plan(
            "reject",
            message="Insufficient funds. Required margin is 95417.84 but available margin is 74251.80.",
        )


class TwsSide(PeerSide):
    kind = "ibkr"
    symbol = "AAPL"

    def __init__(self, **peer_options: Any) -> None:
        from peers.tws_peer import TwsPeer

        self.peer = TwsPeer(**{"cash": 10**9, **peer_options})
        self.timeout = 1.0

    async def start(self) -> TwsSide:
        await self.peer.start()
        return self

    async def stop(self) -> None:
        await self.peer.stop()

    def settings(self, name: str) -> dict[str, Any]:
        return {"type": "ibkr", "name": name, "port": self.peer.port, "timeout": self.timeout}

    def broker(self, name: str) -> Broker:
        broker = super().broker(name)
        broker.commission_grace = 0.2  # type: ignore[attr-defined]
        return broker

    def orders_with(self, client_order_id: str) -> int:
        return sum(1 for o in self.peer.orders if o.order_ref == client_order_id)

    def submits(self) -> int:
        from peers.tws_peer import PLACE_ORDER

        return len(self.peer.requests(PLACE_ORDER))

    def lose_next_answer(self, how: str) -> None:
        from peers.tws_peer import drop, silent

        self.peer.react(drop(after=True) if how == "drop" else silent())

    def refuse_next(self) -> None:
        from peers.tws_peer import reject

        self.peer.react(
            reject(
                201,
                "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN "
                "THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE [1000 USD] MUST EXCEED "
                "THE INITIAL MARGIN [5000 USD]",
            )
        )


PEER_SIDES: dict[str, type[PeerSide]] = {"alpaca": AlpacaSide, "zerodha": KiteSide, "ibkr": TwsSide}
