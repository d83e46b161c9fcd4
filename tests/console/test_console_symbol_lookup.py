"""The order ticket on a real Alpaca account (the adapter against its loopback peer): a symbol
Alpaca has no asset for is "unknown symbol" and is not sent; a listed one with no quote is "no
price yet"; the broker is asked once the trader pauses, not per keystroke, and a failed lookup
leaves the symbol "no price yet"."""

from __future__ import annotations

from console_support import console, settled, wait_for
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from textual.widgets import Static

from brokers.config import parse_config
from brokers.instruments import Instrument
from brokers.quotes import Listing
from console.tui.widgets import order_entry
from console.tui.widgets.order_entry import FieldBox

WIDE = (160, 48)
ACCOUNT = "alpaca-test"
AAPL, MSFT, ZZZZ = Instrument.stock("AAPL"), Instrument.stock("MSFT"), Instrument.stock("ZZZZ")


def alpaca_console(peer):
    config = parse_config(
        {"accounts": [{**peer.settings(ACCOUNT), "default": True}], "ui": {"watchlist": []}}, where="test"
    )
    return console(config)


def ticket_text(app) -> str:
    return str(app.query_one("#order-quote", Static).render())


def symbol_message(app) -> tuple[str, str]:
    box = app.query_one("#field-symbol", FieldBox)

    def shown(kind: str) -> str:
        message = box.query_one(f".field-{kind}", Static)
        return str(message.render()) if message.has_class("-shown") else ""

    return shown("error"), shown("note")


def looked_up(app) -> bool:
    """The ticket has asked the brokers and taken their answers in."""
    return not app.order_entry.looking_up


def asked(peer, symbol: str) -> int:
    return peer.count("GET", f"/v2/assets/{symbol}")


async def test_a_symbol_alpaca_does_not_list_is_unknown_and_is_not_sent(peer, keys, monkeypatch):
    # A pause far longer than the keystrokes below take, however busy the machine.
    monkeypatch.setattr(order_entry, "LOOKUP_DELAY", 2.0)
    app = alpaca_console(peer)
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        # Typed letter by letter: the broker is asked once, about what the box holds at the pause.
        for typed in ("Z", "ZZ", "ZZZ", "ZZZZ"):
            app.order_entry.set_values(symbol=typed, quantity="10")
            await pilot.pause()
        assert symbol_message(app) == ("", "no price yet")  # no answer yet: not unknown
        await wait_for(lambda: symbol_message(app)[0] == "unknown symbol", pilot, within=10)
        assert "unknown symbol" in ticket_text(app)
        assert asked(peer, "ZZZZ") == 1
        assert [asked(peer, s) for s in ("Z", "ZZ", "ZZZ")] == [0, 0, 0]

        app.order_entry.action_submit()
        await pilot.pause()
        assert app.runtime.execution.orders() == []
        assert peer.count("POST", "/v2/orders") == 0

        # A listed symbol with no quote yet is only "no price yet", and may be sent.
        app.order_entry.set_values(symbol="MSFT")
        await pilot.pause()
        broker = app.runtime.manager.get(ACCOUNT)
        await wait_for(lambda: broker.listing_nowait(MSFT) is Listing.LISTED, pilot)
        await pilot.pause()
        assert symbol_message(app) == ("", "no price yet")
        assert "unknown symbol" not in ticket_text(app)
        assert f"→ {ACCOUNT}" in ticket_text(app)


async def test_an_answer_for_a_symbol_no_longer_in_the_box_is_dropped(peer, keys):
    app = alpaca_console(peer)
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        # Alpaca is slow to answer about ZZZZ; meanwhile the trader types AAPL.
        peer.delay_next("GET", "/v2/assets/ZZZZ", 0.8)
        app.order_entry.set_values(symbol="ZZZZ", quantity="1")
        await pilot.pause()
        await wait_for(lambda: asked(peer, "ZZZZ") == 1, pilot)
        app.order_entry.set_values(symbol="AAPL")
        await pilot.pause()
        broker = app.runtime.manager.get(ACCOUNT)
        await wait_for(lambda: broker.listing_nowait(ZZZZ) is Listing.NOT_LISTED, pilot)
        await wait_for(lambda: broker.listing_nowait(AAPL) is Listing.LISTED, pilot)
        await wait_for(lambda: looked_up(app), pilot)
        await pilot.pause()
        # ZZZZ's answer did not mark AAPL unknown.
        assert symbol_message(app) == ("", "no price yet")
        assert "unknown symbol" not in ticket_text(app)


async def test_a_lookup_that_fails_leaves_the_symbol_no_price_yet(peer, keys):
    app = alpaca_console(peer)
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        peer.fail_next("GET", "/v2/assets/ZZZZ", 500, {"code": 50010000, "message": "internal server error"})
        app.order_entry.set_values(symbol="ZZZZ", quantity="1")
        await pilot.pause()
        await wait_for(lambda: asked(peer, "ZZZZ") == 1 and looked_up(app), pilot)
        await pilot.pause()
        assert symbol_message(app) == ("", "no price yet")
        assert "unknown symbol" not in ticket_text(app)


