"""Set-up commands: init, accounts, broker-types, add, set-creds."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from .broker_settings import TYPE_SETTINGS, choice
from .common import (
    ExitCode,
    JsonOption,
    account_named,
    bad_argument,
    console,
    describe,
    fail,
    print_json,
    state_of,
)

T = TypeVar("T")


# (keyring key, environment variable the adapter falls back to) per broker type.
SECRETS: dict[str, tuple[tuple[str, str], ...]] = {
    "sim": (),
    "alpaca": (("api_key", "ALPACA_API_KEY"), ("secret_key", "ALPACA_SECRET_KEY")),
    "zerodha": (("api_key", "KITE_API_KEY"), ("access_token", "KITE_ACCESS_TOKEN")),
    "ibkr": (),
    "ccxt": (("api_key", "CCXT_API_KEY"), ("secret_key", "CCXT_SECRET_KEY")),
    "csv": (),
    # The Schwab token is not typed in: `set-creds NAME --key token` runs the login.
    "schwab": (("api_key", "SCHWAB_APP_KEY"), ("secret_key", "SCHWAB_APP_SECRET"), ("token", "")),
}

SECRET_LABELS = {"api_key": "API key", "secret_key": "API secret key", "access_token": "access token"}
SECRET_LABELS_BY_TYPE = {"schwab": {"api_key": "App key", "secret_key": "App secret"}}

DEFAULT_CURRENCY = {"zerodha": "INR"}

# Kite has no paper-trading service: its accounts are live unless pointed at a test server.
DEFAULT_LIVE = {"zerodha": True, "schwab": True}

# Types whose accounts can never trade real money: the question is not asked.
NEVER_LIVE = frozenset({"sim", "csv"})

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def secret_keys(broker_type: str) -> tuple[tuple[str, str], ...]:
    return SECRETS.get(broker_type, ())


# -- init -------------------------------------------------------------------------------------


def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    """Write a commented config (a copy of config.example.toml) to the user config folder."""
    from brokers.config import load_config
    from brokers.errors import ConfigError

    from .config_file import example_path, write_atomically

    target = state_of(ctx).target_config_path()
    if target.exists() and not force:
        fail(f"{target} already exists; use --force to overwrite it", ExitCode.FAILED)
    source = example_path()
    if source is None:
        fail("config.example.toml is missing from this installation", ExitCode.CONFIG)
    write_atomically(target, source.read_text(encoding="utf-8"))
    try:
        load_config(target)
    except ConfigError as exc:  # the example is tested; this guards a hand-edited installation
        fail(f"the example config does not load: {exc}", ExitCode.CONFIG)
    typer.echo(f"Wrote {target}")
    typer.echo(
        "It has one paper account. Next: `trading-console add` to add a broker account, "
        "`trading-console accounts` to check, `trading-console` to open the console."
    )


# -- accounts ---------------------------------------------------------------------------------


def _env_name(account: Any, key: str, default_env: str) -> str:
    # Alpaca, ccxt and Schwab accounts may name their own variables (key_env / secret_env).
    if account.type in ("alpaca", "ccxt", "schwab"):
        return str(
            account.settings.get({"api_key": "key_env", "secret_key": "secret_env"}.get(key, ""), default_env)
        )
    return default_env


def _credential_status(account: Any) -> dict[str, str]:
    from brokers.credentials import get_secret

    return {
        key: "set" if get_secret(account.name, key, _env_name(account, key, env)) else "missing"
        for key, env in secret_keys(account.type)
    }


def _settings_problem(account: Any) -> str | None:
    """The broker type's own check of its settings (building an adapter does no I/O)."""
    from brokers.errors import ConfigError, CredentialsError
    from brokers.registry import BrokerFactory

    try:
        BrokerFactory.create(account.broker_config())
    except ConfigError as exc:
        return describe(exc)
    except CredentialsError:
        return None  # shown in the credentials column
    return None


