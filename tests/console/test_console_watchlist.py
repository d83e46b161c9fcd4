"""The watchlist pane: symbols from ``[ui] watchlist``, a row each with last, change, change %,
bid / ask, the quote's state and a sparkline; rows repaint from the quote tick only; symbols
added and removed by key, and written back to the config file the console was started with."""

from __future__ import annotations

import tomllib

from console_support import console, demo, settled, wait_for
from quote_support import feed
from textual.widgets import Input, Sparkline

from brokers.config import load_config
from brokers.instruments import Instrument
from brokers.quotes import QuoteState
from console.tui.widgets.watchlist import HISTORY, WatchlistPane

WIDE = (160, 48)


def row_text(pane: WatchlistPane, symbol: str) -> dict[str, str]:
    row = pane._rows[symbol]
    return {name: str(cell.render()) for name, cell in row.cells.items()}


def sparkline(pane: WatchlistPane, symbol: str) -> list[float]:
    data = pane._rows[symbol].box.query_one(Sparkline).data
    return list(data or [])


async def test_rows_show_last_change_bid_ask_state_and_a_bounded_sparkline():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        pane = app.watchlist
        assert pane.symbols == ("SPY", "AAPL", "TSLA", "AMZN", "INFY", "TCS")
        board = app.quotes.board
        for symbol in pane.symbols:
            assert Instrument.stock(symbol) in board.wanted
        for step in range(5):
            feed(app, "AAPL", bid=f"{227 + step}.45", ask=f"{227 + step}.55", last=f"{227 + step}.50")
        feed(app, "AAPL", previous_close="225.00")
        feed(app, "TSLA", last="340.00", previous_close="350.00", state=QuoteState.DELAYED)
        app.show_quotes()
        await pilot.pause()
        aapl = row_text(pane, "AAPL")
        assert aapl["wl-last"].strip() == "231.50"
        assert aapl["wl-chg"].strip() == "6.50"
        assert aapl["wl-pct"].strip() == "2.89%"
        assert aapl["wl-bidask"] == "231.45 / 231.55"
        assert aapl["wl-state"] == "LIVE"
        # Every priced quote is kept; one with no price (the previous close alone) adds nothing.
        assert sparkline(pane, "AAPL") == [227.5, 228.5, 229.5, 230.5, 231.5]
        tsla = row_text(pane, "TSLA")
        assert tsla["wl-chg"].strip() == "-10.00"
        assert tsla["wl-pct"].strip() == "-2.86%"
        assert tsla["wl-state"] == "DELAYED"
        # Nothing fed: no price yet, never a made-up figure.
        assert pane.add("HDFCBANK") is None
        assert row_text(pane, "HDFCBANK")["wl-last"].strip() == "no price"
        assert row_text(pane, "HDFCBANK")["wl-chg"] == ""
        assert row_text(pane, "HDFCBANK")["wl-state"] == ""
        # The history is bounded: the newest prices are kept.
        for step in range(HISTORY + 50):
            feed(app, "SPY", last=str(500 + step))
        app.show_quotes()
        await pilot.pause()
        spy = sparkline(pane, "SPY")
        assert len(spy) == HISTORY
        assert spy[-1] == float(500 + HISTORY + 49)


async def test_rows_repaint_from_the_tick_and_a_quote_that_stops_turns_stale():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        pane = app.watchlist
        feed(app, "SPY", last="590.10")
        app.show_quotes()
        await pilot.pause()
        assert row_text(pane, "SPY")["wl-last"].strip() == "590.10"
        shown = []
        original = pane._show
        pane._show = lambda row: (shown.append(row.symbol), original(row))[1]
        # A burst of quotes between two ticks (nothing awaited: no tick can run in between):
        # the row waits for the tick, then repaints once, showing the last of them.
        for cents in range(100):
            feed(app, "SPY", last=f"591.{cents:02d}")
        assert row_text(pane, "SPY")["wl-last"].strip() == "590.10"
        assert shown == []
        app.show_quotes()
        assert shown == ["SPY"]
        assert row_text(pane, "SPY")["wl-last"].strip() == "591.99"
        pane._show = original
        # Older than the stale setting: STALE on the next look, though no quote arrived.
        feed(app, "AAPL", last="227.50", age=3600)
        pane.show_all()
        await pilot.pause()
        assert row_text(pane, "AAPL")["wl-state"] == "STALE"


