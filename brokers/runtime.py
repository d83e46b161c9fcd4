"""Wires a Config into the running parts: brokers, manager, kill switch, journal, execution.

The console and the command line both start from here, so they share one behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .base import Broker
from .config import JOURNAL_FILE, Config
from .desk import DeskLink
from .desk.journal import DeskJournal
from .desk.risk_state import DeskBuckets, DeskDayStore
from .desk.store import WorkingOrder
from .errors import ConfigError, UnknownAccountError
from .execution import ExecutionService
from .fx import FxRates
from .halt_record import HaltRecord
from .health import ORDERABLE
from .journal import Journal
from .journal_schedule import ArchiveSchedule
from .killswitch import KillSwitch
from .manager import MultiBrokerManager
from .paths import ensure_dir
from .registry import BrokerFactory
from .risk import RiskEngine
from .routing import Router
from .settled_cash import CashLedger
from .settlement import warm_up

log = logging.getLogger(__name__)


class ExecutionOrders:
    """The dead man's switch's view of this process's orders (``DeskOrders``)."""

    def __init__(self, execution: ExecutionService, manager: MultiBrokerManager) -> None:
        self.execution = execution
        self.manager = manager

    def working(self) -> list[WorkingOrder]:
        return [
            WorkingOrder(order.account, order.client_order_id, order.broker_order_id)
            for order in self.execution.working_orders()
            if order.account is not None
        ]

    def reaches(self, account: str) -> bool:
        try:
            return self.manager.status(account).state in ORDERABLE
        except UnknownAccountError:
            return False

    async def cancel_for_desk(self, account: str, broker_order_id: str) -> None:
        await self.execution.cancel(account, broker_order_id)


@dataclass
class Runtime:
    config: Config
    manager: MultiBrokerManager
    kill_switch: KillSwitch
    journal: Journal
    execution: ExecutionService
    fx: FxRates
    state_dir: Path
    # Where the kill switch records halts and resumes, when that is not ``journal`` (the demo).
    trading_state_journal: Journal | None = None
    # The kill switch kept in step with the desk (``[desk]`` in the config), else None.
    desk: DeskLink | None = None
    # The desk's order-rate buckets, when there is a desk.
    desk_buckets: DeskBuckets | None = None
    # The journal's closed days archived once a day (``[journal]`` in the config).
    archive_schedule: ArchiveSchedule | None = None
    # Settled cash of the cash accounts, kept from their fills (the pre-trade check reads it).
    cash_ledger: CashLedger | None = None
    started: bool = field(default=False)

    async def start(self, *, connect: bool = True) -> None:
        """Connect every account (failures are marked on the account, never raised), then start
        the heartbeat, the event pump and reconciliation of what the journal left open."""
        if self.started:
            return
        self.started = True
        # The settlement calendars that date every fill load in the background meanwhile, off
        # the connect path (a fifth to half a second); what needs them first waits in a thread.
        warm_up()
        if self.desk is not None:
            # First: a halt on the desk holds before any account connects.
            await self.desk.start()
            await self.desk.wait_connected(self.desk.settings.fail_after)
        if isinstance(self.journal, DeskJournal):
            # Orders are refused (JOURNAL_ERROR) until the desk journal answers; give it the
            # same time the desk's state is given.
            await asyncio.to_thread(self.journal.copier.wait_ready, self.journal.copier.settings.fail_after)
        if connect:
            await self.manager.connect_all()
        await self.manager.start()
        await self.execution.start()
        if connect:
            try:
                await self.execution.reconcile()
            except Exception:  # reconciliation problems are shown per order, never fatal
                log.exception("reconciliation at start-up failed")
        if self.archive_schedule is not None:
            self.archive_schedule.start()

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        if self.archive_schedule is not None:
            await self.archive_schedule.stop()
        if self.desk is not None:
            await self.desk.stop()
        await self.execution.stop()
        await self.manager.stop()
        await self.manager.disconnect_all()
        self.journal.close()
        if self.trading_state_journal is not None:
            self.trading_state_journal.close()
        if self.desk_buckets is not None:
            self.desk_buckets.close()


