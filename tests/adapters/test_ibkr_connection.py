"""Connecting, health, losing TWS and coming back without losing a fill or doubling an order."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    PLACE_ORDER,
    REQ_EXECUTIONS,
    TwsPeer,
    drain,
    ibkr_fixture,
    next_event,
    tws_peer_fixture,
)
from support import until

from brokers.adapters.ibkr import IBKRBroker
from brokers.errors import BrokerConnectionError, BrokerTimeoutError, ConfigError
from brokers.instruments import Instrument
from brokers.models import ConnectionState, Fill, Order, OrderRequest, OrderStatus


def request(**fields) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 100, **fields})


async def test_connect_reports_health_and_disconnect_closes_the_socket(tws_peer):
    broker = IBKRBroker("ib-paper", port=tws_peer.port, client_id=5, timeout=2)
    assert broker.status().state is ConnectionState.DISCONNECTED and not broker.is_connected()

    await broker.connect()
    await broker.connect()  # already connected: nothing happens
    status = broker.status()
    assert broker.is_connected() and tws_peer.connected_client_ids == [5]
    assert (status.state, status.broker_type, status.live, status.last_error) == (
        ConnectionState.CONNECTED,
        "ibkr",
        False,
        None,
    )
    assert await broker.ping() > 0 and broker.status().latency_ms is not None

    await broker.disconnect()
    assert not broker.is_connected() and broker.status().state is ConnectionState.DISCONNECTED
    await until(lambda: tws_peer.connected_client_ids == [])


async def test_nothing_listening_is_a_connection_error(tws_peer):
    await tws_peer.stop_listening()
    broker = IBKRBroker("ib-paper", port=tws_peer.port, timeout=1)
    with pytest.raises(BrokerConnectionError, match=f"127.0.0.1:{tws_peer.port}") as caught:
        await broker.connect()
    assert caught.value.retryable
    assert broker.status().state is ConnectionState.FAILED and broker.status().last_error


async def test_a_silent_server_is_a_handshake_timeout():
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda reader, writer: accepted.append(writer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        broker = IBKRBroker("ib-paper", port=port, timeout=0.3)
        with pytest.raises(BrokerTimeoutError, match="handshake"):
            await broker.connect()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_client_id_in_use_is_refused(tws_peer, ibkr):
    second = IBKRBroker("ib-twin", port=tws_peer.port, client_id=ibkr.client_id, timeout=0.5)
    with pytest.raises(BrokerTimeoutError, match="client id 1"):
        await second.connect()
    assert ibkr.is_connected()


async def test_several_accounts_need_the_account_setting():
    peer = await TwsPeer(accounts=("DU111", "DU222")).start()
    try:
        unset = IBKRBroker("ib-paper", port=peer.port, timeout=2)
        with pytest.raises(ConfigError, match="DU111, DU222"):
            await unset.connect()
        wrong = IBKRBroker("ib-paper", port=peer.port, timeout=2, account="DU999")
        with pytest.raises(ConfigError, match="DU999"):
            await wrong.connect()
        chosen = IBKRBroker("ib-paper", port=peer.port, timeout=2, account="DU222")
        await chosen.connect()
        updates = chosen.subscribe()
        order = await chosen.place_order(request())
        await next_event(updates, Order, lambda o: o.status is OrderStatus.FILLED)
        assert peer.order(order.client_order_id).account == "DU222"
        assert [p.symbol for p in await chosen.get_positions()] == ["AAPL"]
        assert (await chosen.get_balance()).cash < 100_000
        await chosen.disconnect()
    finally:
        await peer.stop()


async def test_a_paper_account_config_never_trades_a_live_login():
    peer = await TwsPeer(accounts=("U7654321",)).start()
    try:
        broker = IBKRBroker("ib-paper", port=peer.port, timeout=2)
        with pytest.raises(ConfigError, match="live account U7654321"):
            await broker.connect()
        assert not broker.is_connected() and broker.status().state is ConnectionState.FAILED
        await until(lambda: peer.connected_client_ids == [])
        live = IBKRBroker("ib-live", port=peer.port, timeout=2, live=True)
        await live.connect()
        assert live.is_connected()
        await live.disconnect()
    finally:
        await peer.stop()


async def test_dropped_connection_then_reconnect_resyncs_without_loss_or_duplicates(tws_peer, ibkr):
    updates = ibkr.subscribe()
    partial = await ibkr.place_order(request(order_type="LIMIT", limit_price="140"))
    resting = await ibkr.place_order(request(order_type="LIMIT", limit_price="130"))
    first = tws_peer.fill(tws_peer.order(partial.client_order_id), 40, "140")
    await next_event(updates, Fill)

    tws_peer.drop_connections()
    await until(lambda: not ibkr.is_connected())
    assert ibkr.status().state is ConnectionState.DISCONNECTED and "lost" in ibkr.status().last_error
    with pytest.raises(BrokerConnectionError):
        await ibkr.place_order(request())
    # While the adapter is away, the rest fills and TWS cancels the other order.
    second = tws_peer.fill(tws_peer.order(partial.client_order_id), 60, "139")
    tws_peer.cancel(tws_peer.order(resting.client_order_id), "end of day")
    drain(updates)

    await ibkr.connect()

    fills = [e for e in drain(updates) if isinstance(e, Fill)]
    assert [f.fill_id for f in fills] == [second.exec_id]  # the first is not replayed
    assert fills[0].commission == second.commission
    assert (await ibkr.get_order(partial.broker_order_id)).filled_quantity == 100
    assert (await ibkr.get_order(partial.broker_order_id)).status is OrderStatus.FILLED
    assert (await ibkr.get_order(resting.broker_order_id)).status is OrderStatus.CANCELLED
    assert first.exec_id in {f.fill_id for f in (await ibkr.get_order(partial.broker_order_id)).fills}
    assert len(tws_peer.requests(PLACE_ORDER)) == 2 and len(tws_peer.orders) == 2
    assert ibkr.status().state is ConnectionState.CONNECTED and ibkr.status().last_error is None


async def test_reconnect_after_tws_was_down(tws_peer, ibkr):
    tws_peer.drop_connections()
    await tws_peer.stop_listening()
    await until(lambda: not ibkr.is_connected())
    with pytest.raises(BrokerConnectionError):
        await ibkr.connect()
    await tws_peer.start_listening()
    await ibkr.connect()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    assert order.status is OrderStatus.ACCEPTED


async def test_fill_arriving_just_before_the_drop_is_reported_once(tws_peer, ibkr):
    """Its commission report is lost with the connection; the replay must not report it again."""
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    tws_peer.send_commission_reports = False
    execution = tws_peer.fill(tws_peer.order(order.client_order_id))
    await until(lambda: ibkr._pending_fills)
    tws_peer.drop_connections()
    fill = await next_event(updates, Fill)
    assert fill.fill_id == execution.exec_id and fill.commission == 0

    tws_peer.send_commission_reports = True
    await ibkr.connect()
    await asyncio.sleep(0.1)
    assert [e for e in drain(updates) if isinstance(e, Fill)] == []
    assert (await ibkr.get_order(order.broker_order_id)).filled_quantity == 100


async def test_missing_commission_report_delays_the_fill_only_briefly(tws_peer, ibkr):
    updates = ibkr.subscribe()
    tws_peer.send_commission_reports = False
    order = await ibkr.place_order(request())
    fill = await next_event(updates, Fill, within=1.0)
    done = await next_event(updates, Order, lambda o: o.status is OrderStatus.FILLED)
    assert fill.commission == 0 and done.client_order_id == order.client_order_id


async def test_1100_degrades_and_1102_restores(tws_peer, ibkr):
    tws_peer.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    await until(lambda: ibkr.status().state is ConnectionState.DEGRADED)
    assert "1100" in ibkr.status().last_error and ibkr.is_connected()

    tws_peer.send_error(
        1102, "Connectivity between IB and Trader Workstation has been restored - data maintained."
    )
    await until(lambda: ibkr.status().state is ConnectionState.CONNECTED)
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    assert order.status is OrderStatus.ACCEPTED


async def test_2110_degrades(tws_peer, ibkr):
    tws_peer.send_error(
        2110,
        "Connectivity between Trader Workstation and server is broken. It will be restored automatically.",
    )
    await until(lambda: ibkr.status().state is ConnectionState.DEGRADED)


async def test_1101_data_lost_resyncs_fills_tws_did_not_pass_on(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    tws_peer.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    execution = tws_peer.fill(tws_peer.order(order.client_order_id), 25, "100", notify=False)
    requests_before = len(tws_peer.requests(REQ_EXECUTIONS))

    tws_peer.send_error(1101, "Connectivity between IB and Trader Workstation has been restored - data lost.")
    fill = await next_event(updates, Fill)
    assert fill.fill_id == execution.exec_id and fill.quantity == 25
    await until(lambda: ibkr.status().state is ConnectionState.CONNECTED)
    assert len(tws_peer.requests(REQ_EXECUTIONS)) == requests_before + 1
    assert (await ibkr.get_order(order.broker_order_id)).status is OrderStatus.PARTIALLY_FILLED


async def test_reads_fail_cleanly_when_disconnected_and_time_out_when_tws_stalls(tws_peer, ibkr):
    ibkr.timeout, ibkr.read_attempts = 0.2, 2
    tws_peer.latency = 1.0
    with pytest.raises(BrokerTimeoutError, match="positions"):
        await ibkr.get_positions()
    tws_peer.latency = 0
    await ibkr.disconnect()
    for read in (ibkr.get_positions, ibkr.get_balance, ibkr.get_open_orders, ibkr.cancel_all_orders):
        with pytest.raises(BrokerConnectionError):
            await read()
    with pytest.raises(BrokerConnectionError):
        await ibkr.get_order_by_client_id("TC0000000000000000AB")


async def test_positions_after_fills_in_every_asset_class(tws_peer, ibkr):
    updates = ibkr.subscribe()
    orders = [
        request(),
        request(symbol="AAPL  240119C00150000", asset_class="OPTION", quantity=2),
        request(symbol="ES 202503", asset_class="FUTURE", exchange="CME", quantity=1),
        request(symbol="EUR.USD", asset_class="FOREX", quantity=20000),
        request(symbol="MSFT", side="SELL", quantity=10),
    ]
    for wanted in orders:
        placed = await ibkr.place_order(wanted)
        await next_event(
            updates, Order, lambda o, p=placed: o.client_order_id == p.client_order_id and o.is_terminal
        )

    positions = {p.symbol: p for p in await ibkr.get_positions()}

    assert set(positions) == {"AAPL", "AAPL240119C00150000", "ES 202503", "EUR.USD", "MSFT"}
    option = positions["AAPL240119C00150000"]
    assert (option.quantity, option.avg_price, option.multiplier, option.asset_class.value) == (
        2,
        5,
        100,
        "OPTION",
    )
    future = positions["ES 202503"]
    assert (future.avg_price, future.multiplier, future.asset_class.value) == (
        Decimal("5000.25"),
        50,
        "FUTURE",
    )
    assert positions["EUR.USD"].asset_class.value == "FOREX" and positions["EUR.USD"].quantity == 20000
    assert positions["MSFT"].quantity == -10 and positions["AAPL"].last_price == 150
    # The portfolio's realizedPNL is today's realised P&L; IB's positions carry no previous close.
    assert positions["AAPL"].realized_today == 0 and positions["AAPL"].previous_close is None
    assert all(p.account == "ib-paper" for p in positions.values())


async def test_balance_margin_and_fx_rates_from_the_account(tws_peer, ibkr):
    updates = ibkr.subscribe()
    await ibkr.place_order(request())
    await next_event(updates, Order, lambda o: o.status is OrderStatus.FILLED)

    balance = await ibkr.get_balance()
    margin = await ibkr.get_margin()

    # 100 AAPL at 150 plus 1 USD commission out of 100,000
    assert (balance.cash, balance.equity, balance.currency, balance.account) == (
        84999,
        99999,
        "USD",
        "ib-paper",
    )
    assert balance.buying_power == (99999 - 7500) * 2
    assert balance.margin_used == margin.initial_margin == 7500  # TWS's InitMarginReq
    assert (margin.initial_margin, margin.maintenance_margin, margin.available_funds) == (7500, 3750, 92499)
    assert margin.leverage == Decimal("0.15")
    assert await ibkr.get_fx_rates() == {"EURUSD": Decimal("1.085")}
    assert (
        ibkr.last_price_nowait(Instrument.stock("AAPL")) == 150
        and ibkr.last_price_nowait(Instrument.stock("TSLA")) is None
    )

    sell = await ibkr.place_order(request(side="SELL", order_type="LIMIT", limit_price="152"))
    tws_peer.fill(tws_peer.order(sell.client_order_id), price="152")
    await next_event(updates, Order, lambda o: o.client_order_id == sell.client_order_id and o.is_terminal)
    for _ in range(100):  # TWS pushes the new summary after the fill
        if (await ibkr.get_balance()).realized_pnl:
            break
        await asyncio.sleep(0.01)
    assert (await ibkr.get_balance()).realized_pnl == Decimal(199)  # 100 x 2 less 1 commission
    assert await ibkr.get_positions() == []
