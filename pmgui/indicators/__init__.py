"""Incremental indicators over completed candles (pure: numpy-free, no Qt/asyncio/I/O)."""

from pmgui.indicators.core import ATR, EMA, RSI, Change, RollingExtreme, RollingMean
from pmgui.indicators.indicator_set import IndicatorSet, IndicatorSpec

__all__ = ["ATR", "EMA", "RSI", "Change", "IndicatorSet", "IndicatorSpec", "RollingExtreme",
           "RollingMean"]
