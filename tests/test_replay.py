"""`pmgui replay`: the same engine over the paper exchange in simulated time."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine.ids import is_ours
from pmgui.engine.replay import ReplayRequest, run_replay
from pmgui.exchange.csvdata import PriceData
from pmgui.resources import resource_path
from tests.emulator_support import run_cli

BTC_1H = resource_path("data", "BTCUSD-1h-coinbase-2019.csv")
TYPES = {"open", "move_sl", "move_tp", "reduce", "add", "close"}


def replay_cli(*args: str) -> subprocess.CompletedProcess:
    """`pmgui replay ARGS` with the test's environment, as a child of the fork server:
    pmgui.cli's main from the start, only the imports shared (~1 s of CPU a start, ~25
    starts in this file). pmgui's start-up as a fresh interpreter is test_cli's subject."""
    return run_cli("replay", *args, environ=os.environ, timeout=120)


def _finite(v) -> bool:
    return v is None or isinstance(v, str) or (isinstance(v, (int, float)) and math.isfinite(v))


@pytest.mark.parametrize("preset,extra", [
    ("manual", ["--sl", "8300", "--tp", "9500"]),
    ("guardian", ["--sl", "8200", "--tp", "9800"]),
    ("breakout", ["--sl", "8300"]),
    ("monitor", []),
    ("active", ["--sl", "8000", "--set", "trailing.enabled=true"]),
])
def test_each_preset_end_to_end_on_bundled_real_data(preset, extra):
    r = replay_cli(str(BTC_1H), "--side", "long", "--entry", "8554.06", "--qty", "1",
                   "--leverage", "5", "--preset", preset, "--json", *extra)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    *actions, summary = rows
    assert summary["type"] == "summary"
    assert {"exit_reason", "exit_price", "realized_pnl", "roi"} <= summary.keys()
    assert actions[0]["type"] == "open" and actions[0]["price"] == 8554.06
    closed = 0.0
    for a in actions:
        assert a["type"] in TYPES
        assert {"ts", "type", "reason", "price", "qty", "sl", "tp"} <= a.keys()
        assert all(_finite(v) for v in a.values() if not isinstance(v, dict))
        if a["type"] in ("reduce", "close"):
            closed += a["qty"]
    added = sum(a["qty"] for a in actions if a["type"] == "add")
    assert closed <= 1 + added + 1e-9  # no close ever exceeds the position
    assert summary["exit_reason"] is not None  # every preset exits somewhere in 4.5 months
    if preset == "monitor":  # seed 002 defaults: SL 1%, TP 2% from entry
        assert actions[0]["sl"] == pytest.approx(8554.06 * 0.99, abs=0.01)
        assert actions[0]["tp"] == pytest.approx(8554.06 * 1.02, abs=0.01)


def test_breakout_takes_tp1_then_moves_to_breakeven():
    r = replay_cli(str(BTC_1H), "--side", "long", "--entry", "8554.06", "--qty", "1",
                   "--preset", "breakout", "--sl", "8300", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    reasons = [a["reason"] for a in rows[:-1]]
    assert "tp1" in reasons
    tp1 = next(a for a in rows if a.get("reason") == "tp1")
    assert tp1["type"] == "reduce" and tp1["qty"] == pytest.approx(0.5)
    assert tp1["price"] >= 8554.06 + (8554.06 - 8300) - 1e-6
    be = next(a for a in rows if a.get("reason") == "breakeven")
    assert be["sl"] == pytest.approx(8554.06 * 1.001, abs=0.01)


def test_human_output_and_summary():
    r = replay_cli(str(BTC_1H), "--side", "short", "--entry", "8554.06", "--qty", "0.5",
                   "--sl", "8800", "--tp", "8000")
    assert r.returncode == 0, r.stderr
    assert "open" in r.stdout and "exit:" in r.stdout.splitlines()[-1]


@pytest.mark.parametrize("content,needle", [
    ("timestamp,close\n1,100\n", "column"),
    ("timestamp,price\n1,100\n2,abc\n", "line 3"),
    ("timestamp,price\n1,100\n2,-5\n", "line 3"),
    ("timestamp,price\n5,100\n2,101\n", "line 3"),
])
def test_bad_files_name_the_line(tmp_path, content, needle):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    r = replay_cli(str(f), "--side", "long", "--entry", "100", "--qty", "1", "--strict")
    assert r.returncode == 1
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_unknown_preset_and_parameter_are_clear_errors(tmp_path):
    r = replay_cli(str(BTC_1H), "--side", "long", "--entry", "1", "--qty", "1",
                   "--preset", "gardian")
    assert r.returncode == 1 and "unknown preset 'gardian'" in r.stderr
    r = replay_cli(str(BTC_1H), "--side", "long", "--entry", "1", "--qty", "1",
                   "--set", "trailing.distanse=0.1")
    assert r.returncode == 1 and "trailing.distance" in r.stderr  # a suggestion


def _path(prices: list[float]) -> PriceData:
    return PriceData("ticks", "X/USDT:USDT",
                     tuple(Tick("X/USDT:USDT", p, 1_700_000_000 + 5 * i)
                           for i, p in enumerate(prices)))


def test_fixed_trailing_short_freqtrade_semantics():
    """A short's stop trails the lowest price by the distance and only moves down."""
    prices = [100, 99, 97, 98, 96, 96.5, 97.5, 98.2]
    req = ReplayRequest(Side.SHORT, 100.0, 1.0, 1.0, sl=105.0, preset="manual",
                        overrides={"trailing.enabled": True, "trailing.distance": 0.02},
                        fee=0.0, symbol="X/USDT:USDT")
    res = asyncio.run(run_replay(_path(prices), req))
    sls = [a["sl"] for a in res.actions if a["type"] == "move_sl"]
    assert sls == sorted(sls, reverse=True)
    assert sls[-1] == pytest.approx(96 * 1.02)
    s = res.summary
    assert s["exit_reason"] == "trailing_stop" and s["exit_price"] == 98.2  # a tick gap
    assert s["realized_pnl"] == pytest.approx(100 - 98.2)


