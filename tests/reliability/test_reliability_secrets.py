"""A canary secret given through the keyring and another through the environment, used for real
against the loopback peers, through connects, orders, refusals, halts and failures: neither ever
shows in a log record (every logger at DEBUG), the journal's bytes, the console's screenshot or
the text of any exception."""

from __future__ import annotations

import asyncio
import logging
import traceback
from pathlib import Path

import pytest
from reliability_rig import SERVICE

from brokers.config import parse_config
from brokers.errors import AuthenticationError, CredentialsError
from brokers.models import OrderRequest
from brokers.runtime import build_runtime

CATEGORY = "secrets"

# Through the keyring: Alpaca's key pair. Through the environment: Kite's key and token.
KEYRING_KEY = "PKCANARYKEYRING7Q1"
KEYRING_SECRET = "canary-keyring-secret-Zq81xW"
ENV_KEY = "canaryenvkey88"
ENV_TOKEN = "canaryenvtoken5521Xy"
CANARIES = (KEYRING_KEY, KEYRING_SECRET, ENV_KEY, ENV_TOKEN)


def leaks(text: str) -> list[str]:
    """Every canary, or a long enough piece of one, found in ``text``."""
    found = []
    for canary in CANARIES:
        pieces = {canary, canary[:10], canary[-10:]}
        if any(piece in text for piece in pieces):
            found.append(canary)
    return found


@pytest.fixture
def every_logger_at_debug(caplog):
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)]
    loggers += [
        logging.getLogger(name)
        for name in (
            "websockets",
            "websockets.client",
            "urllib3",
            "aiohttp",
            "ib_async",
            "kiteconnect",
            "alpaca",
            "requests",
            "asyncio",
        )
    ]
    before = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    yield caplog
    for logger, level, disabled in before:
        logger.setLevel(level)
        logger.disabled = disabled


@pytest.fixture
async def peers(memory_keyring, monkeypatch):
    from peers.alpaca_peer import AlpacaPeer
    from peers.kite_peer import KitePeer

    alpaca = AlpacaPeer(api_key=KEYRING_KEY, secret_key=KEYRING_SECRET, auto_fill=True)
    # An account whose broker knows other keys: every call is refused, and says so.
    stranger = AlpacaPeer(api_key="PKOTHERKEYS00000001", secret_key="other-secret-0000000001")
    kite = KitePeer(api_key=ENV_KEY, access_token=ENV_TOKEN)
    await alpaca.start()
    await stranger.start()
    await kite.start()
    for account in ("alpaca", "alpaca-refused"):
        memory_keyring.set_password(SERVICE, f"{account}:api_key", KEYRING_KEY)
        memory_keyring.set_password(SERVICE, f"{account}:secret_key", KEYRING_SECRET)
    monkeypatch.setenv("KITE_API_KEY", ENV_KEY)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", ENV_TOKEN)
    try:
        yield alpaca, stranger, kite
    finally:
        await kite.stop()
        await stranger.stop()
        await alpaca.stop()


def config_for(alpaca, stranger, kite):
    return parse_config(
        {
            "accounts": [
                {"name": "paper", "type": "sim", "default": True, "prices": {"AAPL": 100}},
                {
                    "name": "alpaca",
                    "type": "alpaca",
                    "base_url": alpaca.base_url,
                    "timeout": 2,
                    "reconnect_delay": 0.05,
                },
                {"name": "alpaca-refused", "type": "alpaca", "base_url": stranger.base_url, "timeout": 2},
                {"name": "kite", "type": "zerodha", "root": kite.root, "poll_interval": 0.2, "timeout": 2},
            ],
        },
        where="secrets test",
    )


async def exercise(runtime, alpaca, kite, errors: list[BaseException]) -> list[str]:
    """Everything a session does with these accounts, good and bad. Returns the texts a person
    would see (reject reasons, account errors); exceptions raised go into ``errors``."""
    execution, manager = runtime.execution, runtime.manager
    seen: list[str] = []

    async def attempt(coroutine):
        try:
            return await coroutine
        except Exception as exc:
            errors.append(exc)
            return None

    orders = [
        await execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=2, account="alpaca")),
        await execution.submit(
            OrderRequest(
                symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price="150", account="alpaca"
            )
        ),
        await execution.submit(
            OrderRequest(
                symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", limit_price="1400", account="kite"
            )
        ),
        await execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="alpaca-refused")),
    ]
    # Brokers that echo the request back in an error, as some gateways do.
    alpaca.fail_next(
        "POST", "/v2/orders", 500, f"upstream rejected key {KEYRING_KEY} secret {KEYRING_SECRET}"
    )
    orders.append(
        await execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="alpaca"))
    )
    kite.fail(
        "POST",
        "/orders",
        http_status=400,
        error_type="InputException",
        message=f"Invalid api_key {ENV_KEY} or access_token {ENV_TOKEN}",
    )
    orders.append(await execution.submit(OrderRequest(symbol="INFY", side="BUY", quantity=1, account="kite")))
    kite.fail(
        "GET",
        "/portfolio/positions",
        http_status=500,
        error_type="GeneralException",
        message=f"token {ENV_TOKEN} is not valid for this request",
    )
    await attempt(manager.refresh())
    await attempt(execution.reconcile())
    for order in orders:
        if order.broker_order_id and order.is_working:
            await attempt(execution.cancel(order.account, order.broker_order_id))
    await attempt(execution.halt("canary drill", source="test"))
    await attempt(execution.resume("canary drill over", source="test"))
    await attempt(execution.cancel("alpaca-refused", "00000000-0000-0000-0000-000000000000"))
    kite.expire_token()  # tomorrow morning: the token Kite knows is no longer ours
    await asyncio.sleep(0.5)  # a poll meets the refusal
    await attempt(manager.refresh())
    seen.extend(o.reject_reason or "" for o in orders)
    seen.extend(o.reject_reason or "" for o in execution.orders())
    seen.extend(str(status) for status in manager.statuses().values())
    seen.extend(repr(broker) for broker in manager.brokers.values())
    seen.append(repr(runtime.config))
    return seen


