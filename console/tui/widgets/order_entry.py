"""Order entry: account (or auto-route), symbol, side, quantity, type, limit/stop/trail, TIF.

Every keystroke re-validates through ``OrderRequest`` itself, so the form and the library can
never disagree about what a valid order is; the message for a bad field sits under that field.
While the trader types, the symbol is quoted from the account the order would reach (asked of
the quote board under the owner ``ticket``) and the order's cost is estimated under the form.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from brokers.instruments import Instrument
from brokers.models import OrderRequest, OrderType, Side, TimeInForce, field_errors
from console import formatting as fmt
from console.tui.market import NO_PRICE_YET, UNKNOWN_SYMBOL, Market, SymbolLook
from console.tui.messages import SubmitRequested
from console.tui.widgets.ticket_quote import TicketQuote
from console.typed_input import ungrouped

from .order_exits import EXIT_FIELDS, EXIT_LABELS, OrderExits, exit_request_fields

AUTO_ROUTE = "__auto__"
QUOTE_OWNER = "ticket"
"""The name the ticket's wants go by on the quote board."""
LOOKUP_DELAY = 0.4
"""Seconds the symbol must stay as typed before the brokers are asked whether they list it:
one lookup per pause, never one per keystroke."""
LOOKUP_RETRY = 15.0
"""Seconds after which a symbol still in the box is asked about again when some broker could
not tell (it failed, timed out, or was not connected)."""

# OrderRequest field -> the form field that holds it.
_FIELD_FOR = {
    "account": "account",
    "symbol": "symbol",
    "side": "side",
    "quantity": "quantity",
    "order_type": "type",
    "limit_price": "limit",
    "stop_price": "stop",
    "trail_percent": "trail",
    "trail_amount": "trail",
    "time_in_force": "tif",
    **{name: name for name in EXIT_FIELDS},
}
# Checked longest first so "trail_percent" wins over a bare "trail".
_NAMES_IN_MESSAGES = sorted(_FIELD_FOR, key=len, reverse=True)

USES_LIMIT = {OrderType.LIMIT, OrderType.STOP_LIMIT}
USES_STOP = {OrderType.STOP, OrderType.STOP_LIMIT}
USES_TRAIL = {OrderType.TRAILING_STOP}

TEXT_FIELDS = ("symbol", "quantity", "limit", "stop", "trail", *EXIT_FIELDS)


def parse_trail(text: str) -> dict[str, str]:
    """``2.5%`` is a trail percent, ``1.20`` a trail amount."""
    text = text.strip()
    if not text:
        return {}
    if text.endswith("%"):
        return {"trail_percent": text[:-1]}
    return {"trail_amount": text}


def build_request(values: Mapping[str, Any]) -> tuple[OrderRequest | None, dict[str, str]]:
    """Form values -> (request, {}) or (None, {form field: message})."""
    order_type = values.get("type") or OrderType.MARKET
    data: dict[str, Any] = {
        "symbol": values.get("symbol", ""),
        "side": values.get("side") or Side.BUY,
        "quantity": values.get("quantity", ""),
        "order_type": order_type,
        "time_in_force": values.get("tif") or TimeInForce.DAY,
    }
    account = values.get("account")
    if account and account != AUTO_ROUTE:
        data["account"] = account
    try:
        kind = OrderType(order_type)
    except ValueError:
        kind = None
    if kind in USES_LIMIT:
        data["limit_price"] = values.get("limit") or None
    if kind in USES_STOP:
        data["stop_price"] = values.get("stop") or None
    if kind in USES_TRAIL:
        data.update(parse_trail(values.get("trail") or ""))
    data.update(exit_request_fields(values))
    # A comma the library would silently drop (1,5 read as 15) is refused here, by the field.
    typed: dict[str, str] = {}
    for name, field in _TYPED_NUMBERS.items():
        text = data.get(name)
        if isinstance(text, str):
            try:
                data[name] = ungrouped(text, _LABELS.get(name, name))
            except ValueError as exc:
                typed[field] = str(exc)
    try:
        request: OrderRequest | None = OrderRequest(**data)
        errors: dict[str, str] = {}
    except ValidationError as exc:
        request, errors = None, _form_errors(exc, kind)
    if typed:
        return None, {**errors, **typed}
    return request, errors


