"""``[desk]`` in the config: where the desk's database is and how quickly to give up on it."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DeskSettings"]


class DeskSettings(BaseModel):
    """``dsn`` names the server, user and database (``postgresql://trader@desk-db:5432/desk``);
    the password comes from the keyring (``trading-console set-creds desk``) or ``PGPASSWORD``,
    never from the file."""

    # The address may hold a password by mistake: errors never repeat what was typed.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: str
    # Without a confirmed desk state for this long, a process halts itself (fail closed).
    fail_after_ms: int = Field(default=1000, ge=200, le=60_000)
    # How often the desk is read even when no notification came (a listener that lost its
    # connection misses notifications; the poll does not).
    poll_ms: int = Field(default=250, ge=20, le=10_000)
    # How often a process tells the desk it is alive (and which orders it has working).
    heartbeat_ms: int = Field(default=1000, ge=100, le=60_000)
    # Silent this long, a process is dead: the desk raises an alert, and another process
    # connected to the same accounts cancels its working orders (the dead man's switch).
    dead_after_ms: int = Field(default=5000, ge=500, le=600_000)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        text = value.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError("dsn must be a PostgreSQL address such as postgresql://trader@desk-db:5432/desk")
        if parts.password is not None:
            # Said without the address: it holds the secret.
            raise ValueError(
                "dsn must not hold a password; keep it in the keyring "
                "(trading-console set-creds desk) or in PGPASSWORD"
            )
        return text

    @property
    def fail_after(self) -> float:
        return self.fail_after_ms / 1000

    @property
    def poll_interval(self) -> float:
        return self.poll_ms / 1000
