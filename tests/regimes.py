"""How often each indicator regime fires on the bundled real data, per timeframe (issue 11).

    python -m tests.regimes            # the table (Markdown)

A regime is the condition a rule tests on its timeframe's indicators (the thresholds are the
catalogue defaults, compared as the rules compare them). Each completed candle of the
timeframe is one observation. The bundled files are hourly (BTC 2019) and daily (BTC
2014-2019, ETH 2017-2020); 4h candles are built from the hourly file and 1d from both. A
regime that never or always fires on its default timeframe is a wrong default
(`tests/test_rules_regimes.py` checks that).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from pmgui.domain.models import Candle, Indicators
from pmgui.domain.timeframes import seconds
from pmgui.exchange.csvdata import load_price_csv, resources_dir
from pmgui.indicators import IndicatorSet, aggregate
from pmgui.rules.common import ge, gt, le
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.policy import indicator_spec

DATA = resources_dir() / "data"

Pred = Callable[[Candle, Indicators, Params], bool | None]


@dataclass(frozen=True)
class Regime:
    rule: str  # whose `timeframe` decides
    name: str
    pred: Pred


def _mom(sign: int, key: str, strict: bool = False) -> Pred:
    def f(c: Candle, x: Indicators, p: Params) -> bool | None:
        if x.momentum is None:
            return None
        return (gt if strict else ge)(sign * x.momentum, p.f(key))
    return f


REGIMES: tuple[Regime, ...] = (
    Regime("trailing", "high volatility (>= 3%)",
           lambda c, x, p: None if x.volatility is None
           else ge(x.volatility, p.f("trailing.high_volatility"))),
    Regime("trailing", "low volatility (<= 1%)",
           lambda c, x, p: None if x.volatility is None
           else le(x.volatility, p.f("trailing.low_volatility"))),
    Regime("trailing", "strong momentum, long (>= 2%)", _mom(1, "trailing.strong_momentum")),
    Regime("trailing", "strong momentum, short (<= -2%)", _mom(-1, "trailing.strong_momentum")),
    Regime("trailing", "weak momentum, long (<= 0)",
           lambda c, x, p: None if x.momentum is None
           else le(x.momentum, p.f("trailing.weak_momentum"))),
    Regime("trailing", "weak momentum, short (>= 0)",
           lambda c, x, p: None if x.momentum is None
           else le(-x.momentum, p.f("trailing.weak_momentum"))),
    Regime("tightening", "tightening: volatility > 3%",
           lambda c, x, p: None if x.volatility is None
           else gt(x.volatility, p.f("tightening.high_volatility"))),
    Regime("dynamic_tp", "extend TP, long (momentum >= 2%, trend >= 0)",
           lambda c, x, p: None if x.momentum is None or x.trend is None
           else ge(x.momentum, p.f("dynamic_tp.strong_momentum"))
           and ge(x.trend, p.f("dynamic_tp.min_trend"))),
    Regime("dynamic_tp", "pull in TP, long (last candle down, RSI > 70)",
           lambda c, x, p: None if x.last_change is None or x.rsi is None
           else le(x.last_change, p.f("dynamic_tp.fade_momentum"))
           and gt(x.rsi, p.f("dynamic_tp.rsi_high"))),
    Regime("dynamic_tp", "pull in TP, short (last candle up, RSI < 30)",
           lambda c, x, p: None if x.last_change is None or x.rsi is None
           else le(-x.last_change, p.f("dynamic_tp.fade_momentum"))
           and x.rsi < p.f("dynamic_tp.rsi_low")),
    Regime("add_on", "near EMA9 (within 0.5%)",
           lambda c, x, p: None if x.ema9 is None
           else le(abs(c.close - x.ema9) / x.ema9, p.f("add_on.ema_band"))),
    Regime("scaling", "scaling momentum, long (> 2%)", _mom(1, "scaling.min_momentum", True)),
)


def datasets() -> dict[str, dict[str, list[Candle]]]:
    """timeframe → {dataset name: completed candles}."""
    hourly = list(load_price_csv(DATA / "BTCUSD-1h-coinbase-2019.csv").candles)
    btc_d = list(load_price_csv(DATA / "BTCUSD-1d-coinbase.csv").candles)
    eth_d = list(load_price_csv(DATA / "ETHUSD-1d-bitstamp.csv").candles)
    return {
        "1h": {"BTC 2019 (1h file)": hourly},
        "4h": {"BTC 2019 (1h file)": aggregate(hourly, 3600, seconds("4h"))},
        "1d": {"BTC 2019 (1h file)": aggregate(hourly, 3600, seconds("1d")),
               "BTC 2014-19 (1d file)": btc_d, "ETH 2017-20 (1d file)": eth_d},
    }


def frequency(candles: list[Candle], regime: Regime, params: Params) -> tuple[float, int]:
    """(share of observations where the regime holds, observations)."""
    ind = IndicatorSet(indicator_spec(params))
    hits = n = 0
    for c in candles:
        ind.update(c)
        v = regime.pred(c, ind.snapshot(), params)
        if v is None:
            continue
        n += 1
        hits += bool(v)
    return (hits / n if n else 0.0), n


def chandelier_distance(candles: list[Candle], params: Params) -> float:
    """Median chandelier distance (atr_mult · ATR(n)) as a fraction of the close."""
    ind = IndicatorSet(indicator_spec(params))
    out = []
    for c in candles:
        ind.update(c)
        atr = ind.snapshot().atr
        if atr is not None:
            out.append(params.f("trailing.atr_mult") * atr / c.close)
    return statistics.median(out)


def table(params: Params | None = None) -> list[dict[str, object]]:
    params = params or resolve_params("manual")
    data = datasets()
    rows: list[dict[str, object]] = []
    for r in REGIMES:
        default = str(params[f"{r.rule}.timeframe"])
        for tf, sets in data.items():
            for name, candles in sets.items():
                freq, n = frequency(candles, r, params)
                rows.append({"rule": r.rule, "regime": r.name, "timeframe": tf,
                             "data": name, "freq": freq, "n": n, "default": tf == default})
    return rows


def main() -> None:
    params = resolve_params("manual")
    print("| rule | regime | data | 1h | 4h | 1d |")
    print("|---|---|---|---|---|---|")
    rows = table(params)
    names = ("BTC 2019 (1h file)", "BTC 2014-19 (1d file)", "ETH 2017-20 (1d file)")
    for r in REGIMES:
        for name in names:
            cells = []
            for tf in ("1h", "4h", "1d"):
                hit = [x for x in rows if x["regime"] == r.name and x["timeframe"] == tf
                       and x["data"] == name]
                if not hit:
                    cells.append("")
                    continue
                x = hit[0]
                mark = "**" if x["default"] else ""
                cells.append(f"{mark}{x['freq']:.0%}{mark} ({x['n']})")
            if any(cells):
                print(f"| {r.rule} | {r.name} | {name} | " + " | ".join(cells) + " |")
    data = datasets()
    b = resolve_params("breakout")
    print()
    print("chandelier 3·ATR(22) as a share of the price (median): " + ", ".join(
        f"{tf} {chandelier_distance(sets['BTC 2019 (1h file)'], b):.1%}"
        for tf, sets in data.items()) + f"  (breakout default: {b['trailing.timeframe']})")


if __name__ == "__main__":
    main()
