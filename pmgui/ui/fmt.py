"""Number formatting for the trader's surface.

One place decides how prices, quantities and signed values look, so the table, the chart
labels and the dialogs agree. Nothing here ever returns "nan" or "inf": a missing or
non-finite value is shown as an em dash.
"""

from __future__ import annotations

from pmgui.domain.models import Market
from pmgui.domain.numbers import (  # noqa: F401 (the window's formatting starts from these)
    DASH,
    _qty_decimals,
    auto_decimals,
    is_num,
    plain_price,
    plain_qty,
    price_decimals,
    step_decimals,
)

MINUS = "\u2212"  # a real minus sign: as wide as "+", unlike the hyphen


def venue_decimals(entry: float, venue_prices: list[float]) -> int:
    """The precision the venue's own prices show (its order triggers, the entry), for when
    the market's tick size is not at hand (`pmgui positions` reads only the database)."""
    def decimals(v: float) -> int:
        for d in range(0, 11):
            if abs(round(v, d) - v) <= abs(v) * 1e-12:
                return d
        return 10
    values = [v for v in venue_prices if is_num(v) and v > 0] or (
        [entry] if is_num(entry) and entry > 0 else [])
    if not values:
        return 2
    cap = auto_decimals(entry) + 1 if is_num(entry) and entry > 0 else 8
    return min(max(decimals(v) for v in values), cap)


def fmt_price(value: float | None, market: Market | None = None) -> str:
    """A price with thousands separators, to the market's tick size (`41,250.5`)."""
    if not is_num(value):
        return DASH
    assert value is not None
    if market is not None and market.tick_size > 0:
        value = market.round_price(value)
    d = price_decimals(market, value)
    return _minus(f"{value:,.{d}f}")


def fmt_qty(value: float | None, market: Market | None = None) -> str:
    if not is_num(value):
        return DASH
    assert value is not None
    d = step_decimals(market.amount_step, 4) if market is not None else _qty_decimals(value)
    return _minus(f"{value:,.{d}f}")


def fmt_signed(value: float | None, decimals: int = 2, suffix: str = "",
               prefix: str = "") -> str:
    """`+1,234.50`, `−92.00 $`: an explicit sign so meaning never rests on colour alone."""
    if not is_num(value):
        return DASH
    assert value is not None
    rounded = round(value, decimals)
    sign = "+" if rounded > 0 else (MINUS if rounded < 0 else "")
    return f"{sign}{prefix}{abs(rounded):,.{decimals}f}{suffix}"


def fmt_pct(fraction: float | None, decimals: int = 2) -> str:
    """A signed percentage from a fraction (0.018 → `+1.80%`)."""
    if not is_num(fraction):
        return DASH
    assert fraction is not None
    return fmt_signed(fraction * 100.0, decimals, "%")


def fmt_r(r: float | None, decimals: int = 2) -> str:
    return fmt_signed(r, decimals, "R")


def fmt_money(value: float | None, currency: str = "USDT", decimals: int = 2) -> str:
    """A signed amount of quote currency; `$` for the dollar stablecoins (`−$92.00`)."""
    if currency.upper() in ("USD", "USDT", "USDC", "BUSD", "FDUSD", "DAI"):
        return fmt_signed(value, decimals, prefix="$")
    return fmt_signed(value, decimals, f" {currency}")


def fmt_age(seconds: float | None) -> str:
    """`42s`, `5m 03s`, `2h 07m`, `3d 04h`: compact and monotonic to read."""
    if not is_num(seconds):
        return DASH
    assert seconds is not None
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def _minus(text: str) -> str:
    return text.replace("-", MINUS, 1) if text.startswith("-") else text