async def test_symbols_are_added_and_removed_by_key_for_the_session_in_the_demo():
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        await pilot.press("ctrl+l")
        assert app.focused is app.watchlist
        await pilot.press("a")
        box = app.query_one("#watchlist-add", Input)
        assert box.display and app.focused is box
        await pilot.press("m", "s", "f", "t", "enter")
        await pilot.pause()
        pane = app.watchlist
        assert pane.symbols[-1] == "MSFT"
        assert not box.display and app.focused is pane
        assert Instrument.stock("MSFT") in app.quotes.board.wanted
        # Twice is refused, and so is what cannot be a symbol.
        await pilot.press("a", "m", "s", "f", "t", "enter")
        assert pane.symbols.count("MSFT") == 1
        await pilot.press("ctrl+u", "$", "enter")
        assert "$" not in "".join(pane.symbols)
        await pilot.press("escape")
        assert not box.display
        # The selected row (the one just added) goes with delete.
        await pilot.press("delete")
        await pilot.pause()
        assert "MSFT" not in pane.symbols
        # The selection stays on the last row, then moves up with the arrow key.
        assert pane.selected_symbol() == "TCS"
        await pilot.press("up")
        assert pane.selected_symbol() == "INFY"
        await pilot.press("down", "delete")
        await pilot.pause()
        assert pane.symbols == ("SPY", "AAPL", "TSLA", "AMZN", "INFY")
        assert Instrument.stock("TCS") not in app.quotes.board.wanted
        # The demo has no config file: the change lasts for the session, and the log says so.
        await pilot.pause()
        assert any("watchlist kept for this session only" in text for _level, text in app.event_log.entries)


async def test_a_changed_watchlist_is_written_back_to_the_config_file(tmp_path):
    path = tmp_path / "config.toml"
    data = demo().model_dump(mode="json", exclude_none=True, exclude={"demo", "source"})
    import tomlkit

    text = "# my settings\n" + tomlkit.dumps(data).replace("[ui]\n", "[ui]\n# symbols I follow\n", 1)
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.ui.watchlist == ["SPY", "AAPL", "TSLA", "AMZN", "INFY", "TCS"]
    app = console(config)
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        pane = app.watchlist
        assert pane.add("NVDA") is None
        pane.remove_symbol("SPY")

        def saved() -> list[str]:
            return tomllib.loads(path.read_text(encoding="utf-8"))["ui"]["watchlist"]

        await wait_for(lambda: saved() == ["AAPL", "TSLA", "AMZN", "INFY", "TCS", "NVDA"], pilot)
    text = path.read_text(encoding="utf-8")
    # What the trader wrote around it stays.
    assert text.startswith("# my settings\n")
    assert "# symbols I follow" in text
    assert load_config(path).ui.watchlist == ["AAPL", "TSLA", "AMZN", "INFY", "TCS", "NVDA"]


def test_the_watchlist_setting_names_a_bad_symbol():
    from brokers.config import parse_config
    from brokers.errors import ConfigError

    try:
        parse_config({"ui": {"watchlist": ["AAPL", "no$"]}}, where="config.toml")
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("a bad symbol was taken")
    assert "ui.watchlist" in message and "'no$'" in message and "letters, digits" in message
    assert parse_config({"ui": {"watchlist": [" aapl", "AAPL", "msft"]}}, where="x").ui.watchlist == [
        "AAPL",
        "MSFT",
    ]


async def test_a_quote_tick_after_the_watchlist_is_gone_paints_nothing_and_raises_nothing():
    """As when the app closes: a last tick finds the pane off screen."""
    app = console()
    async with app.run_test(size=WIDE) as pilot:
        await settled(app, pilot)
        pane = app.watchlist
        feed(app, "SPY", last="590.10")
        await pane.remove()
        await pilot.pause()
        pane.show_quotes({Instrument.stock("SPY")})
        pane.show_all()
