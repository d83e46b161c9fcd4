"""Read-only accounts from position exports (Fidelity, Vanguard, or a CSV with a column map)."""

from .broker import READ_ONLY, CsvBroker

__all__ = ["READ_ONLY", "CsvBroker"]
