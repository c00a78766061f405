"""`pmgui replay`'s fast path (quiet bands, batched loop iterations, coalesced publishing)
gives exactly what the reference path gives: every tick evaluated and published, one loop
iteration per tick. Same actions (with their inputs), same summary."""

from __future__ import annotations

import asyncio
import random

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine.replay import ReplayRequest, run_replay
from pmgui.exchange.csvdata import PriceData, load_price_csv
from pmgui.resources import resource_path

SYM = "X/USDT:USDT"


def _walk(n: int, seed: int, mirror: bool = False) -> PriceData:
    """Regimes of trend and chop, the occasional gap: every family gets to act (`mirror`:
    the same path upside down, for the other side)."""
    rng = random.Random(seed)
    p, drift, out = 100.0, 0.0, []
    for i in range(n):
        if i % 400 == 0:
            drift = rng.choice((-1, 0, 0, 1)) * 0.0004
        p *= 1 + drift + rng.gauss(0.0, 0.0012) + (rng.choice((-1, 1)) * 0.01
                                                   if rng.random() < 0.002 else 0.0)
        q = 10_000.0 / p if mirror else p
        out.append(Tick(SYM, round(max(q, 1.0), 2), 1.7e9 + 5.0 * i))
    return PriceData("ticks", SYM, ticks=tuple(out))


def _rows(result) -> list[dict]:
    rows = [dict(r) for r in result.actions]
    for r in rows:
        if "order" in r.get("inputs", {}):  # a client order id: random per run
            r["inputs"] = {**r["inputs"], "order": "<id>"}
    return rows


PRESETS = [  # each preset with what makes its families act on the random paths
    ("guardian", {}),
    ("active", {"scaling.enabled": True}),
    ("breakout", {"trailing.timeframe": "5m", "add_on.timeframe": "1m"}),
    ("manual", {"trailing.enabled": True, "trailing.mode": "fixed"}),
    ("monitor", {}),
]


def _request(data: PriceData, preset: str, overrides: dict, side: Side) -> ReplayRequest:
    """A position opened at the path's first price: SL 6 % away, TP 15 % (none for
    `breakout`, which sets its own), 5x."""
    p0 = data.ticks[0].price
    d = side.dir
    return ReplayRequest(side, p0, 1.0, 5.0, sl=round(p0 * (1 - d * 0.06), 2),
                         tp=None if preset == "breakout" else round(p0 * (1 + d * 0.15), 2),
                         preset=preset, overrides=overrides, symbol=SYM)


def _both(data: PriceData, req: ReplayRequest):
    fast = asyncio.run(run_replay(data, req))
    slow = asyncio.run(run_replay(data, req, fast=False))
    return fast, slow


@pytest.mark.parametrize("preset,overrides", PRESETS)
@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_fast_replay_equals_the_reference_on_random_paths(preset, overrides, side):
    data = _walk(6000, seed=len(preset) * 7, mirror=side is Side.LONG)
    req = _request(data, preset, overrides, side)
    fast, slow = _both(data, req)
    assert len(fast.actions) >= 2  # opened and acted
    assert _rows(fast) == _rows(slow)
    assert fast.summary == slow.summary


@pytest.mark.parametrize("preset,extra", [
    ("guardian", dict(sl=8200.0, tp=9800.0)),
    ("breakout", dict(sl=8300.0)),
    ("active", dict(sl=8000.0, overrides={"trailing.enabled": True})),
])
def test_fast_replay_equals_the_reference_on_bundled_real_data(preset, extra):
    data = load_price_csv(resource_path("data", "BTCUSD-1h-coinbase-2019.csv"), "BTC/USD:USD")
    req = ReplayRequest(Side.LONG, 8554.06, 1.0, 5.0, preset=preset, symbol="BTC/USD:USD",
                        **extra)
    fast, slow = _both(data, req)
    assert fast.summary["exit_reason"] is not None
    assert _rows(fast) == _rows(slow)
    assert fast.summary == slow.summary


def _cli_args(csv: str) -> object:
    from pmgui.cli import build_parser
    return build_parser().parse_args(["replay", csv, "--side", "long", "--entry", "100",
                                      "--qty", "1", "--preset", "manual", "--json"])


