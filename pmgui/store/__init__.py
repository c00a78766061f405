"""Persistence (DESIGN §6): `Store` over one SQLite file; see `pmgui.store.db`."""

from pmgui.store.db import RestoredState, Store
from pmgui.store.metrics import TradeMetrics

__all__ = ["RestoredState", "Store", "TradeMetrics"]
