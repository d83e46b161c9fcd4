"""An Alpaca account that connects while trading is halted: the real alpaca-py against the
loopback peer, cancelled with Alpaca's bulk cancel before the manager marks it CONNECTED."""

from __future__ import annotations

from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)

from brokers.events import ConnectionEvent, HaltCancelEvent, ManagerEvent
from brokers.manager import MultiBrokerManager
from brokers.models import ConnectionState, OrderRequest, OrderStatus
from brokers.registry import BrokerFactory


async def test_working_orders_are_bulk_cancelled_before_the_account_is_connected(peer, keys):
    # An order left working from an earlier session, while this process was not connected.
    earlier = BrokerFactory.create(peer.settings())
    await earlier.connect()
    working = await earlier.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity="10", order_type="LIMIT", limit_price="189.5")
    )
    await earlier.disconnect()

    broker = BrokerFactory.create(peer.settings())
    manager = MultiBrokerManager(timeout=3, heartbeat_interval=60, halted=lambda: True)
    manager.add_broker("alpaca-test", broker)
    seen: list[ManagerEvent] = []
    bulk_cancels_when: dict[ConnectionState, int] = {}

    def listen(event: ManagerEvent) -> None:
        seen.append(event)
        if isinstance(event, ConnectionEvent):
            bulk_cancels_when[event.state] = peer.count("DELETE", "/v2/orders")

    manager.add_listener(listen)
    try:
        statuses = await manager.connect_all()
        assert statuses["alpaca-test"].state is ConnectionState.CONNECTED
        assert bulk_cancels_when[ConnectionState.RESYNCING] == 0
        assert bulk_cancels_when[ConnectionState.CONNECTED] == 1
        [event] = [e for e in seen if isinstance(e, HaltCancelEvent)]
        assert event.ok and event.cancelled == (working.broker_order_id,)
        assert not [p for m, p in peer.requests if m == "DELETE" and p != "/v2/orders"]
        assert (await broker.get_order(str(working.broker_order_id))).status is OrderStatus.CANCELLED
    finally:
        await manager.disconnect_all()
