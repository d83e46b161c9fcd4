"""The footer of key hints."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's footer rebuilds every key hint after each change of bindings, and a screen
    being built changes them several times a frame (every focus move does): each rebuild is a
    restyle and a relayout of the whole screen. Here one rebuild is queued at a time, and it
    reads the bindings as they are when it runs."""

    _rebuild_queued = False

    def bindings_changed(self, screen: Screen) -> None:
        will_rebuild = screen.app.app_focus and self.is_attached and screen is self.screen
        if will_rebuild and self._rebuild_queued:
            return
        super().bindings_changed(screen)
        if will_rebuild:
            self._rebuild_queued = True

    async def recompose(self) -> None:
        self._rebuild_queued = False
        await super().recompose()
