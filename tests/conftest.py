"""Fixtures every test gets: a private home folder and an in-memory keyring.

No test touches the user's home, the real keyring or the network beyond loopback.
"""

from __future__ import annotations

import os

import keyring
import keyring.backend
import pytest
from hypothesis import settings
from peers.postgres_cluster import desk_dsn, own_cluster, postgres_cluster  # noqa: F401  (fixtures for every test)

# Continuous integration replays the same generated cases every run, so a result there is
# reproducible; local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Point TRADING_CONSOLE_HOME at a fresh folder and clear variables that change behaviour."""
    home = tmp_path / "tc-home"
    home.mkdir()
    monkeypatch.setenv("TRADING_CONSOLE_HOME", str(home))
    for name in (
        "SYSTEM_HALTED",
        "ALPACA_API_KEY",
        "ALPACA_SECRET_KEY",
        "KITE_API_KEY",
        "KITE_ACCESS_TOKEN",
        "KITE_API_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(autouse=True)
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Each mismatched snapshot's rows as a diff, so a failure is readable from the run's output
    alone (the HTML report stays behind on the machine that ran it)."""
    from snapshot_text import screen_diff

    for failed in getattr(config, "_textual_snapshots", None) or []:
        lines = screen_diff(failed.snapshot or "", failed.actual or "", failed.test_name)
        terminalreporter.write_sep("-", f"screen text of {failed.test_name}")
        terminalreporter.write_line(
            "\n".join(lines) if lines else "the same text: only colours or styles differ"
        )