async def test_a_refused_data_stream_is_said_once_shown_under_the_connections_and_quoted_as_snapshots(
    peer, keys
):
    from peers.alpaca_data_peer import AlpacaDataPeer, fresh_snapshot

    from brokers.quotes import QuoteState
    from brokers.runtime import build_runtime

    data = await AlpacaDataPeer(refuse_auth=True).start()
    data.snapshots["AAPL"] = fresh_snapshot(190.10, 190.20, 190.15)
    try:
        settings = peer.settings(
            ACCOUNT, data_url=data.url, data_stream_url=data.stream_url, quote_stream_retry_seconds=0.1
        )
        config = parse_config(
            {
                "accounts": [{**settings, "default": True}],
                "ui": {"watchlist": ["AAPL"]},
                "quotes": {"snapshot_interval_seconds": 0.5},
            },
            where="test",
        )
        runtime = build_runtime(config)
        app = console(config, runtime=runtime, quotes=runtime.manager.quotes)
        async with app.run_test(size=WIDE) as pilot:
            await settled(app, pilot)

            def said(words: str) -> list[str]:
                return [text for _level, text in app.event_log.entries if words in text]

            await wait_for(lambda: said("quotes not streaming"), pilot, within=15)
            (line,) = said("quotes not streaming")
            assert line.startswith(f"{ACCOUNT}: ") and "refused the login: auth failed" in line
            assert "SNAPSHOT" in line
            # Under the connections for as long as it lasts, though the account is CONNECTED.
            problems = app.query_one("#connection-problems", Static)
            await wait_for(lambda: problems.display, pilot)
            assert str(problems.render()).startswith(f"{ACCOUNT} quotes as snapshots: ")
            assert "refused the login: auth failed" in str(problems.render())
            board = runtime.manager.quotes
            await wait_for(lambda: data.logins["/v2/iex"] >= 3, pilot, within=15)
            assert len(said("quotes not streaming")) == 1  # once, however many tries
            assert AAPL in board.snapshotted(ACCOUNT)
            await wait_for(
                lambda: board.quote(AAPL) is not None and board.quote(AAPL).state is QuoteState.SNAPSHOT,
                pilot,
                within=10,
            )

            data.refuse_auth = False
            await wait_for(lambda: said("quotes streaming again"), pilot, within=15)
            assert board.outage(ACCOUNT) is None
            await wait_for(lambda: not problems.display, pilot)
    finally:
        await data.stop()


async def test_unknown_only_when_every_account_that_would_take_it_says_so(peer, keys):
    from peers.alpaca_peer import API_KEY, KEYRING_SERVICE, SECRET_KEY, AlpacaPeer

    other = await AlpacaPeer().start()
    other.assets["ZZZZ"] = {"class": "us_equity", "exchange": "NYSE", "fractionable": False}
    other.prices["ZZZZ"] = 12
    keys.set_password(KEYRING_SERVICE, "alpaca-b:api_key", API_KEY)
    keys.set_password(KEYRING_SERVICE, "alpaca-b:secret_key", SECRET_KEY)
    try:
        config = parse_config(
            {
                "accounts": [{**peer.settings(ACCOUNT), "default": True}, other.settings("alpaca-b")],
                "ui": {"watchlist": []},
            },
            where="test",
        )
        app = console(config)
        async with app.run_test(size=WIDE) as pilot:
            await settled(app, pilot)
            app.order_entry.set_values(symbol="ZZZZ", quantity="1")
            await pilot.pause()
            await wait_for(lambda: asked(peer, "ZZZZ") == 1 and asked(other, "ZZZZ") == 1, pilot)
            await wait_for(lambda: looked_up(app), pilot)
            await pilot.pause()
            # The default account has no such asset, but alpaca-b lists it: not unknown.
            assert symbol_message(app) == ("", "no price yet")
            assert f"{ACCOUNT} does not list ZZZZ" in ticket_text(app)

            # Chosen explicitly, the account that does not list it is the only one that would
            # take the order: unknown there.
            app.order_entry.set_values(account=ACCOUNT)
            await pilot.pause()
            await wait_for(lambda: symbol_message(app)[0] == "unknown symbol", pilot)
            app.order_entry.set_values(account="alpaca-b")
            await pilot.pause()
            await wait_for(lambda: symbol_message(app)[0] == "", pilot)
    finally:
        await other.stop()


async def test_an_asset_alpaca_lists_but_does_not_trade_is_said_beside_the_quote(peer, keys):
    peer.assets["OLDCO"] = {"class": "us_equity", "exchange": "OTC", "fractionable": False, "tradable": False}
    app = alpaca_console(peer)
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        app.order_entry.set_values(symbol="OLDCO", quantity="1")
        await pilot.pause()
        await wait_for(lambda: f"{ACCOUNT} lists OLDCO but does not trade it now" in ticket_text(app), pilot)
        assert symbol_message(app) == ("", "no price yet")


async def test_a_symbol_left_in_the_box_is_asked_about_again_after_a_failed_lookup(peer, keys, monkeypatch):
    monkeypatch.setattr(order_entry, "LOOKUP_RETRY", 0.5)
    app = alpaca_console(peer)
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        peer.fail_next("GET", "/v2/assets/ZZZZ", 500, {"code": 50010000, "message": "internal server error"})
        app.order_entry.set_values(symbol="ZZZZ", quantity="1")
        await pilot.pause()
        await wait_for(lambda: asked(peer, "ZZZZ") == 1 and looked_up(app), pilot)
        assert symbol_message(app) == ("", "no price yet")
        # The ticket's once-a-second look asks again, and this time Alpaca answers.
        await wait_for(lambda: symbol_message(app)[0] == "unknown symbol", pilot, within=10)
        assert asked(peer, "ZZZZ") == 2