def test_the_cli_replays_with_its_data_out_of_the_collectors_generations(
        tmp_path, monkeypatch, capsys) -> None:
    """`pmgui replay` freezes the heap once the file is read (the collector's passes during
    the replay do not walk every row), and leaves it unfrozen as it found it."""
    import gc

    import pmgui.engine.replay as replay_module

    csv = tmp_path / "ticks.csv"
    csv.write_text("timestamp,price\n" + "".join(f"{1_700_000_000 + i},{100 + i % 7}\n"
                                                  for i in range(3000)))
    seen: list[int] = []
    real = replay_module.run_replay

    async def spy(data, *args, **kwargs):
        seen.append(gc.get_freeze_count())
        return await real(data, *args, **kwargs)

    monkeypatch.setattr(replay_module, "run_replay", spy)
    assert gc.get_freeze_count() == 0
    assert replay_module.run_replay_cli(_cli_args(str(csv))) == 0
    assert seen and seen[0] > 3000  # every tick read is frozen, and what existed before
    assert gc.get_freeze_count() == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"type": "summary"')
    # a heap frozen before (an application's own freeze) is left as it was
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        assert replay_module.run_replay_cli(_cli_args(str(csv))) == 0
        # neither frozen again (the ticks read would add thousands) nor unfrozen by the
        # command; a few objects frozen with the suite's own state may die meanwhile (a
        # freed object leaves the frozen generation: 6-12 of ~890,000 did in the suite)
        assert before - 100 < seen[-1] <= before
        assert before - 100 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()


def test_no_collector_pass_of_the_cli_walks_the_rows_it_read(tmp_path, capsys) -> None:
    """The collector is paused from the load to the freeze: the load leaves its count at
    about one per row, and a pass started before the freeze would walk every row read."""
    import gc

    import pmgui.engine.replay as replay_module

    rows = 3000
    csv = tmp_path / "ticks.csv"
    csv.write_text("timestamp,price\n" + "".join(f"{1_700_000_000 + i},{100 + i % 7}\n"
                                                  for i in range(rows)))
    counts: list[int] = []

    def started(phase: str, info: dict) -> None:
        if phase == "start":
            counts.append(gc.get_count()[0])  # objects made since the last pass

    gc.callbacks.append(started)
    try:
        assert replay_module.run_replay_cli(_cli_args(str(csv))) == 0
    finally:
        gc.callbacks.remove(started)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"type": "summary"')
    assert max(counts, default=0) < rows, counts


def test_a_quiet_tick_of_a_replay_costs_six_calls_of_the_tick_path(monkeypatch) -> None:
    """Per quiet tick of a replay, the venue's and the engine's tick path (paper.py,
    core.py, marketdata.py, money.py) run six Python functions: the venue's `deliver`
    and `_on_tick`, the engine's `on_tick`, its market data's `on_tick`, `_screen_tick`
    (which takes the quiet tick itself) and the engine's clock. A valid float price is
    tested inline (no `valid_price` call), the symbol's candle version read from its dict
    (no `version` call). Counted over the second half of a run: the functions run on
    (nearly) every tick, not those of the candles."""
    import sys
    from collections import Counter

    from pmgui.bench.rules import quiet_path

    files = ("/pmgui/exchange/paper.py", "/pmgui/engine/core.py",
             "/pmgui/engine/marketdata.py", "/pmgui/domain/money.py")

    def calls(n: int) -> Counter:
        path = quiet_path(n, 5)
        data = PriceData("ticks", SYM, ticks=tuple(Tick(SYM, p, 1.7e9 + i)
                                                    for i, p in enumerate(path)))
        req = ReplayRequest(Side.LONG, path[0], 1.0, 1.0, sl=path[0] * 0.2,
                            tp=path[0] * 5, preset="manual", symbol=SYM)
        seen: Counter = Counter()

        def profile(frame, event, arg):  # type: ignore[no-untyped-def]
            if event == "call" and frame.f_code.co_filename.endswith(files):
                seen[frame.f_code.co_name] += 1

        sys.setprofile(profile)
        try:
            result = asyncio.run(run_replay(data, req))
        finally:
            sys.setprofile(None)
        assert result.summary["open_qty"] == 1.0  # open to the end: every tick a quiet one
        return seen

    extra = calls(4000) - calls(2000)  # the calls of 2000 more ticks
    per_tick = {name: n for name, n in extra.items() if n >= 1900}  # (not once per candle)
    assert sum(per_tick.values()) / 2000 < 6.5, per_tick


def test_a_candle_close_inside_the_band_is_not_evaluated_in_full(monkeypatch) -> None:
    """The first tick of a position after its symbol's candle close settles the band again
    with the new indicators (`EngineCore._settle_at_close`) instead of evaluating the rules
    in full: on a quiet path (the position stays inside its band) no tick after the opening
    ones is evaluated, though a candle closes every minute. The decisions are those of
    the reference path (the tests above)."""
    from pmgui.bench.rules import quiet_path
    from pmgui.engine.core import EngineCore

    real = EngineCore._on_position_tick
    evaluated: list[float] = []

    async def counted(self, rt, tick, sync_only=False):  # type: ignore[no-untyped-def]
        evaluated.append(tick.ts)
        await real(self, rt, tick, sync_only)

    monkeypatch.setattr(EngineCore, "_on_position_tick", counted)
    path = quiet_path(3000, 5)
    data = PriceData("ticks", SYM, ticks=tuple(Tick(SYM, p, 1.7e9 + i)
                                                for i, p in enumerate(path)))
    req = ReplayRequest(Side.LONG, path[0], 1.0, 1.0, sl=path[0] * 0.2, tp=path[0] * 5,
                        preset="manual", symbol=SYM)
    result = asyncio.run(run_replay(data, req))
    assert result.summary["open_qty"] == 1.0
    assert [ts for ts in evaluated if ts > 1.7e9 + 120] == []  # 47 closes after the first two


