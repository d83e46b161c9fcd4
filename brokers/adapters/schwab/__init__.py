"""Charles Schwab through schwab-py's asynchronous client, imported on connecting."""

from .broker import SchwabBroker

__all__ = ["SchwabBroker"]