def journal_bytes(state_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(state_dir.glob("journal.sqlite*")))


async def test_canaries_never_reach_logs_the_journal_or_exception_text(
    peers, every_logger_at_debug, tmp_path
):
    caplog = every_logger_at_debug
    alpaca, stranger, kite = peers
    config = config_for(alpaca, stranger, kite)
    runtime = build_runtime(config)
    errors: list[BaseException] = []
    await runtime.start()
    try:
        seen = await exercise(runtime, alpaca, kite, errors)
        statuses = runtime.manager.statuses()
    finally:
        await runtime.stop()

    # The canaries were really used: both brokers accepted them, the stranger refused them.
    assert alpaca.count("POST", "/v2/orders") >= 2 and kite.count("POST", "/orders") >= 1
    assert statuses["alpaca-refused"].state.value == "FAILED" and statuses["alpaca-refused"].last_error
    texts = [*seen, caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    for exc in errors:
        texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])
    for text in texts:
        assert leaks(text) == [], text[:500]
    state = runtime.state_dir
    stored = journal_bytes(state)
    assert stored and b"canary drill" in stored  # the journal was written, halt and all
    for canary in CANARIES:
        assert canary.encode() not in stored
    assert len(caplog.records) > 50  # the run really logged, at every level
    assert any("***" in text for text in seen), "the echoed secrets were not shown, masked, at all"


async def test_missing_and_refused_credentials_say_what_to_do_without_the_secret(peers, monkeypatch):
    alpaca, stranger, kite = peers
    from brokers.registry import BrokerFactory

    monkeypatch.delenv("KITE_ACCESS_TOKEN")
    broker = BrokerFactory.create({"type": "zerodha", "name": "kite-nothing", "root": kite.root})
    with pytest.raises(CredentialsError) as caught:
        await broker.connect()
    assert "set-creds" in str(caught.value) and "KITE_ACCESS_TOKEN" in str(caught.value)
    refused = BrokerFactory.create(
        {"type": "alpaca", "name": "alpaca-refused", "base_url": stranger.base_url, "timeout": 2}
    )
    with pytest.raises(AuthenticationError) as caught:
        await refused.connect()
    assert stranger.count("GET", "/v2/account") >= 1  # the peer itself said no, not a dead socket
    text = "".join(traceback.format_exception(caught.value))
    assert leaks(text) == [] and "refused" in str(caught.value).lower()


async def test_the_console_screen_never_shows_a_canary(peers, tmp_path):
    import console.tui.app as app_module

    alpaca, stranger, kite = peers
    config = config_for(alpaca, stranger, kite)
    app = app_module.make_app(config, start_feed=False, cursor_blink=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await app.wait_until_ready()
        await app.runtime.manager.refresh()
        # Errors that echo the secrets, on the account list, the blotter and the event log.
        kite.fail(
            "GET",
            "/portfolio/positions",
            http_status=400,
            error_type="InputException",
            message=f"token {ENV_TOKEN} of {ENV_KEY} is not valid for this request",
            times=3,
        )
        await app.runtime.manager.refresh()
        alpaca.fail_next(
            "POST",
            "/v2/orders",
            422,
            {"code": 42210000, "message": f"key {KEYRING_KEY} / {KEYRING_SECRET} refused"},
        )
        echoed = await app.runtime.execution.submit(
            OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="alpaca")
        )
        refused = await app.runtime.execution.submit(
            OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="alpaca-refused")
        )
        assert "***" in echoed.reject_reason and refused.reject_reason
        await pilot.pause(0.3)
        svg = app.export_screenshot()
        statuses = app.runtime.manager.statuses()
    assert "***" in statuses["kite"].last_error and statuses["alpaca-refused"].last_error
    assert "alpaca-refused" in svg and "***" in svg  # the errors are on screen, masked
    assert leaks(svg) == []
    assert leaks(journal_bytes(app.runtime.state_dir).decode("latin-1")) == []
