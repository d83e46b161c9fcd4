"""Realised today at an Alpaca account across a restart of the console: Alpaca reports no
realised figure of its own, so it is the fills of the day, read back from the journal, that keep
it; a trade update the stream sends again after the restart is not counted twice. The real
alpaca-py against the loopback Alpaca peer."""

from __future__ import annotations

from decimal import Decimal

from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    PeerPosition,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from support import until

from brokers.adapters.alpaca import AlpacaBroker
from brokers.execution import ExecutionService
from brokers.instruments import Instrument
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus

D = Decimal
AAPL = Instrument.stock("AAPL")
MSFT = Instrument.stock("MSFT")


class Run:
    """One start of the execution layer on the journal in ``root``, at the peer's account."""

    def __init__(self, root, peer) -> None:
        self.name = peer.settings()["name"]
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker(self.name, AlpacaBroker.from_config(peer.settings()), default=True)
        self.journal = Journal(root / "journal.sqlite")
        self.service = ExecutionService(
            self.manager, KillSwitch(root, journal=self.journal, env={}), journal=self.journal
        )

    async def __aenter__(self) -> Run:
        await self.manager.connect_all()
        await self.manager.start()
        await self.service.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stop()
        await self.manager.stop()
        await self.manager.disconnect_all()
        self.journal.close()

    async def filled(self, peer, symbol: str, side: str, quantity: str, price: str) -> Order:
        order = await self.service.submit(
            OrderRequest(symbol=symbol, side=side, quantity=quantity, order_type="LIMIT", limit_price=price)
        )
        assert order.broker_order_id is not None, order.reject_reason
        await peer.fill(order.broker_order_id, quantity, price)
        await until(lambda: order.status is OrderStatus.FILLED, failure=f"{symbol} {side} not filled")
        return order

    def day(self, instrument: Instrument) -> tuple[Decimal, Decimal, Decimal, Decimal | None]:
        """The day's quantity, cash, commission and realised P&L (the previous close is Alpaca's
        once it reports the holding, and none for one opened today before that)."""
        day = self.service.book.day_activity(self.name, instrument)
        assert day is not None
        return (day.quantity, day.cash, day.commission, day.realized)


async def test_realised_today_at_alpaca_survives_a_restart_and_a_replayed_update(tmp_path, peer, keys):
    async with Run(tmp_path, peer) as run:
        await run.filled(peer, "AAPL", "BUY", "10", "189.00")
        await run.filled(peer, "AAPL", "SELL", "4", "191.50")
        fill_update = peer.sent_updates[-1]
        before = run.day(AAPL)
        # 4 x (191.50 - 189.00) realised; 6 held.
        assert before == (6, D(1890) - D(766), 0, D(10))

    async with Run(tmp_path, peer) as run:
        assert run.day(AAPL) == before
        assert run.service.book.position(run.name, AAPL) == 6  # Alpaca's, which holds the day
        # The stream sends the sale's fill again; a new trade after it shows it was read.
        await peer.replay(fill_update)
        await run.filled(peer, "MSFT", "BUY", "1", "410.00")
        assert run.day(AAPL) == before
        # A sale after the restart realises against Alpaca's average, 189.00.
        await run.filled(peer, "AAPL", "SELL", "6", "190.00")
        assert run.day(AAPL) == (0, D(1890) - D(766) - D(1140), 0, D(16))
        assert set(run.service.book.closed_today(run.name)) == {AAPL}


async def test_a_holding_carried_in_and_closed_today_at_alpaca_keeps_its_realised_figure(
    tmp_path, peer, keys
):
    """Closed, Alpaca reports the holding no more, nor its average: the console's record of the
    holdings at the open keeps what was realised against it."""
    peer.positions["MSFT"] = PeerPosition(D(8), D("400.25"))  # bought on an earlier day
    async with Run(tmp_path, peer) as run:
        await run.filled(peer, "MSFT", "SELL", "8", "410.00")
        before = run.day(MSFT)
        # 8 x (410.00 - 400.25) realised.
        assert before == (-8, D(-3280), 0, D(78))
        assert set(run.service.book.closed_today(run.name)) == {MSFT}

    async with Run(tmp_path, peer) as run:
        assert run.service.book.position(run.name, MSFT) == 0
        assert run.day(MSFT) == before
        assert set(run.service.book.closed_today(run.name)) == {MSFT}
