"""The two ClickHouse stores (chDB embedded, ClickHouse server) behind one interface.

``arwx.components.open_store`` picks one from the settings; the implementations
import ``base`` and nothing here imports them."""

from arwx.store.base import Store, StoreRejected, StoreUnavailable

__all__ = ["Store", "StoreRejected", "StoreUnavailable"]
