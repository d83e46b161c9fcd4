"""Counting for the reliability suite: cases tried and failures per category, printed at the end.

Every test module here names its category in ``CATEGORY``. A plain test counts as one case. A
test that generates its own cases (hypothesis, fuzzing) asks for the ``tally`` fixture and counts
each generated case itself; a failure outside those cases still counts once.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis.errors import UnsatisfiedAssumption

CATEGORY_ORDER = (
    "faults",
    "crash recovery",
    "bad input: orders",
    "bad input: config",
    "bad input: payloads",
    "secrets",
)

TRIED: Counter[str] = Counter()
FAILED: Counter[str] = Counter()
# Tests that counted their own cases, and whether any of those cases failed.
_SELF_COUNTED: dict[str, bool] = {}
_CATEGORY_OF: dict[str, str] = {}


def _category(module: object) -> str:
    category = getattr(module, "CATEGORY", None)
    if category not in CATEGORY_ORDER:
        raise AssertionError(
            f"{getattr(module, '__name__', module)} must set CATEGORY to one of {CATEGORY_ORDER}"
        )
    return category


@dataclass
class Tally:
    category: str
    nodeid: str

    @contextlib.contextmanager
    def case(self) -> Iterator[None]:
        """One generated case: counted as tried once it ran to the end or failed. Hypothesis
        abandons some cases part way (not enough data, an assumption not met) by raising;
        those were never tried."""
        try:
            yield
        except UnsatisfiedAssumption:
            raise
        except Exception:
            TRIED[self.category] += 1
            FAILED[self.category] += 1
            _SELF_COUNTED[self.nodeid] = True
            raise
        TRIED[self.category] += 1


@pytest.fixture(autouse=True)
def _reliability_category(request: pytest.FixtureRequest) -> None:
    _CATEGORY_OF[request.node.nodeid] = _category(request.module)


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    _SELF_COUNTED.setdefault(request.node.nodeid, False)
    return Tally(_category(request.module), request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    category = _CATEGORY_OF.get(report.nodeid)
    if category is None or report.skipped:
        return
    if report.when == "call":
        if report.nodeid not in _SELF_COUNTED:
            TRIED[category] += 1
            FAILED[category] += report.failed
        elif report.failed and not _SELF_COUNTED[report.nodeid]:
            FAILED[category] += 1  # failed outside its generated cases
    elif report.failed:
        # A fixture that failed to set up or tear down: the test did not show what it should.
        TRIED[category] += report.when == "setup"
        FAILED[category] += 1


def summary_lines() -> list[str]:
    return [
        f"reliability {category}: {TRIED[category]:,} cases tried, {FAILED[category]:,} failures"
        for category in CATEGORY_ORDER
        if TRIED[category] or FAILED[category]
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = summary_lines()
    if not lines:
        return
    terminalreporter.section("reliability")
    for line in lines:
        terminalreporter.write_line(line)
    from reliability_rig import NOTES

    for category, text in NOTES:
        terminalreporter.write_line(f"  {category}: {text}")