def test_replay_is_deterministic(tmp_path):
    prices = [100 + 3 * math.sin(i / 7) + i * 0.05 for i in range(400)]
    req = ReplayRequest(Side.LONG, 100.0, 2.0, 10.0, sl=97.0, tp=130.0, preset="guardian",
                        symbol="X/USDT:USDT")
    a = asyncio.run(run_replay(_path(prices), req))
    b = asyncio.run(run_replay(_path(prices), req))
    assert a.actions == b.actions  # the rules' inputs included
    assert a.summary == b.summary


def test_a_replayed_venue_fill_names_the_same_order_run_after_run():
    """Order ids come from the replay's clock and a counter, not the wall clock and chance:
    the same replay prints the same lines (`--json`) run after run, so two can be diffed."""
    prices = [100 + 3 * math.sin(i / 7) for i in range(200)]
    prices += [prices[-1] - 0.5 * i for i in range(1, 20)]  # down through the venue's stop
    req = ReplayRequest(Side.LONG, 100.0, 2.0, 10.0, sl=97.0, tp=130.0, preset="manual",
                        symbol="X/USDT:USDT")
    a = asyncio.run(run_replay(_path(prices), req))
    b = asyncio.run(run_replay(_path(prices), req))
    orders = [r["inputs"]["order"] for r in a.actions if "order" in r.get("inputs", {})]
    assert a.actions[-1]["rule"] == "exchange" and len(orders) == 1
    assert is_ours(orders[0]) and len(orders[0]) == 26  # a live id's format
    assert a.actions == b.actions
    assert a.summary == b.summary