def build_brokers(config: Config) -> dict[str, Broker]:
    brokers: dict[str, Broker] = {}
    for account in config.accounts:
        try:
            brokers[account.name] = BrokerFactory.create(account.broker_config())
        except ConfigError as exc:
            if config.source is None:
                raise
            # The broker's own settings are checked here, not when the file is read: say which file.
            raise ConfigError(f"{config.source}: {exc}") from None
    return brokers


def build_runtime(
    config: Config,
    *,
    brokers: dict[str, Broker] | None = None,
    state_dir: Path | None = None,
    manager_timeout: float = 5.0,
) -> Runtime:
    """Build everything without connecting. ``brokers`` replaces the configured adapters
    (tests and benchmarks pass ready-made SimBrokers)."""
    root = ensure_dir(state_dir or config.resolved_state_dir())
    journal = (
        DeskJournal(root / config.journal_name, settings=config.desk)
        if config.desk is not None
        else Journal(root / config.journal_name)
    )
    # The flag is shared by every process using this folder, demo or not, so the record of halts
    # and resumes is too; only the orders are kept apart.
    # The demo records halts in the main journal too (``config.halt_record_names``).
    trading_state_journal = Journal(root / JOURNAL_FILE) if config.journal_name != JOURNAL_FILE else None
    kill_switch = KillSwitch(
        root, journal=journal if trading_state_journal is None else HaltRecord(trading_state_journal, journal)
    )
    cancel_on_halt = config.halt.cancel_open_orders

    def halted() -> bool:
        return cancel_on_halt and kill_switch.is_halted

    fx = FxRates(base=config.base_currency, settings=config.fx)
    manager = MultiBrokerManager(
        timeout=manager_timeout, fx=fx, base_currency=config.base_currency, halted=halted
    )
    manager.quotes.configure(config.quotes)
    built = brokers if brokers is not None else build_brokers(config)
    for name, broker in built.items():
        account = next((a for a in config.accounts if a.name == name), None)
        manager.add_broker(
            name,
            broker,
            default=(name == config.default_account) if account else False,
            weight=account.weight if account else 1.0,
            broker_type=account.type if account else broker.broker_type,
        )
    risk = RiskEngine(
        config.risk,
        {account.name: account.risk for account in config.accounts if account.risk is not None},
    )
    # Cash accounts spend settled cash only: the ledger follows their fills and working buys.
    cash_ledger = CashLedger(lambda: manager.snapshot.balances, history=journal)
    manager.add_listener(cash_ledger.on_event)
    risk.guard_cash_accounts(cash_ledger)
    router = Router(config.routing, config.default_account)
    execution = ExecutionService(
        manager,
        kill_switch,
        risk=risk,
        journal=journal,
        router=router,
        halt_settings=config.halt,
        base_currency=config.base_currency,
        fx=fx,
        confirm_notional_above=config.ui.confirm_notional_above,
    )
    manager.book_provider = execution.book_positions
    desk_buckets = None
    if config.desk is not None:
        # The desk's risk state, not the state folder's: one budget for every machine.
        desk_buckets = DeskBuckets(config.desk)
        risk.share_buckets(desk_buckets)
        execution.book.store = DeskDayStore(config.desk)
    return Runtime(
        config=config,
        manager=manager,
        kill_switch=kill_switch,
        journal=journal,
        execution=execution,
        fx=fx,
        state_dir=root,
        trading_state_journal=trading_state_journal,
        archive_schedule=ArchiveSchedule(journal, config.journal),
        desk=(
            DeskLink(kill_switch, config.desk, name="console", orders=ExecutionOrders(execution, manager))
            if config.desk is not None
            else None
        ),
        desk_buckets=desk_buckets,
        cash_ledger=cash_ledger,
    )
