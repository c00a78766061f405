"""Persistence (DESIGN §6): `Store` over one SQLite file; see `pmgui.store.db`."""

from pmgui.store.db import RestoredState, Store, default_db_path
from pmgui.store.metrics import TradeMetrics

__all__ = ["RestoredState", "Store", "TradeMetrics", "default_db_path"]