def _csv_data(tmp_path, data: PriceData) -> PriceData:
    """`data` as a tick file read back: a column at a time, so the feed hands the venue
    runs of ticks (`ReplayFeed.runs`) and the engine takes the quiet ones at once."""
    csv = tmp_path / "ticks.csv"
    csv.write_text("timestamp,price,volume\n" + "".join(
        f"{t.ts!r},{t.price!r},{(i % 5) * 0.25!r}\n" for i, t in enumerate(data.ticks)))
    read = load_price_csv(csv, SYM)
    assert read.columns is not None
    return read


def _counting_runs(monkeypatch) -> list[int]:
    """The sizes of the runs the engine took at once (declined ones are not counted)."""
    from pmgui.engine.core import EngineCore

    taken: list[int] = []
    real = EngineCore.on_tick_run

    def counted(self, ticks, low, high, volumes):  # type: ignore[no-untyped-def]
        ok = real(self, ticks, low, high, volumes)
        if ok:
            taken.append(len(ticks))
        return ok

    monkeypatch.setattr(EngineCore, "on_tick_run", counted)
    return taken


@pytest.mark.parametrize("preset,overrides", PRESETS)
@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_runs_of_a_tick_file_taken_at_once_equal_the_reference(tmp_path, monkeypatch, preset,
                                                                 overrides, side):
    """A tick file read a column at a time reaches the engine as runs (a candle's ticks
    after its first), each taken at once where every tick would be quiet: the actions
    (with their inputs) and the summary are the reference's, every tick evaluated."""
    walk = _walk(6000, seed=len(preset) * 7 + 1, mirror=side is Side.LONG)
    walk = PriceData("ticks", SYM, ticks=tuple(
        Tick(SYM, t.price, 1.7e9 + 1.0 * i) for i, t in enumerate(walk.ticks)))  # 60 a candle
    data = _csv_data(tmp_path, walk)
    req = _request(data, preset, overrides, side)
    taken = _counting_runs(monkeypatch)
    fast, slow = _both(data, req)
    assert len(fast.actions) >= 2  # opened and acted
    assert _rows(fast) == _rows(slow)
    assert fast.summary == slow.summary
    assert sum(taken) > 1000, taken  # the runs were taken, not all declined


def test_a_quiet_tick_file_is_taken_a_run_at_a_time(tmp_path, monkeypatch) -> None:
    """On a quiet path (the position inside its band to the end) every candle's ticks but
    its first are taken as one run; the loop's yields cut a run where they fall; the
    forming candle, the last price and the summary are those of the reference."""
    from pmgui.bench.rules import quiet_path

    path = quiet_path(3000, 5)
    data = _csv_data(tmp_path, PriceData("ticks", SYM, ticks=tuple(
        Tick(SYM, p, 1.7e9 + i) for i, p in enumerate(path))))
    req = ReplayRequest(Side.LONG, path[0], 1.0, 1.0, sl=path[0] * 0.2, tp=path[0] * 5,
                        preset="guardian", symbol=SYM)
    taken = _counting_runs(monkeypatch)
    fast, slow = _both(data, req)
    assert fast.summary["open_qty"] == 1.0
    assert _rows(fast) == _rows(slow)
    assert fast.summary == slow.summary
    # 50 candles of 60 ticks; the first two open and settle the position; the runs are cut
    # at the yields every 256 ticks
    assert 2800 < sum(taken) < 3000 - 48
    assert max(taken) == 59 and min(taken) >= 1


def test_progress_is_reported_through_runs(tmp_path, monkeypatch) -> None:
    """With a progress callback (a terminal) the runs are still taken at once, progress is
    reported about every 2,000 ticks in time order, and the result is the same."""
    from pmgui.bench.rules import quiet_path

    path = quiet_path(9000, 7)
    data = _csv_data(tmp_path, PriceData("ticks", SYM, ticks=tuple(
        Tick(SYM, p, 1.7e9 + i) for i, p in enumerate(path))))
    req = ReplayRequest(Side.LONG, path[0], 1.0, 1.0, sl=path[0] * 0.2, tp=path[0] * 5,
                        preset="manual", symbol=SYM)
    seen: list[float] = []
    taken = _counting_runs(monkeypatch)
    with_progress = asyncio.run(run_replay(data, req, progress=seen.append))
    assert sum(taken) > 8000
    assert 3 <= len(seen) <= 5 and seen == sorted(seen) and seen[-1] > 1.7e9 + 7000
    plain = asyncio.run(run_replay(data, req))
    assert _rows(with_progress) == _rows(plain) and with_progress.summary == plain.summary
