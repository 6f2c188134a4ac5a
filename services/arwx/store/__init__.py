"""The two ClickHouse stores (chDB embedded, ClickHouse server) behind one interface."""

from arwx.store.base import Store, StoreRejected, StoreUnavailable, open_store

__all__ = ["Store", "StoreRejected", "StoreUnavailable", "open_store"]
