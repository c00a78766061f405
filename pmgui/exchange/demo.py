"""The demo venue: markets, start prices and the positions pmgui opens on first start.

Starting pmgui with no configuration opens paper mode with a few demo positions (DESIGN §5),
so a new user sees every feature — long and short, several leverages, SL/TP lines — at
once. The engine opens `DEMO_POSITIONS` at the current price on the first start only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market
from pmgui.exchange.feeds import RandomWalkFeed

# Precision and limits close to the venues' USDT-M perpetuals (Binance-like).
DEMO_MARKETS: dict[str, Market] = {
    "BTC/USDT:USDT": Market("BTC/USDT:USDT", tick_size=0.1, amount_step=0.001,
                            min_amount=0.001, min_notional=5.0, max_leverage=125,
                            mmr=0.004, base="BTC"),
    "ETH/USDT:USDT": Market("ETH/USDT:USDT", tick_size=0.01, amount_step=0.001,
                            min_amount=0.001, min_notional=5.0, max_leverage=100,
                            mmr=0.005, base="ETH"),
    "SOL/USDT:USDT": Market("SOL/USDT:USDT", tick_size=0.01, amount_step=0.1,
                            min_amount=0.1, min_notional=5.0, max_leverage=75,
                            mmr=0.01, base="SOL"),
    "XRP/USDT:USDT": Market("XRP/USDT:USDT", tick_size=0.0001, amount_step=0.1,
                            min_amount=0.1, min_notional=5.0, max_leverage=75,
                            mmr=0.01, base="XRP"),
    "DOGE/USDT:USDT": Market("DOGE/USDT:USDT", tick_size=0.00001, amount_step=1.0,
                             min_amount=1.0, min_notional=5.0, max_leverage=75,
                             mmr=0.01, base="DOGE"),
}

DEMO_START_PRICES: dict[str, float] = {
    "BTC/USDT:USDT": 87_500.0,
    "ETH/USDT:USDT": 3_150.0,
    "SOL/USDT:USDT": 185.0,
    "XRP/USDT:USDT": 2.35,
    "DOGE/USDT:USDT": 0.32,
}


@dataclass(frozen=True, slots=True)
class DemoPosition:
    """A position to open on first start. `sl_pct`/`tp_pct` are fractions of the entry price
    (0.015 = 1.5 %), turned into prices at the fill price by `targets`."""

    symbol: str
    side: Side
    qty: float
    leverage: int
    sl_pct: float
    tp_pct: float

    def targets(self, price: float, market: Market | None = None) -> tuple[float, float]:
        """(SL, TP) for an entry at `price`, snapped to the tick size when a market is given."""
        if not (price > 0):
            raise ValidationError(f"entry price must be positive (got {price!r})", field="price")
        d = self.side.dir
        sl = price * (1 - d * self.sl_pct)
        tp = price * (1 + d * self.tp_pct)
        if market is not None:
            sl, tp = market.round_price(sl), market.round_price(tp)
        return sl, tp


# Notional 1.3k–1.8k USDT each; total margin ≈ 1.1k of the default 10k wallet. Every SL sits
# well before the liquidation price (checked by the tests).
DEMO_POSITIONS: tuple[DemoPosition, ...] = (
    DemoPosition("BTC/USDT:USDT", Side.LONG, 0.02, 10, 0.015, 0.03),
    DemoPosition("ETH/USDT:USDT", Side.SHORT, 0.5, 5, 0.02, 0.04),
    DemoPosition("SOL/USDT:USDT", Side.LONG, 8.0, 3, 0.04, 0.08),
    DemoPosition("XRP/USDT:USDT", Side.SHORT, 600.0, 20, 0.008, 0.016),
    DemoPosition("DOGE/USDT:USDT", Side.LONG, 4000.0, 8, 0.03, 0.06),
)


def demo_feed(seed: int = 7, *, realtime: bool = True, tick_interval: float = 1.0,
              volatility_scale: float = 3.0, start_ts: float | None = None,
              clock: Callable[[], float] | None = None) -> RandomWalkFeed:
    """The demo market simulator: a random walk over `DEMO_START_PRICES`.

    Realtime: ticks carry wall time (`clock`, default `time.time`). Otherwise simulated time
    from `start_ts`. Volatility is ×3 by default so a demo session shows stops and targets
    moving within minutes.
    """
    if realtime and clock is None:
        clock = time.time
    return RandomWalkFeed(DEMO_START_PRICES, seed=seed, tick_interval=tick_interval,
                          start_ts=start_ts, clock=clock if realtime else None,
                          markets=DEMO_MARKETS, volatility_scale=volatility_scale)
