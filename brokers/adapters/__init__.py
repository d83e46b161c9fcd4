"""Adapters for real brokers, one module each, imported only when a config names them."""
