"""The Textual app: wires the runtime (manager, kill switch, execution) to the main screen.

Broker I/O runs in workers; library callbacks become Messages. The halt key writes the flag
synchronously in its key handler, so the banner is on screen before any broker is asked to
cancel anything.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from brokers.events import ConnectionEvent, FillEvent, ManagerEvent, PositionDiffEvent
from brokers.models import ConnectionState, Order, OrderRequest, TradingState
from brokers.preview import OrderPreview
from console import formatting as fmt

from .account_data import AccountData
from .commands import console_commands
from .event_lines import ShownOrder, connection_line, diff_lines, first_status_line, order_line
from .log_handler import EventLogHandler
from .market import QuoteBoardView
from .messages import (
    CancelAllFinished,
    LogEvent,
    ManagerEventReceived,
    OrderChanged,
    SubmitRequested,
    TradingStateChanged,
)
from .order_control import OrderControl
from .quote_view import TICK_SECONDS, QuoteView
from .trading_state import TradingStateControl
from .widgets.account_pane import AccountPane
from .widgets.blotter import BlotterPane
from .widgets.connections import ConnectionsPane, LatencyOf, measured_latency
from .widgets.event_log import EventLog
from .widgets.halt_banner import HaltBanner, HaltKeyHint
from .widgets.key_footer import KeyFooter
from .widgets.order_entry import OrderEntry
from .widgets.positions import PositionsPane
from .widgets.title_bar import TitleBar
from .widgets.watchlist import WatchlistPane

if TYPE_CHECKING:
    from brokers.config import Config
    from brokers.runtime import Runtime

log = logging.getLogger(__name__)

ACTIONS = (
    "halt",
    "resume",
    "reduce_only",
    "submit",
    "cancel_order",
    "focus_order_entry",
    "focus_blotter",
    "focus_positions",
    "focus_watchlist",
    "quit",
)

W = TypeVar("W", bound=Widget)

P = ParamSpec("P")


def _while_on_screen(
    method: Callable[Concatenate[TradingConsoleApp, P], None],
) -> Callable[Concatenate[TradingConsoleApp, P], None]:
    """Timers and messages can still arrive while the app is closing and its widgets are
    already gone; there is nothing left to update then."""

    def guarded(self: TradingConsoleApp, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except (NoMatches, NoScreen):
            if self.is_running:
                raise

    functools.update_wrapper(guarded, method)
    return guarded


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TradingConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "Trading console"
    # ctrl+p belongs to "focus positions" in the default keymap.
    COMMAND_PALETTE_BINDING = "f1"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS = [
        Binding("f12,ctrl+k", "halt", "HALT", priority=True, id="halt", show=False),
        Binding("ctrl+r", "resume", "Resume", priority=True, id="resume"),
        Binding("ctrl+y", "reduce_only", "Reduce-only", priority=True, id="reduce_only"),
        Binding("ctrl+x", "cancel_order", "Cancel order", id="cancel_order"),
        Binding("ctrl+o", "focus_order_entry", "Order", id="focus_order_entry"),
        Binding("ctrl+b", "focus_blotter", "Blotter", id="focus_blotter"),
        Binding("ctrl+p", "focus_positions", "Positions", id="focus_positions"),
        Binding("ctrl+l", "focus_watchlist", "Watchlist", id="focus_watchlist"),
        Binding("ctrl+q", "quit", "Quit", priority=True, id="quit"),
        Binding("f", "flatten_selected", "Flatten position", show=False),
    ]

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] | None = None,
        start_feed: bool = True,
        cursor_blink: bool = True,
        latency: LatencyOf = measured_latency,
        on_accounts_loaded: Callable[[], None] | None = None,
        quotes: QuoteBoardView | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.runtime = runtime
        self.clock = clock or _utc_now
        self.start_feed = start_feed
        self.cursor_blink = cursor_blink
        self.latency = latency
        self._on_accounts_loaded = on_accounts_loaded
        self.keys = {action: config.ui.keys_for(action) for action in ACTIONS}
        self.set_keymap(dict(self.keys))
        self.account_names = [account.name for account in config.accounts]
        self.live_accounts = {account.name for account in config.accounts if account.live}
        self.account_currency = {account.name: account.currency for account in config.accounts}
        self.trading = TradingStateControl(self)
        self.order_control = OrderControl(self)
        self.quotes = QuoteView(self, quotes or runtime.manager.quotes)
        self.runtime_ready = asyncio.Event()
        self.runtime_error: str | None = None
        self._manager_queue: asyncio.Queue[ManagerEvent] | None = None
        self.account_data = AccountData(self)
        self._last_statuses: dict[str, ShownOrder] = {}
        self._subscribed = False
        # Until the runtime's first connect attempt is over, an account not yet tried is on its
        # way up, not down.
        self._connecting = True
        self._log_handler = EventLogHandler(self)
        self._widgets: dict[str, Widget] = {}

    # -- layout ------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        # The first resize would add the breakpoint class and so restyle every widget once more
        # before the first frame; the screen starts with the class that size calls for.
        width = self.size.width
        classes = next(
            (name for edge, name in sorted(self.HORIZONTAL_BREAKPOINTS, reverse=True) if width >= edge), ""
        )
        return Screen(id="_default", classes=classes)

    def compose(self) -> ComposeResult:
        base = self.config.base_currency
        yield TitleBar(
            base_currency=base, demo=self.config.demo, live_accounts=self.live_accounts, id="title-bar"
        )
        yield HaltBanner(
            id="halt-banner", resume_key=self.key_label("resume"), cancel_key=self.key_label("cancel_order")
        )
        with Grid(id="main"):
            with Horizontal(id="top-row"):
                yield ConnectionsPane(id="connections", classes="pane")
                yield AccountPane(id="accounts", classes="pane", base_currency=base)
            yield PositionsPane(id="positions", classes="pane", base_currency=base)
            yield OrderEntry(
                self.account_names,
                live_accounts=self.live_accounts,
                default_account=self.config.default_account,
                submit_keys=self.keys["submit"],
                cursor_blink=self.cursor_blink,
                market=self.quotes.market,
                id="order-entry",
                classes="pane",
            )
            yield BlotterPane(id="blotter", classes="pane")
            yield WatchlistPane(
                self.config.ui.watchlist, market=self.quotes.market, id="watchlist", classes="pane"
            )
            yield EventLog(id="events", classes="pane", clock=self.clock)
        with Horizontal(id="footer-bar"):
            yield HaltKeyHint(self.keys["halt"], id="halt-hint")
            yield KeyFooter(show_command_palette=True)

    def on_resize(self, event: events.Resize) -> None:
        # Every key hint must fit on one line in an 80-column terminal.
        narrow = event.size.width < 120
        self._widget("Footer", Footer).compact = narrow

    def key_label(self, action: str) -> str:
        return " / ".join(part.strip() for part in self.keys[action].split(","))

    # Widgets are looked up once: timers may still fire while the app is closing and its
    # screen is already being taken apart.
    @property
    def banner(self) -> HaltBanner:
        return self._widget("#halt-banner", HaltBanner)

    @property
    def event_log(self) -> EventLog:
        return self._widget("#events", EventLog)

    @property
    def order_entry(self) -> OrderEntry:
        return self._widget("#order-entry", OrderEntry)

    @property
    def blotter(self) -> BlotterPane:
        return self._widget("#blotter", BlotterPane)

    @property
    def positions(self) -> PositionsPane:
        return self._widget("#positions", PositionsPane)

    @property
    def watchlist(self) -> WatchlistPane:
        return self._widget("#watchlist", WatchlistPane)

    @property
    def connections(self) -> ConnectionsPane:
        return self._widget("#connections", ConnectionsPane)

    @property
    def accounts(self) -> AccountPane:
        return self._widget("#accounts", AccountPane)

    def _widget(self, selector: str, kind: type[W]) -> W:
        widget = self._widgets.get(selector)
        if not isinstance(widget, kind):
            widget = self.query_one(selector, kind)
            self._widgets[selector] = widget
        return widget

    # -- start and stop ----------------------------------------------------------------------
    def on_mount(self) -> None:
        logging.getLogger("brokers").addHandler(self._log_handler)
        self.runtime.execution.subscribe(self._on_order)
        self._subscribed = True
        self.set_interval(1.0, self._tick_second, name="clock")
        self.set_interval(TICK_SECONDS, self.show_quotes, name="quotes")
        self.show_statuses()
        mode = "demo (paper accounts)" if self.config.demo else f"{len(self.account_names)} account(s)"
        self.event_log.add(f"console started: {mode}, base currency {self.config.base_currency}")
        self.trading.mount()
        self.query_one("#positions-table").focus()
        # Connect after the first frame so the screen is usable at once.
        self.call_after_refresh(self._start_runtime)

    def _start_runtime(self) -> None:
        self.run_worker(self._run_runtime(), name="runtime-start", group="runtime", exit_on_error=False)

    async def _run_runtime(self) -> None:
        try:
            await self.runtime.start()
        except Exception as exc:
            self.runtime_error = fmt.one_line(str(exc) or type(exc).__name__, 300)
            self.post_message(LogEvent(f"start-up failed: {self.runtime_error}", "error"))
        finally:
            self._connecting = False
        self.trading.runtime_started(ok=self.runtime_error is None)
        self._manager_queue = self.runtime.manager.subscribe()
        for name, status in self.runtime.manager.statuses().items():
            self.post_message(LogEvent(*first_status_line(name, status)))
        self.run_worker(
            self._pump_manager_events(), name="manager-events", group="events", exit_on_error=False
        )
        await self.account_data.read()
        past = await self.order_control.todays_past_orders()
        for order in past:
            # Shown as they stand, without a line in the event log for each.
            self._last_statuses[order.client_order_id] = (order.status, order.filled_quantity)
        with self.batch_update():  # one repaint for the lot, not one per row
            self.blotter.show_orders([(order, self.runtime.execution.orphan_note(order)) for order in past])
        current = self.runtime.execution.orders()
        with self.batch_update():
            self.blotter.show_orders(
                [(order, self.runtime.execution.orphan_note(order)) for order in current]
            )
        for order in current:
            self._note_order(order)
        self.order_control.start_monitoring()
        if self._on_accounts_loaded is not None:
            self._on_accounts_loaded()
        self.runtime_ready.set()
        if self.start_feed:
            hz = self.config.ui.price_refresh_hz
            self.set_interval(1 / hz, self._tick_prices, name="prices")
            self.account_data.schedule()

    async def on_unmount(self) -> None:
        logging.getLogger("brokers").removeHandler(self._log_handler)
        await self.order_control.stop_monitoring()
        if self._subscribed:
            self.trading.unmount()
            self.runtime.execution.unsubscribe(self._on_order)
            self._subscribed = False
        if self._manager_queue is not None:
            self.runtime.manager.unsubscribe(self._manager_queue)
        try:
            await asyncio.wait_for(self.runtime.stop(), timeout=5)
        except Exception:
            log.exception("stopping the runtime failed")

    async def wait_until_ready(self, within: float = 10.0) -> None:
        """For tests and the screenshot command: the runtime started and the first data shows."""
        await asyncio.wait_for(self.runtime_ready.wait(), within)

    # -- library callbacks -> messages -------------------------------------------------------
    def _on_order(self, order: Order) -> None:
        self.post_message(OrderChanged(order))

    async def _pump_manager_events(self) -> None:
        queue = self._manager_queue
        if queue is None:
            return
        while True:
            event = await queue.get()
            self.post_message(ManagerEventReceived(event))

    # -- trading state (see trading_state.py) ------------------------------------------------
    @property
    def trading_state(self) -> TradingState:
        return self.trading.state

    @_while_on_screen
    def on_trading_state_changed(self, message: TradingStateChanged) -> None:
        self.trading.changed(message.state, message.info)

    @_while_on_screen
    def on_cancel_all_finished(self, message: CancelAllFinished) -> None:
        self.trading.cancel_all_finished(message)

    # -- actions -----------------------------------------------------------------------------
    def action_halt(self) -> None:
        self.trading.halt()

    def action_resume(self) -> None:
        self.trading.ask_resume()

    def action_reduce_only(self) -> None:
        self.trading.reduce_only()

    def action_cancel_order(self) -> None:
        self.order_control.cancel_selected()

    def on_blotter_pane_modify_requested(self, message: BlotterPane.ModifyRequested) -> None:
        self.order_control.modify_selected()

    def on_blotter_pane_cancel_all_requested(self, message: BlotterPane.CancelAllRequested) -> None:
        self.order_control.cancel_all()

    def on_blotter_pane_history_requested(self, message: BlotterPane.HistoryRequested) -> None:
        self.order_control.show_history(message.order)

    def action_focus_order_entry(self) -> None:
        self.order_entry.focus_first()

    def action_focus_blotter(self) -> None:
        self.query_one("#blotter-table").focus()

    def action_focus_positions(self) -> None:
        self.query_one("#positions-table").focus()

    def action_focus_watchlist(self) -> None:
        if not self.watchlist.display:
            self.notify("The watchlist needs a terminal at least 120 columns wide.", severity="warning")
            return
        self.watchlist.focus()

    def on_watchlist_pane_changed(self, message: WatchlistPane.Changed) -> None:
        self.quotes.save_watchlist(message.symbols)

    def action_submit(self) -> None:
        self.order_entry.action_submit()

    def action_flatten_selected(self) -> None:
        if self.focused is not self.positions.table:
            self.notify("Select a position in the positions pane (ctrl+p), then f", timeout=3)
            return
        self.order_control.flatten_selected()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from console_commands(self)
        yield from self.order_control.commands()
        yield from super().get_system_commands(screen)

    # -- orders ------------------------------------------------------------------------------
    def on_submit_requested(self, message: SubmitRequested) -> None:
        request, distributed = message.request, message.distributed
        try:
            # The same routing, price and rate the order path uses: the modal names exactly the
            # accounts the order will reach.
            preview = self.runtime.execution.preview(request, distributed=distributed)
        except Exception as exc:
            log.exception("order preview failed")
            text = f"not sent: {fmt.describe_request(request)}: could not tell where it would go ({exc})"
            self.post_message(LogEvent(text, "error", toast=True))
            return
        # An order nothing would take goes straight on: the refusal says why, in the blotter.
        if preview.problem is not None or not preview.needs_confirmation:
            self._send(request, distributed)
            return
        from .screens.order_confirm import OrderConfirmScreen

        self.push_screen(
            OrderConfirmScreen(preview, halt_keys=self.keys["halt"]),
            lambda send: self._confirmed(preview, bool(send)),
        )

    def _confirmed(self, preview: OrderPreview, send: bool) -> None:
        if send:
            self._send(preview.request, preview.distributed)
        else:
            self.event_log.add(f"not sent: {fmt.describe_request(preview.request)}")

    def _send(self, request: OrderRequest, distributed: bool) -> None:
        self.event_log.add(
            f"sending: {fmt.describe_request(request)}{' split across accounts' if distributed else ''}"
        )
        self.run_worker(
            self._submit(request, distributed), name="submit", group="orders", exit_on_error=False
        )

    async def _submit(self, request: OrderRequest, distributed: bool) -> None:
        execution = self.runtime.execution
        try:
            if distributed:
                orders = await execution.submit_distributed(request)
            else:
                orders = [await execution.submit(request)]
        except Exception as exc:
            self.post_message(LogEvent(f"submit failed: {exc or type(exc).__name__}", "error", toast=True))
            return
        for order in orders:
            self.post_message(OrderChanged(order))

    @_while_on_screen
    def on_order_changed(self, message: OrderChanged) -> None:
        order = message.order
        new = order.client_order_id not in self.blotter.orders
        self.blotter.show_order(order, self.runtime.execution.orphan_note(order))
        self._note_order(order, new=new)

    def _note_order(self, order: Order, *, new: bool = True) -> None:
        """The event-log line and the refresh an order's change calls for (its row is shown)."""
        key = order.client_order_id
        # The same object may come back mutated: compare what was last shown.
        shown = self._last_statuses.get(key)
        now = (order.status, order.filled_quantity)
        if shown == now:
            return
        if self.trading_state is TradingState.HALTED:
            self.trading.show_working()
        self._last_statuses[key] = now
        line = order_line(order, shown)
        if line is not None:
            self.event_log.add(*line)
        if new or order.filled_quantity or order.is_terminal:
            self.refresh_soon()

    @_while_on_screen
    def on_log_event(self, message: LogEvent) -> None:
        self.event_log.add(message.text, message.level)
        if message.toast:
            self.notify(message.text, severity="error", timeout=5)

    # -- manager events and data -------------------------------------------------------------
    @_while_on_screen
    def on_manager_event_received(self, message: ManagerEventReceived) -> None:
        event = message.event
        if isinstance(event, ConnectionEvent):
            self.event_log.add(*connection_line(event))
            self.show_statuses()
        elif isinstance(event, FillEvent):
            self.refresh_soon()
        elif isinstance(event, PositionDiffEvent):
            for line in diff_lines(event):
                self.event_log.add(line, "warning")

    def refresh_soon(self) -> None:
        """Read the accounts again shortly, once for a burst of fills."""
        self.account_data.read_soon()

    async def refresh_now(self) -> None:
        """Re-read every account and show the result (tests and screenshots call this)."""
        await self.account_data.read()

    async def show_snapshot(self, *, force: bool = False) -> None:
        """Show the manager's last snapshot without reading the accounts again."""
        await self.account_data.show(force=force)

    @_while_on_screen
    def show_quotes(self) -> None:
        """Repaint the quotes that changed (a timer calls it; tests and screenshots too)."""
        self.quotes.tick()

    @_while_on_screen
    def _tick_prices(self) -> None:
        self.account_data.tick_prices()

    @_while_on_screen
    def _tick_second(self) -> None:
        self.show_statuses()
        self.show_title()
        self.quotes.tick_second()

    def show_statuses(self) -> None:
        try:
            statuses = self.runtime.manager.statuses()
        except Exception:
            return
        if self._connecting:
            statuses = {
                name: status.model_copy(update={"state": ConnectionState.CONNECTING})
                if status.state is ConnectionState.DISCONNECTED and not status.last_error
                else status
                for name, status in statuses.items()
            }
        self.connections.show_statuses(statuses, self.clock(), self.latency, self.quotes.outages)

    def show_title(self) -> None:
        self._widget("#title-bar", TitleBar).show(
            self.trading_state, self.clock(), start_failed=self.runtime_error is not None
        )


def make_app(
    config: Config,
    *,
    runtime: Runtime | None = None,
    clock: Callable[[], datetime] | None = None,
    start_feed: bool = True,
    cursor_blink: bool = True,
    latency: LatencyOf = measured_latency,
    on_accounts_loaded: Callable[[], None] | None = None,
    quotes: QuoteBoardView | None = None,
) -> TradingConsoleApp:
    """Build the app. ``start_feed=False`` leaves out the periodic price and account refresh
    (snapshots and tests refresh on demand); ``cursor_blink=False`` and a fixed ``latency``
    keep screenshots stable; ``on_accounts_loaded`` runs once the first account data is in;
    ``quotes`` is the board the screen reads quotes from (the manager's by default; screenshots
    give one fed fixed quotes)."""
    if runtime is None:
        from brokers.runtime import build_runtime

        runtime = build_runtime(config)
    return TradingConsoleApp(
        config,
        runtime,
        clock=clock,
        start_feed=start_feed,
        cursor_blink=cursor_blink,
        latency=latency,
        on_accounts_loaded=on_accounts_loaded,
        quotes=quotes,
    )
