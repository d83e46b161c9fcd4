"""The IB client library: ib_async, or ib_insync where only that is installed.

The two cannot share an environment; they have the same API, ib_async being the maintained
continuation of ib_insync.
"""

from __future__ import annotations

try:
    import ib_async as ib_api
except ImportError:
    import ib_insync as ib_api  # type: ignore[no-redef]

__all__ = ["ib_api"]
