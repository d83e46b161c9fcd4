"""Which of the paper venue's orders hang together: entries waiting to send their exits, and the
exits that cancel each other."""

from __future__ import annotations

from ..order_request import OrderRequest

__all__ = ["LegLinks"]


class LegLinks:
    """Broker order ids only; the venue holds the orders themselves."""

    def __init__(self) -> None:
        # Entry broker id -> its request, until the entry is done and its exits are sent.
        self._awaiting: dict[str, OrderRequest] = {}
        # Exit broker id -> the other exits of its group (its OCO partner).
        self._groups: dict[str, tuple[str, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._awaiting or self._groups)

    def await_fill(self, entry_id: str, request: OrderRequest) -> None:
        self._awaiting[entry_id] = request

    def group(self, exit_ids: list[str]) -> None:
        """One fill among ``exit_ids`` cancels the rest."""
        for exit_id in exit_ids:
            self._groups[exit_id] = tuple(other for other in exit_ids if other != exit_id)

    def take_entry(self, entry_id: str) -> OrderRequest | None:
        """The request of an entry that still has exits to send, no longer waiting."""
        return self._awaiting.pop(entry_id, None)

    def take_others(self, exit_id: str) -> tuple[str, ...]:
        """The other exits of ``exit_id``'s group; the group is dissolved."""
        others = self._groups.pop(exit_id, ())
        for other in others:
            self._groups.pop(other, None)
        return others

    def clear(self) -> None:
        self._awaiting.clear()
        self._groups.clear()
