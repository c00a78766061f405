"""Candle timeframes (`1m` … `1d`) shared by the rules, the engine and replay.

Why in domain: a rule's `timeframe` parameter, the engine's candle store and the replay loader
must agree on the same names and lengths; none of them may own the table alone.
"""

from __future__ import annotations

from pmgui.domain.errors import ValidationError

TIMEFRAMES: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400,
                              "1d": 86400}
"""Every timeframe a rule may read, in seconds, finest first."""


def seconds(tf: str) -> int:
    """The length of timeframe `tf` in seconds; ValidationError for an unknown name."""
    try:
        return TIMEFRAMES[tf]
    except (KeyError, TypeError):
        raise ValidationError(
            f"unknown timeframe {tf!r}; choose one of: {', '.join(TIMEFRAMES)}",
            field="timeframe") from None


def name_of(interval: float) -> str | None:
    """The timeframe whose length is `interval` seconds, or None."""
    for name, sec in TIMEFRAMES.items():
        if abs(sec - interval) < 1e-6:
            return name
    return None


def describe(interval: float) -> str:
    """`1h` for 3600 s, else a plain `90s` / `7m` / `2h` text (error messages)."""
    name = name_of(interval)
    if name is not None:
        return name
    if interval % 86400 == 0:
        return f"{interval / 86400:g}d"
    if interval % 3600 == 0:
        return f"{interval / 3600:g}h"
    if interval % 60 == 0:
        return f"{interval / 60:g}m"
    return f"{interval:g}s"


def bucket_start(ts: float, tf_seconds: float) -> float:
    """Open time of the candle of length `tf_seconds` (UTC-aligned) containing `ts`."""
    return ts - (ts % tf_seconds)
