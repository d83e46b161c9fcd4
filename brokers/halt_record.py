"""One record of halts, reduce-only and resumes written to several journals at once.

Kept apart from the runtime so that ``trading-console halt`` can use it without loading any
broker library.
"""

from __future__ import annotations

from .base import EventRecorder, RecordedEvent


class HaltRecord:
    """Records each halt, reduce-only and resume in several journals. One that fails does not
    stop the others; the first failure is raised after all were tried, for the kill switch to
    log."""

    def __init__(self, *journals: EventRecorder) -> None:
        self.journals = journals

    def record(self, kind: str, *, data: dict[str, object] | None = None) -> object:
        first: object = None
        failure: Exception | None = None
        for index, journal in enumerate(self.journals):
            try:
                row = journal.record(kind, data=data)
            except Exception as exc:
                failure = failure or exc
                continue
            if index == 0:
                first = row
        if failure is not None:
            raise failure
        return first

    def last_halt_or_resume(self) -> RecordedEvent | None:
        """The newest halt or resume in the first journal: the state folder's main one, which every
        process using the folder writes its halts and resumes to."""
        return self.journals[0].last_halt_or_resume() if self.journals else None
