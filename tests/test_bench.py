"""The benchmark measures what it says: its workloads, counts and ratios (never timings)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import sys

import pytest

from pmgui.bench import __main__ as bench
from pmgui.bench.gui import Offered
from pmgui.bench.rules import run_rules
from pmgui.bench.storm import PricePath, StormResult, percentile, run_storm


def test_row_ratio_and_json_shape():
    r = bench.Row("x", 50.0, "ticks/s", 200.0, {"a": 1})
    d = r.as_dict()
    assert set(d) == {"name", "value", "unit", "baseline", "ratio", "params"}
    assert d["ratio"] == 0.25
    assert bench.Row("y", 1.0, "s", None).as_dict()["ratio"] is None
    assert bench.Row("z", float("nan"), "ms", 5.0).as_dict()["value"] is None
    json.dumps(d)


def test_percentile():
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_price_path_prices_name_their_tick():
    path = PricePath(["A", "B"], seed=1)
    seen = [path.next("A") for _ in range(1000)]
    assert len(set(seen)) == 1000  # unique within 1000 ticks: a shown price names its tick
    assert all(99.6 < p < 100.4 for p in seen)  # bounded: no preset's exit fires


def test_offered_lag_is_zero_for_the_newest_and_counts_from_the_next():
    o = Offered()
    o.add("A", 100.000001, 1.0)
    o.add("A", 100.010002, 2.0)
    assert o.lag("A", 100.010002, 5.0) == 0.0
    assert o.lag("A", 100.000001, 5.0) == 3.0  # behind since the newer price came at 2.0
    assert o.lag("A", 42.0, 5.0) is None


@pytest.mark.parametrize("preset", ["manual", "guardian", "active"])
def test_rules_bench_keeps_the_position_open_and_applies_actions(preset):
    run = run_rules(preset, 1500)
    run.check()
    assert run.evaluations == 1500 == run.open_evaluations
    if preset != "manual":
        assert run.actions > 0  # the rules act on this path, their actions are applied


@pytest.mark.parametrize("preset", ["manual", "guardian", "breakout", "active", "monitor"])
def test_rules_bench_band_path_decides_exactly_as_full_evaluation(preset):
    full = run_rules(preset, 2400, record=True)
    banded = run_rules(preset, 2400, bands=True, record=True)
    banded.check()
    assert banded.decisions == full.decisions  # same actions on the same ticks
    assert (banded.actions, banded.reopened) == (full.actions, full.reopened)
    assert banded.full_evaluations + banded.band_ticks == banded.evaluations == 2400
    assert full.full_evaluations == 2400 and full.band_ticks == 0
    assert banded.band_ticks > 0  # the bands do decide ticks on this path
    assert 0 < banded.lane_ticks < banded.full_evaluations  # and the trend lanes others
    assert full.lane_ticks == 0
    # a candle close settles the band of the position with the new indicators at the
    # close's tick: that tick is decided by it when inside (not evaluated in full)
    assert 0 < banded.close_band_ticks <= banded.band_ticks
    assert full.close_band_ticks == 0


def test_rules_bench_check_refuses_a_vanished_workload():
    run = run_rules("manual", 10)
    run.open_evaluations -= 1
    with pytest.raises(AssertionError, match="no open position"):
        run.check()


def test_storm_keeps_its_book_and_measures_probe_closes(tmp_path):
    res = asyncio.run(run_storm(8, 400.0, 1.0, probes=2, probe_every=0.1, workdir=tmp_path))
    res.check()
    assert res.open_before == res.open_after == 8 and not res.closed_main
    assert res.symbols == 4
    assert res.delivered > 0 and res.delivered_main > 0
    assert res.probes_sent > 0
    assert len(res.latencies) >= 1 and all(x >= 0 for x in res.latencies)
    assert res.cpu > 0 and res.offered >= res.delivered - 1
    # each acknowledged close is split into the wait for the engine and the engine's part
    acked = len(res.engine_parts)
    assert acked >= 1 and len(res.waits) == acked
    assert res.probes_sent >= acked
    for lat, wait, part in zip(res.latencies, res.waits, res.engine_parts, strict=False):
        assert wait >= 0 and part >= 0 and lat == pytest.approx(wait + part, abs=1e-6)
    # sampled at half time: its ticks and actions are a part of the run's
    assert res.half is not None
    cpu, ticks, actions = res.half
    assert 0 < ticks < res.delivered and 0 <= actions <= res.actions and 0 < cpu < res.cpu


def test_storm_counts_the_loop_stretches_the_feed_sees(tmp_path, monkeypatch):
    """A tick whose delivery holds the feed, and a task holding the loop while the feed
    waits for its next tick, are both counted as stretches (and nothing shorter than
    STRETCH_MIN is kept)."""
    import time as _time

    from pmgui.bench import storm as storm_mod
    from pmgui.engine.core import EngineCore

    on_tick, held, driving = EngineCore.on_tick, [], []

    async def slow_once(self, tick):  # one tick's engine work takes 150 ms
        if driving and not held and tick.symbol.startswith("S"):
            held.append(tick)
            _time.sleep(0.150)
        await on_tick(self, tick)

    monkeypatch.setattr(EngineCore, "on_tick", slow_once)
    drive = storm_mod._drive

    async def with_a_hog(core, *a, **k):  # a task beside the feed holds the loop 60 ms
        async def hog():
            await asyncio.sleep(0.3)
            _time.sleep(0.060)
        task = asyncio.create_task(hog())
        driving.append(True)
        await drive(core, *a, **k)
        await task

    monkeypatch.setattr(storm_mod, "_drive", with_a_hog)
    res = asyncio.run(run_storm(8, 400.0, 0.8, probes=2, probe_every=0.1, workdir=tmp_path))
    assert held
    assert all(s > storm_mod.STRETCH_MIN for s in res.stretches)
    # (long enough to stand out of a busy test machine's own stretches). The hog can start
    # while the feed sleeps towards its next tick, up to one tick interval (2.5 ms) before it
    # was due, so the lateness the feed sees is the hog's 60 ms less up to that (a bound at
    # the hog's full length, 40 ms then, failed in both runs of a CI pair).
    assert any(s >= 0.150 for s in res.stretches)  # the slow tick's delivery
    assert any(0.050 <= s < 0.150 for s in res.stretches)  # the feed woke late
    summary = res.stretch_summary()
    assert summary["stretches_over_10ms"] >= 2 and summary["stretch_max_ms"] >= 150.0


def test_stretch_summary_counts_by_threshold():
    res = StormResult(10, 5, 100.0, 1.0, stretches=[0.0015, 0.004, 0.0125, 0.002])
    assert res.stretch_summary() == {"stretches_over_1ms": 4, "stretches_over_3ms": 2,
                                     "stretches_over_10ms": 1,
                                     "stretches_over_3ms_total_ms": 16.5,
                                     "stretch_max_ms": 12.5}
    assert StormResult(10, 5, 100.0, 1.0).stretch_summary()["stretch_max_ms"] == 0.0


def test_storm_check_refuses_closed_positions():
    res = StormResult(10, 5, 100.0, 1.0, offered=10, delivered=10, delivered_main=10,
                      open_before=10, open_after=9, closed_main=["p1"])
    with pytest.raises(AssertionError, match="workload vanished"):
        res.check()
    ok = StormResult(10, 5, 100.0, 1.0, offered=10, delivered=10, delivered_main=10,
                     open_before=10, open_after=10)
    ok.check()
    assert ok.backlog == 0 and ok.cpu_per_tick == 0.0


def test_cli_runs_a_section_as_json(capsys):
    assert bench.main(["--quick", "--json", "--only", "journal"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["results"]
    assert row["name"] == "journal.actions" and row["params"]["rows"] > 0
    assert row["baseline"] and row["ratio"] == pytest.approx(row["value"] / row["baseline"],
                                                             rel=1e-3)
    m = out["machine"]
    assert m["python"] == platform.python_version()
    # the interpreter itself (a venv's python is a link to it) and how it was built
    assert os.path.samefile(m["python_executable"],
                            getattr(sys, "_base_executable", sys.executable))
    assert not os.path.islink(m["python_executable"])
    assert platform.python_compiler() in m["python_build"]
    assert m["python_configure"] == bench.python_configure()


def test_the_machine_record_names_the_interpreter_build_options():
    # as CONFIG_ARGS records them: quoted, some with a value
    assert bench.python_configure(
        "'--prefix=/root/.pyenv/versions/3.11.7' '--enable-shared' "
        "'LDFLAGS=-L/x -Wl,-rpath,/x'") == ["--enable-shared"]
    assert bench.python_configure(
        "'--enable-optimizations' '--with-lto=full' '--with-computed-gotos'") == [
        "--enable-optimizations", "--with-lto"]
    assert bench.python_configure("'--without-ensurepip' 'CFLAGS=--enable-shared-x'") == []
    # an option's name inside another's quoted value is not that option
    assert bench.python_configure("'CFLAGS=-O2 --enable-shared' '--with-lto'") == [
        "--with-lto"]
    assert bench.python_configure("'--enable-shared") == []  # unbalanced: nothing told


def test_gui_check_refuses_a_window_that_did_not_show_the_storm():
    from pmgui.bench.gui import GuiResult

    def shown(**kw) -> GuiResult:
        r = GuiResult("w", rows=500, delivered=1000, updates=5000, actions=300, paints=20,
                      samples=50)
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    shown().check()
    shown(actions=None).check()  # a baseline that shows no actions
    shown(actions=None, samples=0).check()  # … and still shows only pre-storm prices
    for kw, why in (({"updates": 10}, "position updates"), ({"actions": 0}, "rule action"),
                    ({"paints": 0}, "never painted"), ({"samples": 0}, "sampled"),
                    ({"delivered": 0}, "no tick")):
        with pytest.raises(AssertionError, match=why):
            shown(**kw).check()


def test_gui_cpu_per_tick_is_per_tick_the_view_handled():
    """A view that applies every event and fell behind (vn.py's monitor: its events queue
    up) is charged per tick whose events it applied, not per tick delivered to the engine;
    a view that kept up, or whose events are not counted (pmgui's coalescing window), per
    tick delivered."""
    from pmgui.bench.gui import GuiResult

    behind = GuiResult("b", rows=500, delivered=15_000, updates=9_000, events=30_000,
                       gui_cpu=9.0)
    assert behind.handled == pytest.approx(4_500)
    assert behind.cpu_per_tick == pytest.approx(9.0 / 4_500)
    assert behind.cpu_per_delivered_tick == pytest.approx(9.0 / 15_000)
    kept_up = GuiResult("b", rows=500, delivered=8_000, updates=16_000, events=16_000,
                        gui_cpu=9.0)
    assert kept_up.handled == 8_000 and kept_up.cpu_per_tick == pytest.approx(9.0 / 8_000)
    # events applied in the window that were sent just before it: never more than delivered
    ahead = GuiResult("b", rows=500, delivered=8_000, updates=16_010, events=16_000,
                      gui_cpu=9.0)
    assert ahead.handled == 8_000
    ours = GuiResult("w", rows=500, delivered=20_000, updates=30_000, gui_cpu=3.0)
    assert ours.events is None and ours.cpu_per_tick == pytest.approx(3.0 / 20_000)
    assert GuiResult("w", rows=500).cpu_per_tick == math.inf  # nothing delivered


def test_gui_stalls_less_the_hosts_share_are_the_gaps_less_the_cpu_waits():
    """On a shared machine most of a long heartbeat gap can be the GUI thread waiting for a
    CPU another process has: the bench reports the gaps (the rows) and, beside them, the gaps
    less those waits (the process's own share), never instead of them."""
    import sys

    from pmgui.bench.gui import GuiResult, cpu_wait

    r = GuiResult("w", rows=1, gaps=[0.005, 0.200, 0.060, 0.030],
                  waits=[0.0, 0.170, 0.001, 0.030])
    assert r.own_gaps == pytest.approx([0.005, 0.030, 0.059, 0.0])
    assert r.max_stall == 0.200 and r.stalls_over(0.05) == 2  # the rows: unchanged
    assert r.host_share() == {"stall_max_less_cpu_wait_ms": 59.0,
                              "stalls_over_50ms_less_cpu_wait": 1,
                              "longest_stall_cpu_wait_ms": 170.0}
    assert GuiResult("w", rows=1, gaps=[0.1]).host_share() == {}  # waits unknown
    if sys.platform.startswith("linux"):
        a = cpu_wait()
        b = cpu_wait()
        assert a is not None and b is not None and 0.0 <= a <= b


def test_gui_cpu_share_tells_the_longest_gap_apart():
    """Beside the gaps, the GUI thread's own CPU in each: in the longest gap, the most in any
    gap, and what of the longest gap was neither that CPU nor a wait for a CPU."""
    from pmgui.bench.gui import GuiResult

    r = GuiResult("w", rows=1, gaps=[0.005, 0.070, 0.040], waits=[0.0, 0.004, 0.0],
                  cpus=[0.001, 0.020, 0.030])
    assert r.gui_cpu_share() == {"stall_max_gui_cpu_ms": 20.0,
                                 "gui_cpu_max_between_beats_ms": 30.0,
                                 "stall_max_lock_or_blocked_ms": 46.0}
    assert r.max_stall == 0.070  # the row: unchanged
    assert GuiResult("w", rows=1, gaps=[0.1]).gui_cpu_share() == {}  # unknown


def test_gui_baseline_is_vnpy_position_monitor(qtbot):
    """The baseline does what vn.py's PositionMonitor does per event: one queued signal, the
    table re-sorted after each event, only the `update` columns set again, PnL coloured by
    sign — and the reduced reference sets every cell without sorting."""
    from pmgui.bench.gui import _VnpyMonitor
    from pmgui.engine.outbox import Outbox
    from tests.ui_doubles import position, snapshot

    box = Outbox()
    mon = _VnpyMonitor(box)
    qtbot.addWidget(mon)
    a, b = position("a", symbol="ZZZ/USDT:USDT"), position("b", symbol="AAA/USDT:USDT")
    for ev in (snapshot(a, 41_000.0), snapshot(b, 39_000.0)):
        box.publish(ev)
    qtbot.waitUntil(lambda: mon.applied == 2)
    assert mon.emitted == 2  # the events sent to it, counted where they are sent
    assert mon.isSortingEnabled()
    assert [mon.symbol_at(r) for r in range(2)] == ["AAA/USDT:USDT", "ZZZ/USDT:USDT"]
    box.publish(snapshot(a, 41_500.0))
    qtbot.waitUntil(lambda: mon.applied == 3)
    assert mon.mark_text(1) == "41500.0" and mon.mark_text(0) == "39000.0"
    assert "symbol" not in mon.cells["a"] and "mark" in mon.cells["a"]
    pnl_b = mon.cells["b"]["pnl"]
    assert pnl_b.text().startswith("-") and pnl_b.foreground().color().name() == "#008000"
    mon.detach()

    box2 = Outbox()
    reduced = _VnpyMonitor(box2, faithful=False)
    qtbot.addWidget(reduced)
    box2.publish(snapshot(a, 41_000.0))
    qtbot.waitUntil(lambda: reduced.applied == 1)
    assert not reduced.isSortingEnabled() and "symbol" in reduced.cells["a"]
    reduced.detach()


@pytest.mark.parametrize("preset", ["manual", "guardian"])
def test_replay_marginal_replays_n_and_2n_ticks_on_an_open_position(preset):
    from pmgui.bench.rules import marginal_rate, replay_marginal

    m = replay_marginal(preset, 300, pairs=3)
    # three real pairs of the same path: n and 2n ticks, the position still open at the end
    # of each (replay_cpu refuses a closed one); the figure is the one of its own runs
    assert (m.preset, m.n) == (preset, 300)
    assert len(m.cpu_n) == len(m.cpu_2n) == 3
    assert all(c > 0 for c in m.cpu_n + m.cpu_2n)
    assert m.per_s == marginal_rate(300, m.cpu_n, m.cpu_2n) > 0
    assert len(m.pair_rates) == 3


@pytest.mark.parametrize("preset", ["manual", "guardian"])
def test_a_replay_run_reads_the_csv_and_writes_the_json_inside_its_clock(preset):
    """The replay rows time the command's own path: every tick of the file read and
    replayed (the summary's time is the last row's), every action and the summary written as
    JSON lines — a run that left the file or the output out would not count them."""
    from pmgui.bench.rules import REPLAY_MEASURED, ReplayMarginal, replay_cpu

    run = replay_cpu(preset, 400)
    assert run.ticks_read == run.ticks == 400
    assert run.lines_written == run.actions + 1 >= 2  # the open, …, the summary
    assert run.cpu > 0
    row = bench.replay_row(ReplayMarginal(preset, 400, (run.cpu,), (run.cpu * 2,),
                                         run.actions), 1.0).as_dict()
    assert row["params"]["measured"] == REPLAY_MEASURED


def test_marginal_rate_is_n_over_the_least_cpu_of_each_size():
    from pmgui.bench.rules import ReplayMarginal, marginal_rate

    # the machine only adds CPU time to a run: the least of each size, not one pair's
    # difference (here the pairs give 100/0.5, 100/1.0, 100/0.3)
    assert marginal_rate(100, [1.0, 0.6, 1.2], [1.5, 1.6, 1.5]) == pytest.approx(100 / 0.9)
    assert marginal_rate(100, [1.0], [0.9]) == math.inf  # no extra cost: not a figure
    m = ReplayMarginal("manual", 100, (1.0, 0.6, 1.2), (1.5, 1.6, 1.5), 0)
    assert m.pair_rates == pytest.approx((200.0, 100.0, 100 / 0.3))
    assert m.per_s == pytest.approx(100 / 0.9)


def test_storm_order_goes_there_and_back():
    assert bench.storm_order((50, 500, 2000), 1) == [50, 500, 2000]
    assert bench.storm_order((50, 500, 2000), 2) == [50, 500, 2000, 2000, 500, 50]
    # every size runs once per pass: the same workload in each
    assert sorted(bench.storm_order((50, 500), 3)) == [50, 50, 50, 500, 500, 500]


def test_storm_configs_add_the_largest_book_with_the_smallest_storms_symbols():
    assert bench.storm_configs((50, 500, 2000)) == [(50, None), (500, None), (2000, None),
                                                    (2000, 25)]
    # in the order beside the largest size, in both passes
    assert bench.storm_order(tuple(bench.storm_configs((50, 2000))), 2) == [
        (50, None), (2000, None), (2000, 25), (2000, 25), (2000, None), (50, None)]
    assert bench.storm_configs((50,)) == [(50, None)]


def test_storm_with_active_symbols_ticks_only_those_and_keeps_the_whole_book(tmp_path,
                                                                             monkeypatch):
    import pmgui.bench.storm as storm
    from pmgui.exchange.paper import PaperExchange

    seen: set[str] = set()
    driving: list[bool] = []  # the ticks of the run, not the book's opening prices
    deliver, drive = PaperExchange.deliver, storm._drive

    async def recorded(self, tick, sink):
        if driving:
            seen.add(tick.symbol)
        return await deliver(self, tick, sink)

    async def driven(*args, **kwargs):
        driving.append(True)
        return await drive(*args, **kwargs)

    monkeypatch.setattr(PaperExchange, "deliver", recorded)
    monkeypatch.setattr(storm, "_drive", driven)
    res = asyncio.run(run_storm(8, 400.0, 0.5, probes=1, probe_every=0.1, workdir=tmp_path,
                                active=1))
    res.check()
    assert res.active_symbols == 1 and res.symbols == 4
    assert res.open_before == res.open_after == 8 and res.delivered_main > 0
    assert {s for s in seen if s.startswith("S")} == {"S0000/USDT:USDT"}


def test_storm_section_reports_the_book_alone_against_the_smallest_storm(monkeypatch):
    """`storm[2000@25]`: its CPU row is the mean of its passes over the smallest storm's."""
    from dataclasses import replace

    import pmgui.bench.storm as storm

    cpu = {(50, None): [1e-4, 1e-4], (500, None): [1.2e-4] * 2, (2000, None): [1.5e-4] * 2,
           (2000, 25): [1.0e-4, 1.2e-4]}
    runs: list[tuple[int, int | None]] = []

    async def fake(n, rate, duration, *, active=None):
        runs.append((n, active))
        res = StormResult(n, n // 2, rate, duration, active_symbols=active or n // 2)
        res.open_before = res.open_after = n
        res.delivered = res.delivered_main = res.offered = 1000
        res.cpu = cpu[(n, active)][sum(1 for r in runs if r == (n, active)) - 1] * 1000
        res.latencies = [0.001]
        return res

    monkeypatch.setattr(storm, "run_storm", fake)
    rows = {r.name: r for r in bench.bench_storm(replace(bench.Plan.make(True),
                                                         storm_passes=2))}
    assert runs == bench.storm_order(tuple(bench.storm_configs((50, 500, 2000))), 2)
    book = rows["storm[2000@25].cpu_per_tick"]
    assert book.value == pytest.approx(110.0) and book.baseline == pytest.approx(100.0)
    assert book.params["symbols_ticking"] == 25 and book.params["positions"] == 2000
    assert book.params["passes_us"] == [100.0, 120.0]
    assert rows["storm[2000].cpu_per_tick"].ratio == pytest.approx(1.5)
    assert not any(n.startswith("storm[2000@25].") and not n.endswith("cpu_per_tick")
                   for n in rows)


def test_storm_cpu_row_is_the_mean_of_the_passes():
    res = StormResult(50, 25, 2000.0, 1.0, exchange_stops=True)
    res.delivered, res.cpu, res.latencies = 100, 0.01, [0.001, 0.002]
    rows = {r.name: r for r in bench.storm_rows(res, "storm[50]", 100.0, [1e-4, 3e-4])}
    cpu = rows["storm[50].cpu_per_tick"]
    assert cpu.value == pytest.approx(200.0)
    assert cpu.params["passes_us"] == [100.0, 300.0]
    assert cpu.ratio == pytest.approx(2.0)
    # one pass: the run's own CPU per tick
    one = {r.name: r for r in bench.storm_rows(res, "storm[50]", None)}
    assert one["storm[50].cpu_per_tick"].value == pytest.approx(res.cpu_per_tick * 1e6)


def test_storm_cpu_row_splits_the_run_at_half_time():
    """The first and the second half of the reported pass: CPU and rule actions per tick of
    each, from the half-time sample (none without one)."""
    res = StormResult(50, 25, 2000.0, 1.0, exchange_stops=True)
    res.delivered, res.cpu, res.actions, res.latencies = 1000, 0.3, 500, [0.001]
    assert res.halves() is None
    rows = {r.name: r for r in bench.storm_rows(res, "storm[50]", None)}
    assert "halves_us" not in rows["storm[50].cpu_per_tick"].params
    res.half = (0.2, 400, 440)  # 400 ticks, 0.2 s, 440 actions by half time
    (cpu1, act1), (cpu2, act2) = res.halves()
    assert cpu1 == pytest.approx(0.2 / 400) and act1 == pytest.approx(1.1)
    assert cpu2 == pytest.approx(0.1 / 600) and act2 == pytest.approx(60 / 600)
    cpu = {r.name: r for r in bench.storm_rows(res, "storm[50]", None)}[
        "storm[50].cpu_per_tick"].params
    assert cpu["halves_us"] == [500.0, 166.7]
    assert cpu["halves_actions_per_tick"] == [1.1, 0.1]
    res.half = (0.3, 1000, 500)  # sampled with every tick already in: no second half
    assert res.halves() is None


def test_a_replay_pair_without_a_positive_difference_is_null_not_a_crash():
    """`--quick` replays few ticks: on a busy machine a 2n-tick run can take no more CPU than
    its n-tick run. That pair has no figure (null in the JSON); the row still reports."""
    from pmgui.bench.__main__ import replay_row
    from pmgui.bench.rules import ReplayMarginal

    m = ReplayMarginal("manual", 1000, cpu_n=(0.010, 0.012), cpu_2n=(0.009, 0.020),
                       actions=1)
    d = replay_row(m, 2e5).as_dict()
    json.dumps(d, allow_nan=False)
    assert d["params"]["pairs_ticks_per_s"] == [None, 125000.0]
    assert d["value"] is None  # least of 2n (0.009) <= least of n (0.010): no figure either
    assert d["name"] == "replay[manual]" and d["params"]["ticks"] == [1000, 2000]


def test_rules_rows_are_the_least_cpu_of_runs_interleaved_over_the_presets(monkeypatch):
    """Each preset and mode runs RULES_ROUNDS times, every round running all of them (a slow
    spell of the machine touches every preset alike), and the row is the run of least CPU
    time, every run's figure beside it."""
    from dataclasses import replace

    from pmgui.bench import rules

    order: list[tuple[str, bool, bool]] = []
    real = rules.run_rules

    def spy(preset: str, n: int, **kw):
        order.append((preset, kw.get("bands", False), kw.get("recompute", False)))
        return real(preset, n, **kw)

    monkeypatch.setattr(rules, "run_rules", spy)
    rows = {r.name: r for r in bench.bench_rules(replace(bench.Plan.make(True), rules_n=400,
                                                         rules_base_n=100))}
    one_round = [(p, b, False) for p in bench.PRESETS for b in (True, False)]
    assert order[:len(one_round) * bench.RULES_ROUNDS] == one_round * bench.RULES_ROUNDS
    for p in bench.PRESETS:
        for name in (f"rules[{p}]", f"rules_full[{p}]"):
            runs = rows[name].params["runs_per_s"]
            assert len(runs) == bench.RULES_ROUNDS
            assert rows[name].value == pytest.approx(max(runs), rel=1e-5)
            assert min(runs) <= rows[name].params["median_per_s"] <= max(runs)


def test_a_replay_summary_counts_only_a_whole_file_replayed_with_the_position_open():
    from pmgui.bench.rules import REPLAY_T0, replayed_summary

    ok = {"type": "summary", "open_qty": 1.0, "ts": REPLAY_T0 + 9.0}
    assert replayed_summary("r", 10, 0, [{"type": "action"}, ok], "") is ok
    with pytest.raises(AssertionError, match="r: 8 of 10 ticks replayed"):
        replayed_summary("r", 10, 0, [{**ok, "ts": REPLAY_T0 + 7.0}], "")
    with pytest.raises(AssertionError, match="workload vanished"):
        replayed_summary("r", 10, 0, [{**ok, "open_qty": 0.0}], "")
    with pytest.raises(AssertionError, match="rc 2.*no such file"):
        replayed_summary("r", 10, 2, [ok], "pmgui: error: no such file")