@pytest.mark.parametrize("tf", ["1h", "4h"])
def test_chandelier_stop_matches_an_independent_library_on_real_data(tf):
    """Every chandelier decision equals HH(22) − 3·ATR(22) over the completed candles of the
    rule's timeframe (ta, on pandas-resampled candles): the hourly file as it is, and its
    hours built into 4h candles."""
    pd = pytest.importorskip("pandas")
    ta_vol = pytest.importorskip("ta.volatility")
    from pmgui.exchange.csvdata import load_price_csv

    data = load_price_csv(BTC_1H)
    req = ReplayRequest(Side.LONG, data.candles[0].open, 1.0, 1.0, sl=1000.0, preset="manual",
                        overrides={"trailing.enabled": True, "trailing.mode": "chandelier",
                                   "trailing.timeframe": tf},
                        fee=0.0, symbol="BTC/USDT:USDT")
    res = asyncio.run(run_replay(data, req))
    decisions = [a for a in res.actions if a["rule"] == "trailing"]
    assert decisions and res.summary["timeframes"] == {tf: ["trailing"]}
    if tf == "1h":
        assert len(decisions) > 10
    df = pd.DataFrame([(c.ts, c.open, c.high, c.low, c.close) for c in data.candles],
                      columns=["ts", "open", "high", "low", "close"])
    df.index = pd.to_datetime(df.ts, unit="s")
    bars = df.resample(tf, origin="epoch").agg(
        {"ts": "first", "open": "first", "high": "max", "low": "min", "close": "last"}).dropna()
    bars["start"] = [t.timestamp() for t in bars.index]
    atr = ta_vol.AverageTrueRange(bars.high, bars.low, bars.close,
                                  window=22).average_true_range()
    level = list(bars.high.rolling(22).max() - 3.0 * atr)
    starts = list(bars.start)
    for m in decisions:
        # the tick's candle is the last start <= ts; indicators use the completed one before
        k = max(i for i, t in enumerate(starts) if t <= m["ts"]) - 1
        assert m["inputs"]["level"] == pytest.approx(level[k], rel=1e-9, abs=1e-6)
        if m["type"] == "move_sl":
            assert m["sl"] == pytest.approx(level[k], rel=1e-9, abs=1e-6)
        else:  # the level jumped above the price on a new candle: the stop was due
            assert m["type"] == "close" and m["reason"] == "trailing_stop"
            assert m["price"] <= level[k]



def test_invalid_price_rows_skipped_reported_and_strict(tmp_path):
    f = tmp_path / "X-USDT.csv"
    rows = ["timestamp,price"] + [f"{1_700_000_000 + 5 * i},{100 + i * 0.1}" for i in range(40)]
    rows[4] = f"{1_700_000_000 + 15},nan"
    rows[9] = f"{1_700_000_000 + 40},0"
    rows[12] = f"{1_700_000_000 + 55},-3"
    f.write_text("\n".join(rows) + "\n")
    args = ("--side", "long", "--entry", "100", "--qty", "1", "--sl", "90", "--json")
    r = replay_cli(str(f), *args)
    assert r.returncode == 0, r.stderr
    assert "skipped 3 rows with an invalid price (lines 5, 10, 13" in r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["skipped_rows"] == 3 and summary["skipped_lines"] == [5, 10, 13]
    r = replay_cli(str(f), *args, "--strict")
    assert r.returncode == 1 and "line 5: price 'nan' is not a finite number" in r.stderr
    assert "Traceback" not in r.stderr


def test_rule_timeframe_finer_than_a_candle_file_is_an_error_naming_it():
    daily = resource_path("data", "BTCUSD-1d-coinbase.csv")
    r = replay_cli(str(daily), "--side", "long", "--entry", "300", "--qty", "1",
                   "--preset", "active", "--json")
    assert r.returncode == 1
    assert ("tightening.timeframe is 4h and scaling.timeframe is 1h: finer than the 1d "
            "candles of BTCUSD-1d-coinbase.csv") in r.stderr
    assert "--set tightening.timeframe=1d --set scaling.timeframe=1d" in r.stderr
    assert "Traceback" not in r.stderr
    # coarser or equal is fine: built from the file's candles
    r = replay_cli(str(daily), "--side", "long", "--entry", "300", "--qty", "1",
                   "--preset", "active", "--set", "scaling.timeframe=1d",
                   "--set", "tightening.timeframe=1d", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.splitlines()[-1])
    assert s["timeframes"] == {"1d": ["tightening", "scaling"]} and s["data_timeframe"] == "1d"
    # a fixed trailing stop reads no indicator: any file will do
    r = replay_cli(str(daily), "--side", "long", "--entry", "300", "--qty", "1", "--sl", "250",
                   "--set", "trailing.enabled=true", "--json")
    assert r.returncode == 0, r.stderr


