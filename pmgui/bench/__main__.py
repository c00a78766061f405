"""`python -m pmgui.bench [--json] [--quick]`: how fast the hot paths are.

Speed is measured here, never asserted in tests. Each benchmark reports operations per
second and the median time of one operation, measured over repeated rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pmgui.domain.enums import Side
from pmgui.domain.models import Candle, Indicators, Market, MarketState, Position, Tick
from pmgui.engine.events import PositionSnapshot, TickEvent
from pmgui.engine.outbox import Outbox


def _measure(name: str, fn: Callable[[], int], rounds: int) -> dict:
    """Run `fn` (which returns how many operations it did) `rounds` times."""
    per_op: list[float] = []
    total_ops = 0
    total_t = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        per_op.append(dt / max(n, 1))
        total_ops += n
        total_t += dt
    return {"name": name, "ops_per_s": total_ops / total_t if total_t else math.inf,
            "median_us": statistics.median(per_op) * 1e6, "rounds": rounds,
            "ops": total_ops}


def bench_policy(n: int, preset: str) -> Callable[[], int]:
    from pmgui.indicators import IndicatorSet
    from pmgui.rules.params import resolve_params
    from pmgui.rules.policy import evaluate, indicator_spec, observe

    params = resolve_params(preset, {})
    market = Market("BTC/USDT:USDT", 0.1, 0.001)
    ind = IndicatorSet.from_candles(indicator_spec(params), [
        Candle(i * 60.0, 100 + i % 7, 101 + i % 7, 99 + i % 7, 100.5 + i % 7, 1000.0)
        for i in range(100)])
    snap = ind.snapshot() if ind else Indicators()
    pos = Position("b", "BTC/USDT:USDT", Side.LONG, 1.0, 100.0, 10, 0.0, 1.0, sl=95.0,
                   tp=120.0, initial_sl=95.0, preset=preset)
    prices = [100.0 + 3 * math.sin(i / 50) for i in range(n)]

    def run() -> int:
        p = pos
        for i, price in enumerate(prices):
            p = observe(p, price)
            evaluate(p, MarketState(p.symbol, price, float(i), market, snap), params)
        return n

    return run


def bench_indicators(n: int) -> Callable[[], int]:
    from pmgui.indicators import IndicatorSet, IndicatorSpec

    candles = [Candle(i * 60.0, 100 + math.sin(i / 9), 101 + math.sin(i / 9),
                      99 + math.sin(i / 9), 100.2 + math.sin(i / 9), 10.0) for i in range(n)]

    def run() -> int:
        ind = IndicatorSet(IndicatorSpec())
        for c in candles:
            ind.update(c)
        ind.snapshot()
        return n

    return run


def bench_outbox(n: int) -> Callable[[], int]:
    symbols = [f"S{i}/USDT:USDT" for i in range(20)]

    def run() -> int:
        box = Outbox()
        for i in range(n):
            box.publish(TickEvent(symbols[i % 20], 100.0 + i, float(i)))
            if i % 100 == 0:
                box.drain()
        box.drain()
        return n

    return run


def bench_engine_ticks(n: int, positions: int) -> Callable[[], int]:
    """Ticks through the whole engine (paper matching, policy, store) in simulated time."""
    from pmgui.engine import commands as cmd
    from pmgui.engine.core import EngineCore
    from pmgui.engine.settings import EngineSettings
    from pmgui.exchange.paper import PaperExchange
    from pmgui.store.db import Store

    symbols = [f"C{i}/USDT:USDT" for i in range(positions)]
    markets = {s: Market(s, 0.01, 0.001, min_notional=0.0) for s in symbols}

    def run() -> int:
        async def go() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                store = Store.open(Path(tmp) / "bench.db")
                paper = PaperExchange(markets, None, realtime=False, db=store.db,
                                      balance=1e9)
                core = EngineCore(paper, store, Outbox(),
                                  EngineSettings(default_preset="guardian",
                                                 protect_throttle=2.0), clock=paper.now)
                await core.start()
                for s in symbols:
                    await paper.deliver(Tick(s, 100.0, 0.0), core)
                    await core.handle(cmd.OpenPosition(s, Side.LONG, 1.0, 5, sl=90.0,
                                                       tp=150.0))
                for i in range(1, n + 1):
                    s = symbols[i % positions]
                    price = 100.0 + 2 * math.sin(i / 40)
                    await paper.deliver(Tick(s, price, i * 0.1), core)
                await core.shutdown()

        asyncio.run(go())
        return n

    return run


def bench_model(n: int) -> Callable[[], int] | None:
    try:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication

        from pmgui.domain.enums import Protection
        from pmgui.ui.positions_model import PositionsModel
    except ImportError:
        return None
    app = QApplication.instance() or QApplication([])
    del app
    positions = [Position(f"p{i}", f"S{i}/USDT:USDT", Side.LONG, 1.0, 100.0, 10, 0.0, 1.0,
                          sl=95.0, tp=110.0, initial_sl=95.0) for i in range(20)]

    def run() -> int:
        model = PositionsModel()
        for i in range(n):
            p = positions[i % 20]
            mark = 100 + (i % 50) / 10
            model.update([PositionSnapshot(p, mark, mark - 100, 0.1, 0.5,
                                                    Protection.ON_EXCHANGE, False, float(i))])
        return n

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pmgui.bench")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = ap.parse_args(argv)
    k = 1 if args.quick else 10
    rounds = 3 if args.quick else 5
    results = []
    for preset in ("manual", "guardian", "breakout", "active", "monitor"):
        results.append(_measure(f"policy.evaluate[{preset}]", bench_policy(500 * k, preset),
                                rounds))
    results.append(_measure("indicators.update", bench_indicators(1000 * k), rounds))
    results.append(_measure("outbox.publish", bench_outbox(5000 * k), rounds))
    results.append(_measure("engine.tick[5 positions, paper+store]",
                            bench_engine_ticks(200 * k, 5), rounds))
    model = bench_model(500 * k)
    if model is not None:
        results.append(_measure("ui.positions_model.apply", model, rounds))
    if args.json:
        print(json.dumps({"results": results, "quick": args.quick}, indent=2))
    else:
        for r in results:
            print(f"{r['name']:<42} {r['ops_per_s']:>12,.0f} ops/s   "
                  f"median {r['median_us']:>9.1f} µs/op")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # PySide6 can crash while the interpreter finalises a QApplication that outlived its
    # widgets; the results are already printed, so leave without finalisation.
    os._exit(code)
