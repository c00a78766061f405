"""Numbers as a trader reads them in logs, messages and the command line (DESIGN §7).

Prices to the market's tick size, quantities to its amount step; about six significant
digits when the market is unknown. Pure (no Qt, no I/O), so the engine's messages, the CLI and
the window all print a level the same way. Never "nan", never "1e+06": a missing or non-finite
value is an em dash.
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal

from pmgui.domain.models import Market

DASH = "—"


def is_num(value: object) -> bool:
    """A finite real number (bools excluded): the only thing we ever print as a number."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@functools.lru_cache(maxsize=4096)  # one answer per market's tick or step
def step_decimals(step: float | None, fallback: int = 2) -> int:
    """How many decimals represent multiples of `step` exactly (0.5 → 1, 0.25 → 2, 10 → 0)."""
    if not is_num(step) or step <= 0:
        return fallback
    for d in range(0, 11):
        if abs(round(step, d) - step) <= step * 1e-9:
            return d
    return 10


def auto_decimals(value: float) -> int:
    """Decimals for a price whose market is unknown: about six significant digits."""
    a = abs(value)
    if a == 0 or not math.isfinite(a):
        return 2
    digits = math.floor(math.log10(a)) + 1
    return max(0, min(10, 6 - digits))


def price_decimals(market: Market | None, value: float | None = None) -> int:
    if market is not None and market.tick_size > 0:
        return step_decimals(market.tick_size)
    return auto_decimals(value) if is_num(value) else 2


def plain_price(value: float | None, market: Market | None = None,
                decimals: int | None = None) -> str:
    """A price for logs and the command line: the market's precision, no separators."""
    if not is_num(value):
        return DASH
    assert value is not None
    if market is not None and market.tick_size > 0:
        value = market.round_price(value)
    d = decimals if decimals is not None else price_decimals(market, value)
    return f"{value:.{d}f}"


def plain_qty(value: float | None, market: Market | None = None) -> str:
    if not is_num(value):
        return DASH
    assert value is not None
    d = step_decimals(market.amount_step, 4) if market is not None else _qty_decimals(value)
    return f"{value:.{d}f}"


def _qty_decimals(value: float) -> int:
    for d in range(0, 9):
        if abs(round(value, d) - value) <= abs(value) * 1e-9:
            return d
    return 8


def plain_number(value: float) -> str:
    """A number in a message in full, up to 12 significant digits, never in exponent form
    (`:g` kept six; `:.12g` wrote 0.00001 as 1e-05): for texts whose market is not at hand
    (validation messages, the ledger's notes in the action log)."""
    if not is_num(value):
        return DASH
    text = format(Decimal(f"{float(value):.12g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
