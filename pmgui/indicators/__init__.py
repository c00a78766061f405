"""Incremental indicators over completed candles (pure: numpy-free, no Qt/asyncio/I/O)."""

from pmgui.indicators.candles import CandleBuilder, aggregate
from pmgui.indicators.core import ATR, EMA, RSI, Change, RollingExtreme, RollingMean, Swings
from pmgui.indicators.indicator_set import IndicatorSet, IndicatorSpec

__all__ = ["ATR", "EMA", "RSI", "CandleBuilder", "Change", "IndicatorSet", "IndicatorSpec",
           "RollingExtreme", "RollingMean", "Swings", "aggregate"]