def test_open_at_gives_the_indicators_their_history_so_scaling_can_fire():
    """Seed 004's scaling needs 10 hourly candles of momentum but a position younger than
    15 minutes: opened at the first row it can never fire; with --open-at the rows before are
    the market's history, as the venue's candles are live."""
    from pmgui.exchange.csvdata import load_price_csv
    from pmgui.indicators import IndicatorSet, IndicatorSpec

    data = load_price_csv(BTC_1H)
    ind = IndicatorSet(IndicatorSpec())
    k = None
    for i, c in enumerate(data.candles[:-1]):
        ind.update(c)
        mom = ind.snapshot().momentum
        if i >= 30 and mom is not None and mom > 0.025:
            k = i + 1
            break
    assert k is not None
    at = data.candles[k]
    entry = round(at.open * 0.99, 2)  # ~ +9 % ROI at 10x after fees at the open
    args = ("--side", "long", "--entry", str(entry), "--qty", "1", "--leverage", "10",
            "--sl", str(round(entry * 0.97, 2)), "--preset", "active", "--json")
    r = replay_cli(str(BTC_1H), *args, "--open-at", str(int(at.ts)))
    assert r.returncode == 0, r.stderr
    *rows, summary = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[0]["type"] == "open" and rows[0]["ts"] == at.ts
    assert summary["opened_at"] == at.ts
    [scale] = [x for x in rows if x["reason"] == "scaling"]
    assert scale["ts"] == at.ts and scale["qty"] == pytest.approx(0.25)
    assert scale["inputs"]["momentum"] > 0.02 and scale["inputs"]["timeframe"] == "1h"
    # from the first row the same trade never scales: no history at the open
    r = replay_cli(str(BTC_1H), "--side", "long", "--entry", str(round(data.candles[0].open
                                                                          * 0.99, 2)),
                   *args[4:])
    assert r.returncode == 0 and '"reason": "scaling"' not in r.stdout
    # a time after the data is a clear error
    r = replay_cli(str(BTC_1H), *args, "--open-at", "2030-01-01")
    assert r.returncode == 1 and "no price at or after --open-at" in r.stderr
    r = replay_cli(str(BTC_1H), *args, "--open-at", "soon")
    assert r.returncode == 1 and "--open-at: timestamp 'soon'" in r.stderr


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("kind", ["ticks", "candles"])
def test_breakeven_after_tp1_holds_when_the_price_falls_straight_back(tmp_path, side, kind):
    """Issue 11's money bug: TP1 books half at 1R and the next price (or the same candle) is
    already back through entry + 0.1 %: the rest leaves at breakeven, not at the first stop."""
    d = 1 if side == "long" else -1

    def p(x: float) -> float:
        return round(100 + d * (x - 100), 4)

    f = tmp_path / "X-USDT.csv"
    t = 1_700_002_800
    if kind == "ticks":
        rows = ["timestamp,price"] + [f"{t + 60 * i},{p(x)}"
                                      for i, x in enumerate([100.0, 101.0, 102.5, 99.0, 98.9])]
    else:  # one candle whose extreme hits TP1 and that closes back below the entry
        bars = [(100.0, 100.5, 99.5, 100.2), (101.0, 102.5, 99.0, 99.2),
                (99.2, 99.5, 98.9, 99.3)]
        rows = ["timestamp,open,high,low,close"]
        for i, (o, h, lo, c) in enumerate(bars):
            hi_, lo_ = (p(h), p(lo)) if d > 0 else (p(lo), p(h))
            rows.append(f"{t + 3600 * i},{p(o)},{hi_},{lo_},{p(c)}")
    f.write_text("\n".join(rows) + "\n")
    r = replay_cli(str(f), "--side", side, "--entry", "100", "--qty", "2", "--sl", str(p(98)),
                   "--preset", "breakout", "--fee", "0", "--json")
    assert r.returncode == 0, r.stderr
    *acts, s = [json.loads(line) for line in r.stdout.splitlines()]
    reasons = [a["reason"] for a in acts]
    assert reasons[:4] == ["manual", "tp1", "breakeven", "breakeven_stop"], reasons
    tp1, be = acts[1], acts[2]
    assert tp1["ts"] == be["ts"] and be["sl"] == pytest.approx(p(100.1))  # same evaluation
    assert s["exit_reason"] == "breakeven_stop"
    assert s["realized_pnl"] > 0  # a winning trade stays a winner