def accounts(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the configured accounts (the demo's when there is no config) and check each one's
    settings; exits 3 when a setting is not allowed."""
    config = state_of(ctx).config()
    rows = []
    for account in config.accounts:
        rows.append(
            {
                "name": account.name,
                "type": account.type,
                "live": account.live,
                "currency": account.currency,
                "default": account.name == config.default_account,
                "weight": account.weight,
                "label": account.label,
                "credentials": _credential_status(account),
                "settings_error": _settings_problem(account),
            }
        )
    problems = [f"{row['name']}: {row['settings_error']}" for row in rows if row["settings_error"]]
    if as_json:
        print_json(
            {
                "demo": config.demo,
                "source": config.source,
                "base_currency": config.base_currency,
                "accounts": rows,
            }
        )
        if problems:
            raise typer.Exit(ExitCode.CONFIG)
        return
    from .tables import accounts_table

    out = console()
    where = "demo (no config file)" if config.demo else str(config.source)
    out.print(f"Config: {where}    base currency: {config.base_currency}")
    if not rows:
        out.print("No accounts configured. Add one with `trading-console add`.")
        return
    out.print(accounts_table(rows))
    for problem in problems:
        out.print(f"[red]{problem}[/red]", highlight=False)
    if problems:
        raise typer.Exit(ExitCode.CONFIG)


# -- broker-types -----------------------------------------------------------------------------


def _capabilities_of(broker_type: str) -> tuple[Any, str | None]:
    """A type's capabilities, read from an unconnected instance (constructing one does no I/O)."""
    from brokers.registry import BrokerFactory

    try:
        cls = BrokerFactory.get(broker_type)
    except Exception as exc:
        return None, describe(exc)
    error: Exception | None = None
    # Some brokers have no paper service and refuse to be built as one.
    for live in (False, True):
        try:
            return cls(name=f"{broker_type}-capabilities", live=live).capabilities, None
        except Exception as exc:
            error = exc
    return None, describe(error) if error else "unknown"


def _venue_rows() -> list[dict[str, Any]]:
    """One row per crypto venue: what each can do through ccxt differs."""
    from brokers.adapters.ccxt import VENUES, CcxtBroker

    rows = []
    for venue in sorted(VENUES):
        caps = CcxtBroker(name="ccxt-capabilities", exchange=venue, live=True).capabilities
        rows.append(
            {
                "type": "ccxt",
                "venue": venue,
                "secrets": [key for key, _ in secret_keys("ccxt")],
                "capabilities": caps.model_dump(mode="json")
                | {"currencies": sorted(VENUES[venue].currencies)},
                "paper": VENUES[venue].sandbox_url is not None,
                "error": None,
            }
        )
    return rows


def broker_types(as_json: JsonOption = False) -> None:
    """List the supported broker types and what each can do (crypto: each venue)."""
    from brokers.registry import BrokerFactory

    rows: list[dict[str, Any]] = []
    for name in BrokerFactory.types():
        if name == "ccxt":
            rows.extend(_venue_rows())
            continue
        caps, error = _capabilities_of(name)
        rows.append(
            {
                "type": name,
                "secrets": [key for key, _ in secret_keys(name)],
                "capabilities": None if caps is None else caps.model_dump(),
                "read_only": name == "csv",
                "error": error,
            }
        )
    if as_json:
        print_json(rows)
        return
    from .tables import broker_types_table

    shown = []
    for row in rows:
        label = f"{row['type']} ({row['venue']})" if row.get("venue") else row["type"]
        caps = row["capabilities"]
        if row.get("read_only") and caps is not None:
            caps = caps | {"order_types": ["none (read-only)"], "time_in_force": ["-"]}
        shown.append(row | {"type": label, "capabilities": caps})
    console().print(broker_types_table(shown))


# -- add --------------------------------------------------------------------------------------


def ask(question: str, parse: Callable[[str], T], default: Any = None) -> T:
    """Prompt until the answer parses; the reason is shown after each bad answer."""
    while True:
        answer = typer.prompt(question, default=None if default is None else str(default))
        try:
            return parse(str(answer))
        except ValueError as exc:
            typer.secho(f"  {exc}", err=True, fg=typer.colors.RED)


def _parse_set(values: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            bad_argument(f"expected KEY=VALUE, not {item!r}", "--set")
        try:
            settings[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            settings[key] = raw.strip()
    return settings


def _account_name(taken: set[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if not ACCOUNT_NAME.fullmatch(value):
            raise ValueError(
                "name must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        if value in taken:
            raise ValueError(f"an account named {value!r} already exists")
        return value

    return parse


def _currency(text: str) -> str:
    value = text.strip().upper()
    if len(value) != 3 or not value.isalpha():
        raise ValueError(f"currency must be a 3-letter code such as USD or INR, not {text!r}")
    return value


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"weight must be a number, not {text!r}") from None
    if not 0 <= value <= 1e6 or value != value:
        raise ValueError("weight must be a number from 0 to 1,000,000")
    return value


def _checked(parse: Callable[[str], T], value: Any, option: str) -> T:
    try:
        return parse(str(value))
    except ValueError as exc:
        return bad_argument(str(exc), option)


def add(
    ctx: typer.Context,
    broker_type: Annotated[str | None, typer.Option("--type", "-t", help="Broker type.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Account name.")] = None,
    currency: Annotated[str | None, typer.Option("--currency", help="Account currency.")] = None,
    live: Annotated[bool | None, typer.Option("--live/--paper", help="Real money or paper.")] = None,
    default: Annotated[
        bool | None, typer.Option("--default/--not-default", help="Make it the default account.")
    ] = None,
    weight: Annotated[float | None, typer.Option("--weight", help="Share of distributed orders.")] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="A broker setting; repeatable.")
    ] = None,
    no_input: Annotated[bool, typer.Option("--no-input", help="Ask nothing; use defaults.")] = False,
) -> None:
    """Add an account to the config, asking for each setting (every answer is checked)."""
    from brokers.config import parse_config
    from brokers.errors import ConfigError, CredentialsError
    from brokers.registry import BrokerFactory

    from .config_file import append_account, load_document, write_atomically

    state = state_of(ctx)
    target = state.target_config_path()
    try:
        doc = load_document(target)
        existing = parse_config(doc.unwrap(), where=str(target)) if target.is_file() else None
    except (ConfigError, ValueError) as exc:  # tomlkit's parse errors are ValueErrors
        fail(f"{target} must be fixed before an account can be added: {exc}", ExitCode.CONFIG)
    taken = {a.name for a in existing.accounts} if existing else set()
    types = tuple(BrokerFactory.types())
    extra = _parse_set(settings or [])
    for key in extra:
        if key in {"name", "type", "currency", "live", "default", "weight"}:
            bad_argument(f"use --{key} for {key!r}", "--set")

    def value(
        option_value: Any, option: str, question: str, parse: Callable[[str], Any], fallback: Any
    ) -> Any:
        if option_value is not None:
            return _checked(parse, option_value, option)
        if no_input:
            if fallback is None:
                bad_argument("required with --no-input", option)
            return fallback
        return ask(question, parse, fallback)

    def flag(option_value: bool | None, question: str, fallback: bool) -> bool:
        if option_value is not None:
            return option_value
        return fallback if no_input else typer.confirm(question, default=fallback)

    kind = value(
        broker_type,
        "--type",
        f"Broker type ({', '.join(types)})",
        choice("type", types),
        None if no_input else "sim",
    )
    account: dict[str, Any] = {
        "name": value(
            name,
            "--name",
            "Account name",
            _account_name(taken),
            None if no_input else _free_name(kind, taken),
        )
    }
    account["type"] = kind
    account["currency"] = value(
        currency, "--currency", "Currency", _currency, DEFAULT_CURRENCY.get(kind, "USD")
    )
    account["live"] = (
        False
        if kind in NEVER_LIVE
        else flag(live, "Live account (real money)?", DEFAULT_LIVE.get(kind, False))
    )
    account["default"] = flag(default, "Make it the default account?", not taken)
    account["weight"] = value(weight, "--weight", "Weight for distributed orders", _weight, 1.0)
    comments = {
        "live": "REAL MONEY: every order asks for confirmation" if account["live"] else "paper trading",
        "weight": "share of a distributed order",
    }
    for setting in TYPE_SETTINGS.get(kind, ()):
        if not setting.applies(account):
            continue
        fallback = setting.default(account)
        if setting.key in extra:
            given = extra.pop(setting.key)
            account[setting.key] = (
                given if isinstance(given, dict) else _checked(setting.parse, given, "--set")
            )
        elif no_input and fallback is None and not setting.optional:
            bad_argument(f"required with --no-input: --set {setting.key}=...", "--set")
        elif no_input:
            if fallback is not None:
                account[setting.key] = fallback
        else:
            answer = ask(
                setting.question, setting.parse, "" if setting.optional and fallback is None else fallback
            )
            if answer is not None and answer != "":
                account[setting.key] = answer
        if setting.comment:
            comments[setting.key] = setting.comment
    account.update(extra)

    append_account(doc, account, comments)
    try:
        config = parse_config(doc.unwrap(), where=str(target))
        BrokerFactory.create(config.account(account["name"]).broker_config())
    except CredentialsError:
        pass  # secrets come next, with set-creds
    except (ConfigError, ValueError, TypeError) as exc:
        fail(f"not added: {describe(exc)}", ExitCode.CONFIG)
    write_atomically(target, doc.as_string())
    typer.echo(f"Added {account['type']} account {account['name']!r} to {target}")
    if secret_keys(kind):
        from brokers.credentials import keyring_available

        if not keyring_available():
            env = " and ".join(env for _, env in secret_keys(kind))
            typer.echo(
                f"No system keyring is available here: export {env} for this account, or set up a "
                f"keyring and run `trading-console set-creds {account['name']}`."
            )
        elif not no_input and typer.confirm("Store its secrets in the keyring now?", default=True):
            _store_secrets(account["name"], kind, None, config.account(account["name"]))
        else:
            typer.echo(f"Next: trading-console set-creds {account['name']}")


def _free_name(kind: str, taken: set[str]) -> str:
    if kind not in taken:
        return kind
    number = 2
    while f"{kind}-{number}" in taken:
        number += 1
    return f"{kind}-{number}"


# -- set-creds --------------------------------------------------------------------------------


def _no_keyring(name: str, kind: str) -> None:
    env = " and ".join(env for _, env in secret_keys(kind) if env)
    fail(
        "no system keyring is available, so secrets cannot be stored safely here. Install and "
        "unlock one (gnome-keyring or KWallet; on a headless server `pip install keyrings.alt` "
        f"gives a file-based store), or export {env} in the environment that runs trading-console "
        f"instead, then check with `trading-console test {name}`.",
        ExitCode.CREDENTIALS,
    )


def _store_secrets(name: str, kind: str, only: str | None, account: Any = None) -> None:
    from brokers.credentials import keyring_available, set_secret
    from brokers.errors import CredentialsError

    if not keyring_available():
        _no_keyring(name, kind)
    stored = []
    for key, _ in secret_keys(kind):
        if only is not None and key != only:
            continue
        if kind == "schwab" and key == "token":
            _schwab_login(name, account)
            continue
        label = SECRET_LABELS_BY_TYPE.get(kind, {}).get(key) or SECRET_LABELS.get(key, key)
        value = typer.prompt(f"{label} for {name} (input hidden)", hide_input=True).strip()
        try:
            set_secret(name, key, value)
        except CredentialsError as exc:
            fail(str(exc), ExitCode.CREDENTIALS)
        stored.append(key)
    if stored:
        typer.echo(f"Stored {', '.join(stored)} for {name!r} in the system keyring.")
    typer.echo(f"Check the account with `trading-console test {name}`.")


def _schwab_login(name: str, account: Any) -> None:
    """Schwab's login: the account holder allows the app in a browser, and the address the
    browser is sent back to is traded for a token that lasts seven days."""
    from brokers.adapters.schwab import SchwabBroker
    from brokers.errors import BrokerError, ConfigError, CredentialsError
    from brokers.registry import BrokerFactory

    from .common import run

    if account is None:
        fail(f"{name}: run `trading-console set-creds {name} --key token` to log in", ExitCode.CREDENTIALS)
    try:
        broker = BrokerFactory.create(account.broker_config())
    except ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG)
    if not isinstance(broker, SchwabBroker):
        fail(f"{name} is not a Schwab account", ExitCode.CONFIG)
    try:
        url, state = broker.login_url()
    except CredentialsError as exc:
        fail(f"{exc}; store the app key and secret first", ExitCode.CREDENTIALS)
    typer.echo("Open this address, log in to Schwab and allow the app:")
    typer.echo(f"  {url}")
    received = typer.prompt(
        f"Paste the address the browser was sent to ({broker.callback_url}...; input hidden)", hide_input=True
    ).strip()
    try:
        expires = run(broker.complete_login(received, state))
    except (BrokerError, CredentialsError) as exc:
        fail(describe(exc), ExitCode.CREDENTIALS)
    until = f" (until {expires:%Y-%m-%d %H:%M} UTC)" if expires is not None else ""
    typer.echo(f"Stored the Schwab login for {name!r}: it lasts 7 days{until}; renew it with this command.")


def set_creds(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    key: Annotated[
        str | None, typer.Option("--key", help="Store only this secret, e.g. access_token.")
    ] = None,
) -> None:
    """Store an account's secrets in the system keyring. Input is not echoed."""
    config = state_of(ctx).config()
    account = account_named(config, name, "NAME")
    keys = [k for k, _ in secret_keys(account.type)]
    if not keys:
        typer.echo(f"{name} is a {account.type} account: it needs no secrets.")
        return
    if key is not None and key not in keys:
        bad_argument(f"{account.type} accounts keep {', '.join(keys)}, not {key!r}", "--key")
    _store_secrets(name, account.type, key, account)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("accounts")(accounts)
    app.command("broker-types")(broker_types)
    app.command("add")(add)
    app.command("set-creds")(set_creds)
