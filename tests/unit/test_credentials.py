import logging

import keyring
import pytest

from brokers import credentials
from brokers.errors import CredentialsError


def test_keyring_first_then_environment(monkeypatch):
    monkeypatch.setenv("ALPACA_API_KEY", "env-key-123")
    assert credentials.get_secret("main", "api_key", "ALPACA_API_KEY") == "env-key-123"
    credentials.set_secret("main", "api_key", "ring-key-456")
    assert credentials.get_secret("main", "api_key", "ALPACA_API_KEY") == "ring-key-456"


def test_missing_secret_says_where_to_put_it():
    with pytest.raises(CredentialsError) as caught:
        credentials.require_secret("kite", "access_token", "KITE_ACCESS_TOKEN")
    assert "trading-console set-creds kite" in str(caught.value)
    assert "KITE_ACCESS_TOKEN" in str(caught.value)


def test_loaded_secrets_are_redacted_everywhere(monkeypatch, caplog):
    monkeypatch.setenv("KITE_ACCESS_TOKEN", "canary-token-9f8e7d")
    secret = credentials.get_secret("kite", "access_token", "KITE_ACCESS_TOKEN")
    assert credentials.redact(f"failed with token {secret}") == "failed with token ***"
    logger = logging.getLogger("redaction-test")
    with caplog.at_level(logging.INFO, logger="redaction-test"):
        caplog.handler.addFilter(credentials.RedactingFilter())
        logger.info("token is %s", secret)
    assert "canary-token-9f8e7d" not in caplog.text
    assert "***" in caplog.text


def test_no_keyring_backend_gives_instructions():
    from keyring.backends.fail import Keyring as FailKeyring

    keyring.set_keyring(FailKeyring())
    with pytest.raises(CredentialsError) as caught:
        credentials.set_secret("main", "api_key", "abcd-secret")
    assert "no system keyring" in str(caught.value)
    assert "environment variables" in str(caught.value)
    assert "abcd-secret" not in str(caught.value)


def test_named_json_fields_are_masked_even_in_a_frame_cut_short(caplog):
    logger = logging.getLogger("redaction-fields-test")
    with caplog.at_level(logging.DEBUG, logger="redaction-fields-test"):
        caplog.handler.addFilter(credentials.RedactingFilter(fields=("key_id", "secret_key")))
        logger.debug('> TEXT \'{"action": "auth", "key_id": "PK-unregistered", "secret_key": "sk-cut')
        logger.debug('{"key_id_hint": "visible", "symbol": "AAPL"}')
    assert "PK-unregistered" not in caplog.text and "sk-cut" not in caplog.text
    assert '"key_id": "***"' in caplog.text and '"secret_key": "***' in caplog.text
    assert "visible" in caplog.text and "AAPL" in caplog.text
