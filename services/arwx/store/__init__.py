"""The two ClickHouse stores (chDB embedded, ClickHouse server) behind one interface."""

from arwx.store.base import Store, StoreUnavailable, open_store

__all__ = ["Store", "StoreUnavailable", "open_store"]