def _form_errors(exc: ValidationError, kind: OrderType | None) -> dict[str, str]:
    errors: dict[str, str] = {}
    for field, message in field_errors(exc).items():
        target = _FIELD_FOR.get(field)
        if target is None:
            # Whole-order rules (a LIMIT order needs a limit price) name the field in the text.
            target = next((_FIELD_FOR[name] for name in _NAMES_IN_MESSAGES if name in message), "form")
        if kind in USES_TRAIL and target == "trail" and "exactly one" in message:
            message = "enter a trail amount (1.50) or percent (2%)"
        errors.setdefault(target, _plain(message))
    return errors


_LABELS = {
    "limit_price": "limit price",
    "stop_price": "stop price",
    "trail_percent": "trail percent",
    "trail_amount": "trail amount",
    "time_in_force": "TIF",
    "order_type": "type",
    **EXIT_LABELS,
}
# The typed numbers: OrderRequest field -> form field.
_TYPED_NUMBERS = {
    name: _FIELD_FOR[name]
    for name in ("quantity", "limit_price", "stop_price", "trail_percent", "trail_amount", *EXIT_FIELDS)
}


def _identity(instrument: Instrument | None) -> tuple[Instrument, str | None] | None:
    """Instruments compare without their currency; what the board is asked for includes it."""
    return None if instrument is None else (instrument, instrument.currency)


def _plain(message: str) -> str:
    """Library messages name model fields (limit_price); the form calls them by their labels."""
    for name, label in _LABELS.items():
        message = message.replace(name, label)
    return message


class FieldBox(Vertical):
    """Label, input, and the message for that input right under it."""

    def __init__(
        self, name: str, label: str, control: Widget, short_label: str | None = None, *, unused: bool = False
    ) -> None:
        super().__init__(id=f"field-{name}", classes="field -unused" if unused else "field")
        self.message: str | None = None
        self.note: str | None = None
        self.field_name = name
        self.long_label = label
        self.short_label = short_label or label
        self.control = control

    def compose(self) -> ComposeResult:
        # Narrow terminals put the label beside the input and use the short one.
        yield Label(self.long_label, classes="field-label -long")
        yield Label(self.short_label, classes="field-label -short")
        yield self.control
        yield Static("", classes="field-error", markup=False)
        yield Static("", classes="field-note", markup=False)

    def show_error(self, message: str | None) -> None:
        if (message or None) == self.message:
            return  # restyling costs: touch nothing when nothing changed
        self.message = message or None
        error = self.query_one(".field-error", Static)
        error.update(message or "")
        error.set_class(bool(message), "-shown")
        self.set_class(bool(message), "-invalid")

    def show_note(self, note: str | None) -> None:
        """A remark under the input that does not stop the order (no price yet)."""
        if (note or None) == self.note:
            return
        self.note = note or None
        shown = self.query_one(".field-note", Static)
        shown.update(note or "")
        shown.set_class(bool(note), "-shown")


