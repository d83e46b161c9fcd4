"""Archiving the journal's closed days on a schedule, and its settings (``[journal]`` in the
config).

A running process archives once a UTC day, in a worker thread: the copy reads the journal on a
connection of its own, and the rows leave the journal a batch at a time under its lock (see
``brokers.journal_archive``), so an order waits at most for one batch, never for a whole day.
The first run waits a while after start-up, so that a short command never archives and a
console's start-up and reconciliation go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from .journal_archive import ArchiveResult

__all__ = ["ArchiveSchedule", "Archiver", "JournalSettings"]

log = logging.getLogger(__name__)

FIRST_RUN_SECONDS = 300.0  # after start-up, before the first look
CHECK_SECONDS = 3_600.0  # then how often to look whether a new day has begun


class JournalSettings(BaseModel):
    """``[journal]``: when closed days move to the archive, and how long archive files stay."""

    model_config = ConfigDict(extra="forbid")

    # Closed days older than this many days move to the archive, once a day, in a running
    # console; 0 turns the schedule off (``journal --archive`` still archives by hand).
    archive_after_days: int = Field(default=30, ge=0, le=36_500)
    # Archive files older than this many days are deleted; left out, they are kept for good.
    keep_archive_days: int | None = Field(default=None, ge=1, le=36_500)


class Archiver(Protocol):
    """What the schedule needs of a journal (``Journal.archive``)."""

    def archive(
        self,
        *,
        today: date | None = None,
        keep_days: int | None = None,
        after_days: int = 0,
        stop: Callable[[], bool] | None = None,
    ) -> ArchiveResult: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ArchiveSchedule:
    """Archives ``journal``'s closed days once a UTC day while started (see the module text)."""

    def __init__(
        self,
        journal: Archiver,
        settings: JournalSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        first_after: float = FIRST_RUN_SECONDS,
        every: float = CHECK_SECONDS,
    ) -> None:
        self.journal = journal
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._first_after = first_after
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_day: date | None = None  # the UTC day of the last run
        self.last_result: ArchiveResult | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.archive_after_days > 0

    def start(self) -> None:
        """Start the schedule in the running loop (nothing when ``archive_after_days`` is 0)."""
        if self.enabled and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="journal-archive")

    async def stop(self) -> None:
        """Stop, after the day being moved, if one is: the journal may be closed next."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> ArchiveResult:
        """Archive now, in a worker thread, with the configured settings."""
        today = self._clock().astimezone(UTC).date()
        settings = self.settings

        def archive() -> ArchiveResult:
            return self.journal.archive(
                today=today,
                keep_days=settings.keep_archive_days,
                after_days=settings.archive_after_days,
                stop=lambda: self._stopping,
            )

        # Shielded: a stop waits for the thread (which stops between days) rather than
        # closing the journal under it.
        work = asyncio.ensure_future(asyncio.to_thread(archive))
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            raise
        self.last_day, self.last_result = today, result
        if result.archived or result.removed:
            log.info(
                "journal: %d day(s) archived (%d rows), %d archive file(s) past retention removed",
                len(result.archived),
                result.rows,
                len(result.removed),
            )
        return result

    async def _run(self) -> None:
        await self._sleep(self._first_after)
        while True:
            if self._clock().astimezone(UTC).date() != self.last_day:
                try:
                    await self.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the journal keeps every row; the next day tries again
                    log.exception("the journal's closed days could not be archived; will try again")
                    self.last_day = self._clock().astimezone(UTC).date()
            await self._sleep(self._seconds_to_next_look())

    def _seconds_to_next_look(self) -> float:
        now = self._clock().astimezone(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return max(1.0, min(self._every, (midnight - now).total_seconds() + 1.0))
