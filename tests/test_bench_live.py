"""The live storm bench (`pmgui.bench.live`) measures what it says: a real pmgui process on the
ccxt path took the venue's ticks, kept its book, and booked the probes' exchange-stop closes.
Counts and workload only, never timings."""

from __future__ import annotations

import pytest

from pmgui.bench import __main__ as bench
from pmgui.bench import live


def test_live_section_tiny_runs_the_workload_and_reports_rows_beside_the_paper_storm(
        tmp_path, monkeypatch):
    """Two tiny live storms through the section: each kept its book and took the venue's
    ticks, the probe's stop rested on the venue, was crossed there and the engine booked the
    close; the rows stand beside the paper storm of the same size. (One test, not two: each
    live storm starts a real pmgui and a venue process, the costliest set-up of the suite.)"""
    runs: list[live.LiveResult] = []
    real_run_live = live.run_live

    def recorded(*args, **kw):
        runs.append(real_run_live(*args, **kw))
        return runs[-1]

    monkeypatch.setattr(live, "run_live", recorded)
    plan = bench.Plan.make(quick=True)
    rows = {r.name: r for r in live.bench_live(plan, sizes=(4, 6), duration=1.5, rate=300.0,
                                               probes=1, probe_every=0.25, workdir=tmp_path,
                                               startup_timeout=90)}
    assert [r.positions for r in runs] == [4, 6]
    for res in runs:
        res.check()
        assert res.symbols == res.positions // 2
        assert res.open_before == res.open_after == res.positions
        assert res.protected_before == res.positions
        assert res.pushed > 0 and res.taken > 0
        assert res.taken_after >= res.taken
        assert res.cpu > 0 and res.cpu_per_tick > 0
        # the probe's stop rested on the venue, was crossed there, the engine booked closes
        assert res.crossings >= 1 and 1 <= len(res.latencies) <= res.crossings
        assert all(x >= 0 for x in res.latencies)
    small, big = "live[4]", "live[6]"
    assert {f"{small}.ticks_per_s", f"{small}.backlog", f"{small}.cpu_per_tick",
            f"{big}.cpu_per_tick", f"{big}.cpu_per_tick_vs_small"} <= set(rows)
    for p in (small, big):
        assert rows[f"{p}.ticks_per_s"].baseline == 300.0
        assert rows[f"{p}.ticks_per_s"].params["taken"] > 0
        assert rows[f"{p}.ticks_per_s"].params["open_after"] == rows[
            f"{p}.ticks_per_s"].params["positions"]
        cpu = rows[f"{p}.cpu_per_tick"]
        assert cpu.value > 0 and cpu.baseline and cpu.baseline > 0  # the paper storm's
        assert cpu.ratio == pytest.approx(cpu.value / cpu.baseline)
    assert rows[f"{big}.cpu_per_tick_vs_small"].baseline == pytest.approx(
        rows[f"{small}.cpu_per_tick"].value)


def test_live_check_refuses_a_vanished_workload():
    ok = live.LiveResult(10, 5, 100.0, 1.0, pushed=50, taken=40, taken_after=45,
                         open_before=10, protected_before=10, open_after=10)
    ok.check()
    assert ok.backlog == 5 and ok.coalesced == 5
    for kw, why in (({"open_after": 9}, "workload vanished"),
                    ({"protected_before": 9}, "protected"),
                    ({"taken": 0}, "no tick")):
        bad = live.LiveResult(10, 5, 100.0, 1.0, pushed=50, taken=40, taken_after=45,
                              open_before=10, protected_before=10, open_after=10)
        for k, v in kw.items():
            setattr(bad, k, v)
        with pytest.raises(AssertionError, match=why):
            bad.check()


def test_live_needs_the_source_checkout(monkeypatch):
    monkeypatch.setattr(live, "venue_available", lambda: False)
    with pytest.raises(RuntimeError, match="source checkout"):
        live.run_live(4, 100.0, 1.0)


def test_live_is_opt_in(monkeypatch):
    ran = []
    monkeypatch.setitem(bench.SECTIONS, "live", lambda plan: ran.append(plan) or [])
    for name in [n for n in bench.SECTIONS if n != "live"]:
        monkeypatch.setitem(bench.SECTIONS, name, lambda plan: [])
    assert bench.main(["--quick", "--json"]) == 0
    assert ran == []  # not part of the default run
    assert bench.main(["--quick", "--json", "--only", "live"]) == 0
    assert len(ran) == 1