class OrderEntry(Vertical):
    """Posts ``SubmitRequested`` with a valid request; the app confirms, sends and reports."""

    BINDINGS = [Binding("enter", "submit", "Submit", id="submit", show=False)]

    def __init__(
        self,
        accounts: Iterable[str] = (),
        *,
        live_accounts: Iterable[str] = (),
        default_account: str | None = None,
        submit_keys: str = "enter",
        cursor_blink: bool = True,
        market: Market | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.market = market
        self.look: SymbolLook | None = None
        self._wanted: Instrument | None = None
        self._probe: OrderRequest | None = None
        self._request: OrderRequest | None = None
        self._listing_key: object = None
        self._listing_timer: Timer | None = None
        self._listing_asked_at = 0.0
        self.accounts = list(accounts)
        self.live_accounts = set(live_accounts)
        self.default_account = default_account
        self.submit_keys = {key.strip() for key in submit_keys.split(",")}
        self.cursor_blink = cursor_blink
        self.touched: set[str] = set()
        self.errors: dict[str, str] = {}
        self.halted = False

    def compose(self) -> ComposeResult:
        account_options = [("auto-route", AUTO_ROUTE)] + [
            (f"{name} LIVE" if name in self.live_accounts else name, name) for name in self.accounts
        ]

        def text(name: str, placeholder: str, *, unused: bool = False) -> Input:
            return Input(
                placeholder=placeholder,
                id=f"order-{name}",
                compact=True,
                select_on_focus=False,
                disabled=unused,
            )

        def choice(name: str, options: list[tuple[str, str]], value: str) -> Select[str]:
            return Select(options, value=value, allow_blank=False, compact=True, id=f"order-{name}")

        with Grid(id="order-form"):
            yield FieldBox(
                "account",
                "Account",
                short_label="Acct",
                control=choice("account", account_options, AUTO_ROUTE),
            )
            yield FieldBox("symbol", "Symbol", short_label="Sym", control=text("symbol", "ticker"))
            yield FieldBox(
                "side",
                "Side",
                short_label="Side",
                control=choice("side", [(side.value, side.value) for side in Side], Side.BUY.value),
            )
            yield FieldBox("quantity", "Qty", short_label="Qty", control=text("quantity", "shares"))
            yield FieldBox(
                "type",
                "Type",
                short_label="Type",
                control=choice(
                    "type",
                    [(kind.value.replace("_", " "), kind.value) for kind in OrderType],
                    OrderType.MARKET.value,
                ),
            )
            # A MARKET order to start with: the price fields start out unused.
            yield FieldBox(
                "limit", "Limit", short_label="Lmt", control=text("limit", "price", unused=True), unused=True
            )
            yield FieldBox(
                "stop", "Stop", short_label="Stp", control=text("stop", "price", unused=True), unused=True
            )
            yield FieldBox(
                "trail",
                "Trail amt/%",
                short_label="Trl",
                control=text("trail", "amt or %", unused=True),
                unused=True,
            )
            yield OrderExits(id="order-exits")
            yield FieldBox(
                "tif",
                "TIF",
                short_label="TIF",
                control=choice("tif", [(tif.value, tif.value) for tif in TimeInForce], TimeInForce.DAY.value),
            )
            yield Checkbox(
                "Split",
                id="order-split",
                compact=True,
                tooltip="Split the quantity across all accounts by weight",
            )
            yield Button("Submit", id="order-submit", variant="primary", compact=True)
        yield TicketQuote(id="order-quote")
        yield Static("", id="order-status", markup=False)
        yield Static("", id="order-errors", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Order entry"
        for field in self.query(Input):
            field.cursor_blink = self.cursor_blink
        if self.default_account:
            self.border_subtitle = f"auto-route default: {self.default_account}"
        self._set_status(None)
        # A quote goes stale without any new one arriving: look again now and then.
        self.set_interval(1.0, self.show_quote, name="ticket-quote")

    # -- reading the form ----------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            values[name] = self.query_one(f"#order-{name}", Input).value
        for name in ("account", "side", "type", "tif"):
            value = self.query_one(f"#order-{name}", Select).value
            values[name] = None if value is Select.NULL else value
        values["split"] = self.query_one("#order-split", Checkbox).value
        return values

    def set_values(self, **values: Any) -> None:
        """Fill fields by name (symbol="AAPL", quantity="10", type="LIMIT", split=True, ...)."""
        for name, value in values.items():
            if name in TEXT_FIELDS:
                self.query_one(f"#order-{name}", Input).value = str(value)
            elif name == "split":
                self.query_one("#order-split", Checkbox).value = bool(value)
            else:
                self.query_one(f"#order-{name}", Select).value = (
                    value.value if isinstance(value, Enum) else value
                )
            self.touched.add(name)

    def validate(self, *, show_all: bool = False) -> OrderRequest | None:
        values = self.values()
        request, errors = build_request(values)
        if request is not None and request.account is not None and request.account not in self.accounts:
            errors["account"] = f"unknown account {request.account!r}"
            request = None
        look = self._look(request, values, errors)
        if look is not None and look.problem == UNKNOWN_SYMBOL and "symbol" not in errors:
            # Nothing would trade it: said here, by the symbol, rather than by a risk check.
            errors["symbol"] = UNKNOWN_SYMBOL
            request = None
        self.errors = errors
        if show_all:
            self.touched.update(_FIELD_FOR.values())
        shown = Text()
        for box in self.query(FieldBox):
            name = box.field_name
            message = errors.get(name) if name in self.touched else None
            box.show_error(message)
            if name == "symbol":
                unpriced = message is None and look is not None and look.problem == NO_PRICE_YET
                box.show_note(NO_PRICE_YET if unpriced else None)
            if message:
                if shown:
                    shown.append(" · ")
                shown.append(f"{box.short_label}: ", style="bold")
                shown.append(message)
        if errors.get("form") and show_all:
            if shown:
                shown.append(" · ")
            shown.append(errors["form"])
        errors_line = self.query_one("#order-errors", Static)
        errors_line.update(shown)
        errors_line.set_class(not shown, "-empty")
        self.set_class(bool(shown), "-has-errors")
        form_error = errors.get("form")
        if form_error and show_all:
            self._set_status(Text(form_error, style="red"))
        elif request is not None:
            self._set_status(self._summary(request))
        elif not show_all:
            self._set_status(None)
        return request

    # -- the market for what is typed ------------------------------------------------------
    def _look(
        self, request: OrderRequest | None, values: Mapping[str, Any], errors: Mapping[str, str]
    ) -> SymbolLook | None:
        """Look the symbol up as the order would go: the whole order, else one unit of the
        symbol typed so far."""
        if self.market is None:
            return None
        probe = request
        if probe is None and "symbol" not in errors and "account" not in errors:
            probe, _ = build_request({**values, "quantity": "1", "type": OrderType.MARKET.value})
        self._probe, self._request = probe, request
        return self._show_look()

    def _show_look(self) -> SymbolLook | None:
        """Tell the quote board what the ticket wants and show its quote and the estimate."""
        market, probe, request = self.market, self._probe, self._request
        if market is None:
            return None
        look = market.look_at(probe) if probe is not None else None
        self.look = look
        wanted = look.instrument if look is not None else None
        if _identity(wanted) != _identity(self._wanted):
            self._wanted = wanted
            market.board.want(QUOTE_OWNER, () if wanted is None else (wanted,))
        estimate = market.estimate(request, look) if request is not None and look is not None else None
        self.query_one("#order-quote", TicketQuote).show(look, estimate)
        self._schedule_listing(market, probe)
        return look

    # -- whether the symbol exists -----------------------------------------------------------
    def _schedule_listing(self, market: Market, probe: OrderRequest | None) -> None:
        """Ask the brokers about the symbol once the trader pauses on it (``LOOKUP_DELAY``)."""
        key = market.listing_key(probe) if probe is not None else None
        if key == self._listing_key:
            if (
                probe is not None
                and not self.looking_up
                and time.monotonic() - self._listing_asked_at >= LOOKUP_RETRY
                and market.unanswered(probe)
            ):
                self._ask_listing()
            return
        self._listing_key = key
        if self._listing_timer is not None:
            self._listing_timer.stop()
            self._listing_timer = None
        if key is not None:
            self._listing_timer = self.set_timer(LOOKUP_DELAY, self._ask_listing, name="symbol-lookup")

    @property
    def looking_up(self) -> bool:
        """Whether the brokers are still to be asked, or still answering, about the symbol."""
        return self._listing_timer is not None or any(
            worker.group == "symbol-lookup" and not worker.is_finished for worker in self.workers
        )

    def _ask_listing(self) -> None:
        self._listing_timer = None
        market, probe = self.market, self._probe
        if market is None or probe is None:
            return
        self._listing_asked_at = time.monotonic()
        self.run_worker(self._listing_answered(market, probe), group="symbol-lookup", exclusive=True)

    async def _listing_answered(self, market: Market, probe: OrderRequest) -> None:
        key = market.listing_key(probe)
        await market.ask_listing(probe)
        if self.market is market and self._probe is not None and market.listing_key(self._probe) == key:
            self.show_quote()
        # Otherwise the box holds another symbol by now: this answer is not for it.

    def show_quote(self) -> None:
        """Show the latest quote of the symbol typed: the app calls this when it changed, and
        a timer now and then, so a quote that stopped coming turns STALE on screen."""
        if self.market is None or self._probe is None:
            return
        before = self.look.problem if self.look is not None else None
        look = self._show_look()
        if (look.problem if look is not None else None) != before:
            self.validate()  # what the symbol box says changes with it

    def show_quotes(self, changed: set[Instrument]) -> None:
        if self._wanted is not None and self._wanted in changed:
            self.show_quote()

    def _summary(self, request: OrderRequest) -> Text:
        where = request.account or self._route_text()
        text = Text()
        text.append(f"{fmt.describe_request(request)} ", style="bold")
        text.append(f"→ {where}")
        if request.account in self.live_accounts:
            text.append("  LIVE", style="bold white on red")
        if self.query_one("#order-split", Checkbox).value:
            text.append("  split by weight", style="cyan")
        return text

    def _route_text(self) -> str:
        routed = self.look.account if self.look is not None else None
        return f"auto-route: {routed}" if routed is not None else "auto-route"

    def _set_status(self, text: Text | None) -> None:
        status = self.query_one("#order-status", Static)
        if self.halted:
            banner = Text("DISABLED: SYSTEM HALTED — orders will be rejected", style="bold white on red")
            if text is not None:
                banner.append("\n")
                banner.append_text(text)
            status.update(banner)
        else:
            status.update(text if text is not None else Text("Enter submits", style="dim"))

    # -- reacting to the trader ----------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        name = (event.input.id or "").removeprefix("order-")
        if name == "symbol" and event.value != event.value.upper():
            # Show the ticker the way it will be sent; the change comes back as a new event.
            # The field as it is now, not as this event saw it: keys typed quickly are already
            # in, and the cursor stays where the trader left it.
            field = event.input
            cursor = field.cursor_position
            field.value = field.value.upper()
            field.cursor_position = cursor
            return
        if name and event.value.strip():
            self.touched.add(name)
        self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "order-type":
            self._apply_type()
        self.validate()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        account = self.query_one("#order-account", Select)
        if event.value:
            # A split order goes to every account by weight; a chosen account would contradict it.
            account.value = AUTO_ROUTE
        account.disabled = event.value
        self.validate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if "enter" in self.submit_keys:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "order-submit":
            self.action_submit()

    def action_submit(self) -> None:
        request = self.validate(show_all=True)
        if request is None:
            first = next((name for name in _FIELD_FOR.values() if name in self.errors), None)
            if first is not None:
                self.query_one(f"#field-{first}", FieldBox).control.focus()
            count = len(self.errors)
            self.notify(
                f"Order not sent: {count} field{'s' if count != 1 else ''} to fix",
                severity="warning",
                timeout=3,
            )
            return
        self.post_message(
            SubmitRequested(request, distributed=self.query_one("#order-split", Checkbox).value)
        )

    def _apply_type(self) -> None:
        value = self.query_one("#order-type", Select).value
        try:
            kind = OrderType(value)
        except ValueError:
            kind = OrderType.MARKET
        for name, used in (
            ("limit", kind in USES_LIMIT),
            ("stop", kind in USES_STOP),
            ("trail", kind in USES_TRAIL),
        ):
            field = self.query_one(f"#order-{name}", Input)
            if field.disabled == used:
                field.disabled = not used
                self.query_one(f"#field-{name}", FieldBox).set_class(not used, "-unused")

    def set_halted(self, halted: bool) -> None:
        self.halted = halted
        self.set_class(halted, "-halted")
        self.border_title = "Order entry — DISABLED (halted)" if halted else "Order entry"
        button = self.query_one("#order-submit", Button)
        button.label = "HALTED" if halted else "Submit"
        button.variant = "error" if halted else "primary"
        self.validate()

    def focus_first(self) -> None:
        self.query_one("#order-symbol", Input).focus()