def _run_rows(tmp_path, rows: list[str], *args: str) -> tuple[list[dict], dict]:
    f = tmp_path / "X-USDT.csv"
    f.write_text("\n".join(rows) + "\n")
    r = replay_cli(str(f), *args, "--json")
    assert r.returncode == 0, r.stderr
    *acts, summary = [json.loads(line) for line in r.stdout.splitlines()]
    return acts, summary


def test_whole_number_prices_do_not_coarsen_the_levels_fills_or_liquidation(tmp_path):
    """A file of whole-number prices says nothing about the venue's tick: replay's market
    must not round the trader's stop, a slipped fill or the liquidation price to 1.00."""
    t = 1_700_000_000
    ticks = ["timestamp,price"] + [f"{t + i},{p}" for i, p in enumerate([100, 101, 99, 97])]
    long_ = ("--side", "long", "--entry", "100", "--qty", "1", "--fee", "0")
    # a stop at 98.6 is not crossed by 99 (rounded to 99 it was: stopped out at 99)
    acts, s = _run_rows(tmp_path, ticks, *long_, "--sl", "98.6")
    assert s["exit_reason"] == "stop_loss" and s["exit_price"] == 97.0, acts
    assert acts[-1]["ts"] == t + 3
    # 0.1 % slippage on the stop's market fill at 97: 96.903 (rounded to 97 it vanished)
    acts, s = _run_rows(tmp_path, ticks, *long_, "--sl", "98", "--slippage", "0.001")
    assert s["exit_price"] == pytest.approx(96.903)
    assert s["realized_pnl"] == pytest.approx(96.903 - 100)
    # 20x: liquidated at entry·(1 − 1/20 + 0.004) = 95.4, not at 95 (the whole margin)
    gap = ["timestamp,price", f"{t},100", f"{t + 1},90"]
    acts, s = _run_rows(tmp_path, gap, *long_, "--leverage", "20")
    assert s["exit_reason"] == "liquidation" and s["exit_price"] == pytest.approx(95.4)
    assert s["realized_pnl"] == pytest.approx(-4.6)


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_candle_reaches_the_stop_before_the_liquidation_price(tmp_path, side):
    """Inside a candle the price moves continuously: a stop between the entry and the
    liquidation price is reached first and fills at its level; the position is not
    liquidated (it was, at 20x: the liquidation was checked before the orders)."""
    d = 1 if side == "long" else -1

    def p(x: float) -> float:
        return round(100 + d * (x - 100), 4)

    # a long's adverse extreme first: a rising candle (open→low→high→close) through the
    # stop at 97 and the liquidation at 95.4 down to 90; a short's, the mirror image
    lo, hi = sorted((p(90), p(101)))
    candle = ["timestamp,open,high,low,close", f"1700000000,100,{hi},{lo},{p(100.5)}"]
    acts, s = _run_rows(tmp_path, candle, "--side", side, "--entry", "100", "--qty", "1",
                        "--leverage", "20", "--sl", str(p(97)), "--fee", "0")
    assert s["exit_reason"] == "stop_loss", acts
    assert s["exit_price"] == pytest.approx(p(97))
    assert s["realized_pnl"] == pytest.approx(-3.0)


def test_human_output_shows_prices_and_quantities_as_given(tmp_path):
    """The human lines printed six significant digits: a BTC price of 101,234.56 as
    101235, a stop of 100,123.45 as 100123, a quantity of 0.123456 as 0.123456 but
    0.1234567 as 0.123457."""
    f = tmp_path / "BTC-USDT.csv"
    f.write_text("timestamp,price\n1700000000,101234.56\n1700000001,101300.12\n"
                 "1700000002,99876.54\n")
    r = replay_cli(str(f), "--side", "long", "--entry", "101234.56", "--qty", "0.1234567",
                   "--sl", "100123.45", "--tp", "123456.78", "--fee", "0")
    assert r.returncode == 0, r.stderr
    opened, closed, summary = r.stdout.splitlines()
    assert opened.split()[2:] == ["open", "manual", "price", "101234.56", "qty", "0.1234567",
                                  "sl", "100123.45", "tp", "123456.78"], opened
    assert closed.split()[2:] == ["close", "stop_loss", "price", "99876.54", "qty",
                                  "0.1234567"], closed
    assert summary.startswith("exit: stop_loss @ 99876.54 "), summary



