"""The one rule for account names and the one for currency codes, wherever a name comes in."""

import pytest
from pydantic import BaseModel, ValidationError

from brokers.config import parse_config
from brokers.errors import ConfigError
from brokers.fx import FxRates
from brokers.identifiers import AccountName, CurrencyCode, account_name, currency_code
from brokers.manager import MultiBrokerManager
from brokers.sim import SimBroker


@pytest.mark.parametrize(
    ("given", "expected"),
    [("paper-us", "paper-us"), ("  ib.main_2 ", "ib.main_2"), ("A", "A"), ("9" * 64, "9" * 64)],
)
def test_account_names_that_pass(given, expected):
    assert account_name(given) == expected


@pytest.mark.parametrize(
    "given",
    ["", "   ", "bad name!", "-leading", ".hidden", "x" * 65, "pаper", "i\tb", None, 7, b"ib"],
)
def test_account_names_that_fail_say_what_is_allowed(given):
    with pytest.raises(ValueError, match="letters, digits") as caught:
        account_name(given, "account")
    assert str(caught.value).startswith("account must be")


def test_currency_codes_are_upper_cased_and_only_three_ascii_letters():
    assert currency_code(" usd ") == "USD"
    for bad in ("US", "DOLLAR", "ÄBC", "U1D", "", None, 840):
        with pytest.raises(ValueError, match="3-letter code"):
            currency_code(bad, "base currency")


def test_an_error_quotes_at_most_a_short_part_of_what_was_sent():
    with pytest.raises(ValueError) as caught:
        account_name("x" * 10_000 + "!")
    assert len(str(caught.value)) < 200


def test_pydantic_types_apply_the_same_rules_and_name_the_field():
    class Settings(BaseModel):
        account: AccountName
        currency: CurrencyCode = "USD"

    assert Settings(account=" main ", currency="inr") == Settings(account="main", currency="INR")
    with pytest.raises(ValidationError, match="account must be 1-64 letters"):
        Settings(account="pаper")  # a Cyrillic 'а'
    with pytest.raises(ValidationError, match="currency must be a 3-letter code"):
        Settings(account="main", currency="EURO")


def test_config_manager_sim_and_fx_agree_on_the_rules():
    for name in ("-x", "pаper", "a b"):
        with pytest.raises(ConfigError, match="letters, digits"):
            parse_config({"accounts": [{"name": name, "type": "sim"}]})
        with pytest.raises(ValueError, match="letters, digits"):
            MultiBrokerManager().add_broker(name, SimBroker("ok"))
        with pytest.raises(ValueError, match="letters, digits"):
            SimBroker(name)
    for code in ("ÄBC", "US"):
        with pytest.raises(ConfigError, match="3-letter code"):
            parse_config({"base_currency": code})
        with pytest.raises(ValueError, match="3-letter code"):
            SimBroker("ok", currency=code)
        with pytest.raises(ValueError, match="3-letter code"):
            FxRates(code)
