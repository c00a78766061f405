"""Pick the adapter class of a venue: first-class venues have their own, every other ccxt.pro
venue goes through the generic base (capabilities from ccxt's `has`, gaps shown)."""

from __future__ import annotations

from typing import Any

from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.venues.binance import BinanceUsdmExchange
from pmgui.exchange.venues.bybit import BybitExchange
from pmgui.exchange.venues.okx import OkxExchange

VENUE_CLASSES: dict[str, type[CcxtExchange]] = {
    "binanceusdm": BinanceUsdmExchange,
    "bybit": BybitExchange,
    "okx": OkxExchange,
}


def venue_class(exchange_id: str) -> type[CcxtExchange]:
    return VENUE_CLASSES.get(exchange_id, CcxtExchange)


def create_exchange(exchange_id: str, **kwargs: Any) -> CcxtExchange:
    """The adapter for `exchange_id` (same keyword arguments as `CcxtExchange`)."""
    return venue_class(exchange_id)(exchange_id, **kwargs)
