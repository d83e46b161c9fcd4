"""The brokers' own response bodies, kept beside the project in ``shared/fixtures/broker-payloads``.

They come from the brokers' SDK test suites (alpaca-py, Zerodha's kiteconnect-mocks) and are
never edited here. A checkout without them cannot prove the adapters read the brokers' payloads,
so a missing folder fails the tests that need it instead of skipping them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = PROJECT_ROOT.parent / "shared" / "fixtures" / "broker-payloads"


def payload(broker: str, name: str) -> Any:
    """The parsed JSON of ``broker-payloads/<broker>/<name>``."""
    path = PAYLOADS / broker / name
    if not path.is_file():
        pytest.fail(
            f"broker payload {path} is missing: the adapter tests read the brokers' own payloads "
            f"from ../shared/fixtures/broker-payloads/ beside the project root ({PROJECT_ROOT}); "
            "put a copy of shared/ there",
            pytrace=False,
        )
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