@pytest.mark.parametrize("qty", ["2.3", "4.1", "1.15"])
def test_a_stop_closes_the_whole_of_an_ordinary_quantity(tmp_path, qty):
    """--qty 2.3: the stop order's amount was floored to 2.29999999 (a float artefact of
    2.3 / 1e-8); the stop filled, 1e-8 stayed open, unprotected, and the summary said
    the position never exited."""
    f = tmp_path / "X-USDT.csv"
    f.write_text("timestamp,price\n1700000000,100\n1700000001,101\n1700000002,97\n")
    r = replay_cli(str(f), "--side", "long", "--entry", "100", "--qty", qty, "--sl", "98",
                   "--fee", "0", "--json")
    assert r.returncode == 0, r.stderr
    *acts, s = [json.loads(line) for line in r.stdout.splitlines()]
    assert s["exit_reason"] == "stop_loss" and s["open_qty"] == 0.0, s
    assert [a["type"] for a in acts] == ["open", "close"]
    assert acts[-1]["qty"] == float(qty) and "errors" not in s
    assert s["realized_pnl"] == pytest.approx(-3 * float(qty))


def test_a_quantity_finer_than_the_default_amount_step_closes_whole(tmp_path):
    """--qty 0.123456789: the market's amount step (1e-8) floored the stop's amount to
    0.12345678, and 9e-9 stayed open, unprotected ("below the minimum")."""
    f = tmp_path / "X-USDT.csv"
    f.write_text("timestamp,price\n1700000000,100\n1700000001,101\n1700000002,97\n")
    r = replay_cli(str(f), "--side", "long", "--entry", "100", "--qty", "0.123456789",
                   "--sl", "98", "--fee", "0", "--json")
    assert r.returncode == 0, r.stderr
    *acts, s = [json.loads(line) for line in r.stdout.splitlines()]
    assert s["exit_reason"] == "stop_loss" and s["open_qty"] == 0.0, s
    assert acts[-1]["type"] == "close" and acts[-1]["qty"] == pytest.approx(0.123456789)
    assert "errors" not in s
    assert s["realized_pnl"] == pytest.approx(-3 * 0.123456789)


@pytest.mark.parametrize("option", ["--fee", "--slippage"])
def test_a_fee_or_slippage_out_of_range_is_named_as_the_option(option):
    """--fee 0.5 was refused by the paper venue as 'paper taker fee must be ...', after the
    whole file was read: a name the trader never typed."""
    r = replay_cli(str(BTC_1H), "--side", "long", "--entry", "8554.06", "--qty", "1",
                   option, "0.5")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert f"argument {option}: must be a fraction below 0.1" in line, line
    assert "paper" not in line


def test_a_trailing_stop_due_at_once_is_not_left_to_the_breakeven_order(tmp_path):
    """DESIGN §4: a stop that is due acts at once. After TP1 and the breakeven move (its
    order on the exchange at 0.3003), the trailing stop from the best price 0.32 (0.3136)
    is crossed by the next price, 0.31, before it was ever sent: the engine said "its order
    on the exchange closes it" and waited its grace for the breakeven order, which that
    price does not reach — the position closed a tick later, at 0.309."""
    t = 1_700_000_000
    prices = [0.3, 0.305, 0.32, 0.31, 0.309, 0.308, 0.307, 0.306, 0.305, 0.304]
    rows = ["timestamp,price"] + [f"{t + 10 * i},{p}" for i, p in enumerate(prices)]
    acts, s = _run_rows(tmp_path, rows, "--side", "long", "--entry", "0.3", "--qty", "10",
                        "--sl", "0.29", "--preset", "breakout", "--set", "trailing.enabled=true",
                        "--set", "trailing.mode=fixed", "--fee", "0")
    assert [a["reason"] for a in acts] == ["manual", "tp1", "breakeven", "trailing_stop"]
    close = acts[-1]
    assert close["ts"] == t + 30 and close["price"] == 0.31, close
    assert s["exit_price"] == 0.31
    assert s["realized_pnl"] == pytest.approx(5 * 0.02 + 5 * 0.01)
