"""`python -m pmgui.bench [--json] [--quick] [--only NAME...]`: how fast pmgui is, measured on
the real path, each figure beside a baseline measured in the same run.

Rows: `name, value, unit, baseline, ratio, params` (ratio = value / baseline). What each
measures, and its baseline:

* `rules[preset]`: ticks decided per CPU second for one position kept open on a volatile
  path, actions applied, as the engine runs the policy: a tick inside the position's quiet
  band (`pmgui.rules.bands`) is decided by the band, a tick in its trend lane (only observe,
  trailing, momentum loss and the stop loss can act: `BandGate.lane`) runs observe +
  `evaluate_trend`, any other runs observe + evaluate; both recompute the band
  (`band_ticks` / `evaluated_ticks` / `lane_ticks`, a part of the evaluated ones, say how
  many of each). The run must
  decide exactly as `rules_full[preset]`, the same path with observe + evaluate on every
  tick. Baseline of both: evaluate on every tick with the indicators recomputed from the
  window on every tick.
* `storm.*`: the real engine + paper venue in real time + SQLite on disk, `positions` on
  positions/2 symbols (long and short each), `rate` ticks/s offered for `duration` s, stops on
  the exchange: ticks/s sustained (baseline: offered), backlog, tick → closing order
  acknowledged p50/p99/max (probe positions whose exchange stop is crossed, 10 a second, so
  p99 is not the maximum; each split into the wait for the engine and its own part, in the
  row's params; baseline: the 5 ms target), CPU per tick (baseline: the same at the smallest
  book). The full run takes the sizes there and back (50, 500, 2000, 2000, 500, 50): CPU per
  tick is the mean of a size's two passes (both in the row's params), the latency rows are the
  pass with the worse p99. That pass's CPU and rule actions per tick in each half of its time
  are in the CPU row's params (`halves_us`, `halves_actions_per_tick`): each symbol's walk
  starts with the storm, and a young walk makes new best prices (trailing moves) often — more
  so the more symbols share the 2,000 ticks a second. `storm[2000@25].cpu_per_tick` sets the
  two apart: the 2,000-position book with the ticks on 25 of its symbols (each as often as in
  the 50-position storm; the other 1,975 positions stand open), beside the largest size in
  the order; against the smallest storm's CPU per tick it is what the book's size alone
  costs a tick.
* `gui.*`: the real main window offscreen, 500 rows, fed by the engine during the storm: GUI
  CPU per tick, longest stall of a 5 ms heartbeat, displayed price lag p99; baseline: vn.py's
  PositionMonitor mechanics (QTableWidget, a queued signal per event, re-sorted after each
  event as vn.py's `sorting = True` monitors are) on the same storm; `[reduced]` rows compare
  with the cheaper reduction used before (plain items, no sorting). CPU per tick is per tick
  handled: a monitor that applies every event and falls behind (vn.py's, at 2,000 ticks/s)
  handled the delivered ticks in the share of their events it applied (`GuiResult.handled`;
  params `baseline_events`, `baseline_handled_ticks`, and the figure per delivered tick).
* `memory.*`: engine bytes per position (tracemalloc, marginal from 50 to 500, warm-ups
  done; baseline: the Position values alone) — the position's own state, then with its
  symbol's candles and indicator sets (`_with_market_data`), then with the paper venue's
  book — and resident MB at 500 positions (baseline: the same process before).
* `journal.actions`: actions journaled per s on disk (baseline: bare sqlite3, same sync).
* `replay[preset]`: ticks per CPU second of `pmgui replay --json` on a tick CSV (its command
  path: the file read, the replay, the JSON lines written), start-up removed by marginal cost
  (n / (least CPU of 2n ticks − least CPU of n) over 5 interleaved pairs; every run and each
  pair's own figure in the params; baseline: the rules alone on the same path).
* `flat.50`: seconds to flat 50 positions with CloseAll (baseline: one by one).
* `startup.first_paint`: spawn → the main window's first frame painted; `startup.ready`:
  spawn → the window shows its chart and positions (baseline: a bare PySide6 window);
  `startup.replay`: spawn → exit of `pmgui replay --json` on a 1,000-tick file, what a
  command run from outside pays besides its ticks (baseline: a bare interpreter).

Timings are never asserted in tests; the workload each figure claims is asserted here (an
engine storm whose positions closed raises instead of reporting a number).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pmgui.bench.gui import GuiResult
    from pmgui.bench.rules import ReplayMarginal, RulesRun

PRESETS = ("manual", "guardian", "breakout", "active", "monitor")
TARGETS = {"storm.ticks_per_s": 2000.0, "storm.close_ack_p99": 5.0, "gui.stall_max": 50.0,
           "gui.price_lag_p99": 100.0, "rules[guardian]": 100_000.0,
           "replay[manual]": 100_000.0, "memory.bytes_per_position": 4096.0,
           "startup.first_paint": 1.5}


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: float | None
    params: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or not math.isfinite(self.value):
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict:
        r = self.ratio
        return {"name": self.name, "value": _clean(self.value), "unit": self.unit,
                "baseline": _clean(self.baseline), "ratio": _clean(r),
                "params": self.params}


def _clean(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


@dataclass(frozen=True)
class Plan:
    rules_n: int
    rules_base_n: int
    storm_s: float
    storm_sizes: tuple[int, ...]
    gui_s: float
    # ticks of the replay rows' shorter run: since they time the command's own path, each
    # run's start-up (store, venue, engine: ~0.1-0.2 s) was half of a 20,000-tick run and
    # the marginal figure swung 71k-546k/s under load; at 50,000 it is a fifth. `--quick`'s
    # 10,000: at 1,500 the marginal CPU (~7 ms) was below the runs' spread on a busy host,
    # and one quick run reported 2.16M ticks/s for `manual` (2n's least run 1 ms above n's)
    replay_n: int
    journal_s: float
    paint_runs: int
    storm_passes: int = 1

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(3000, 600, 3.0, (50, 500, 2000), 3.0, 10000, 0.5, 3)
        return cls(20000, 2000, 20.0, (50, 500, 2000), 10.0, 50000, 2.0, 7, 2)


# ------------------------------------------------------------------------------- sections

RULES_ROUNDS = 5  # runs of each preset and mode; the least CPU time is reported


def rules_runs(n: int, rounds: int = RULES_ROUNDS) -> dict[tuple[str, bool], list[RulesRun]]:
    """Per (preset, quiet bands), `rounds` runs of `n` ticks, interleaved: each round runs
    every preset in both modes, so a slow spell of the machine touches them all alike.

    The workload of each run is the same (a fixed path, actions applied), so its CPU time
    differs only by what the machine adds: other processes slow a run (shared caches and
    cores, the host's frequency) and never speed it up. Two full runs of the same code gave
    `monitor` 308k and 433k/s and `active` 118k and 70k/s from the median of three runs in
    a row; the least of interleaved runs is the replay rows' estimator too (`marginal_rate`)."""
    from pmgui.bench.rules import run_rules

    runs: dict[tuple[str, bool], list[RulesRun]] = {}
    for _ in range(max(1, rounds)):
        for preset in PRESETS:
            for bands in (True, False):
                run = run_rules(preset, n, bands=bands)
                run.check()
                runs.setdefault((preset, bands), []).append(run)
    return runs


def least_cpu(runs: list[RulesRun]) -> RulesRun:
    """The run of least CPU time (see `rules_runs`)."""
    return min(runs, key=lambda r: r.cpu)


def bench_rules(plan: Plan) -> list[Row]:
    from pmgui.bench.rules import run_rules

    rows = []
    runs = rules_runs(plan.rules_n)
    for preset in PRESETS:
        ours, full = least_cpu(runs[preset, True]), least_cpu(runs[preset, False])
        base = run_rules(preset, plan.rules_base_n, recompute=True)
        base.check()
        if (ours.actions, ours.reopened) != (full.actions, full.reopened):
            raise AssertionError(f"rules[{preset}]: the band path decided differently")
        common = {"ticks": ours.evaluations, "actions": ours.actions,
                  "reopened": ours.reopened, "baseline": "indicators recomputed per tick"}
        rows.append(Row(f"rules[{preset}]", ours.per_s, "evals/s (CPU)", base.per_s,
                        {**common, "mode": "quiet bands (as the engine)",
                         "band_ticks": ours.band_ticks,
                         "evaluated_ticks": ours.full_evaluations,
                         "lane_ticks": ours.lane_ticks,
                         **_spread(runs[preset, True])}))
        rows.append(Row(f"rules_full[{preset}]", full.per_s, "evals/s (CPU)", base.per_s,
                        {**common, "mode": "observe + evaluate on every tick",
                         "evaluated_ticks": full.full_evaluations,
                         **_spread(runs[preset, False])}))
    return rows


def _spread(runs: list[RulesRun]) -> dict[str, object]:
    """Every run's figure in the order run, and their median: the spread the least comes
    from."""
    rates = [r.per_s for r in runs]
    return {"estimator": f"least CPU of {len(runs)} interleaved runs",
            "runs_per_s": [_clean(v) for v in rates],
            "median_per_s": _clean(statistics.median(rates))}


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1e3, 3)


def storm_rows(res, prefix: str, cpu_base: float | None,
               cpu_runs: list[float] | None = None) -> list[Row]:
    """The rows of one storm size. With `cpu_runs` (CPU s per tick of each pass of this size)
    the CPU row is their mean; the other rows come from `res`, one of those passes."""
    from pmgui.bench.storm import percentile

    p = {"positions": res.positions, "symbols": res.symbols, "rate": res.rate,
         "duration_s": round(res.wall, 2), "delivered": res.delivered,
         "exchange_stops": res.exchange_stops, "rule_actions": res.actions,
         "open_after": res.open_after}
    lat = {**p, "probes": res.probes_sent, "probes_unacked": res.probes_censored,
           "probes_skipped": res.probes_skipped, "acked": len(res.engine_parts),
           "wait_p50_ms": _ms(percentile(res.waits, 50)),
           "wait_p99_ms": _ms(percentile(res.waits, 99)),
           "engine_p50_ms": _ms(percentile(res.engine_parts, 50)),
           "engine_p99_ms": _ms(percentile(res.engine_parts, 99)),
           **res.stretch_summary(),
           "baseline": "target 5 ms"}
    runs = cpu_runs if cpu_runs else [res.cpu_per_tick]
    cpu = {**p, "baseline": "CPU per tick at the smallest book" if cpu_base else "none",
           "passes_us": [round(c * 1e6, 1) for c in runs]}
    halves = res.halves()
    if halves is not None:  # where the CPU went: the young walks' moves are the first half's
        (cpu1, act1), (cpu2, act2) = halves
        cpu["halves_us"] = [round(cpu1 * 1e6, 1), round(cpu2 * 1e6, 1)]
        cpu["halves_actions_per_tick"] = [round(act1, 4), round(act2, 4)]
    return [
        Row(f"{prefix}.ticks_per_s", res.ticks_per_s, "ticks/s", res.rate,
            {**p, "baseline": "offered rate"}),
        Row(f"{prefix}.backlog", res.backlog, "ticks", float(res.offered),
            {**p, "baseline": "ticks offered"}),
        Row(f"{prefix}.close_ack_p50", res.pct(50) * 1e3, "ms", 5.0, lat),
        Row(f"{prefix}.close_ack_p99", res.pct(99) * 1e3, "ms", 5.0, lat),
        Row(f"{prefix}.close_ack_max", max(res.latencies, default=math.nan) * 1e3, "ms", 5.0,
            lat),
        Row(f"{prefix}.cpu_per_tick", statistics.fmean(runs) * 1e6, "µs", cpu_base, cpu),
    ]


def storm_order(sizes: tuple, passes: int) -> list:
    """The sizes there and back (50, 500, 2000, 2000, 500, 50 for two passes): a machine that
    gets faster or slower during the section weighs on every size alike, so the ratio of CPU
    per tick between sizes is not a measure of when each ran."""
    order: list = []
    for k in range(max(1, passes)):
        order += list(sizes) if k % 2 == 0 else list(reversed(sizes))
    return order


def storm_configs(sizes: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """(positions, symbols ticking — None: all) of the storm section's runs: each size, and
    beside the largest the largest book with only the smallest storm's symbols ticking."""
    configs: list[tuple[int, int | None]] = [(n, None) for n in sizes]
    largest, smallest = max(sizes), min(sizes)
    if largest > smallest:
        configs.insert(configs.index((largest, None)) + 1, (largest, max(1, smallest // 2)))
    return configs


def bench_storm(plan: Plan) -> list[Row]:
    """The storm at each size, and `storm[2000@25]`: the largest book, the ticks on only the
    smallest storm's number of symbols — each symbol sees as many ticks as in the smallest
    storm, in the largest storm's book. Its CPU per tick against the smallest's is what the
    book's size costs a tick; the largest storm's adds what its young walks cost (each of its
    symbols sees 40 ticks in 20 s, the smallest's 1,600: far more new best prices, so
    trailing moves, per tick)."""
    from pmgui.bench.storm import run_storm

    rows: list[Row] = []
    results: dict[tuple[int, int | None], list] = {}
    for n, active in storm_order(tuple(storm_configs(plan.storm_sizes)), plan.storm_passes):
        res = asyncio.run(run_storm(n, 2000.0, plan.storm_s, active=active))
        res.check()
        results.setdefault((n, active), []).append(res)
    cpu = {c: [r.cpu_per_tick for r in rs] for c, rs in results.items()}
    smallest = min(plan.storm_sizes)
    small = statistics.fmean(cpu[(smallest, None)]) * 1e6
    for n in plan.storm_sizes:
        prefix = "storm" if n == 500 else f"storm[{n}]"
        # latency and throughput: the pass with the worse tail, reported whole
        res = max(results[(n, None)], key=lambda r: r.pct(99))
        rows += storm_rows(res, prefix, small if n != smallest else None, cpu[(n, None)])
    for (n, active), runs in results.items():
        if active is None:
            continue
        row = storm_rows(runs[0], f"storm[{n}@{active}]", small, cpu[(n, active)])[-1]
        row.params.update(symbols_ticking=active, baseline=(
            f"CPU per tick at {smallest} positions: as many symbols ticking, each as often, "
            f"in a book of {n}"))
        rows.append(row)
    return rows


def _handled(prefix: str, res: GuiResult) -> dict[str, float | int | None]:
    """A view's params for what its CPU per tick is divided by (`GuiResult.cpu_per_tick`):
    the events sent to it, the ticks it handled, its GUI-thread CPU and that CPU per
    delivered tick (the figure before session 47)."""
    return {f"{prefix}_events": res.events, f"{prefix}_handled_ticks": round(res.handled),
            f"{prefix}_gui_cpu_s": round(res.gui_cpu, 2),
            f"{prefix}_cpu_per_delivered_tick_us": round(res.cpu_per_delivered_tick * 1e6, 1)}


def bench_gui(plan: Plan) -> list[Row]:
    from pmgui.bench.gui import lag_percentile, run_gui_storm

    ours = run_gui_storm(500, 2000.0, plan.gui_s)
    base = run_gui_storm(500, 2000.0, plan.gui_s, baseline=True)
    reduced = run_gui_storm(500, 2000.0, plan.gui_s, baseline=True, reduced=True)
    p = {"rows": ours.rows, "delivered": ours.delivered, "baseline_delivered": base.delivered,
         "rate": 2000, "duration_s": round(ours.wall, 2), "lag_samples": ours.samples,
         "stalls_over_50ms": ours.stalls_over(0.05), "updates": ours.updates,
         **ours.host_share(), **ours.gui_cpu_share(),
         "baseline_updates": base.updates, **_handled("baseline", base),
         "actions": ours.actions, "paints": ours.paints,
         "baseline_paints": base.paints,
         "baseline_stalls_over_50ms": base.stalls_over(0.05),
         "baseline": "vn.py's PositionMonitor mechanics (re-sort per event, cell classes), "
                     "same storm"}
    pr = {"rows": ours.rows, "delivered": ours.delivered,
          "baseline_delivered": reduced.delivered, "baseline_updates": reduced.updates,
          **_handled("baseline", reduced),
          "baseline_paints": reduced.paints,
          "baseline_stalls_over_50ms": reduced.stalls_over(0.05),
          "baseline": "reduced vn.py-style monitor (plain items, no sorting), same storm"}
    return [
        Row("gui.cpu_per_tick", ours.cpu_per_tick * 1e6, "µs", base.cpu_per_tick * 1e6, p),
        Row("gui.stall_max", ours.max_stall * 1e3, "ms", base.max_stall * 1e3, p),
        Row("gui.price_lag_p99", lag_percentile(ours, 99) * 1e3, "ms",
            lag_percentile(base, 99) * 1e3, p),
        Row("gui.cpu_per_tick[reduced]", ours.cpu_per_tick * 1e6, "µs",
            reduced.cpu_per_tick * 1e6, pr),
        Row("gui.stall_max[reduced]", ours.max_stall * 1e3, "ms", reduced.max_stall * 1e3, pr),
    ]


def bench_memory(plan: Plan) -> list[Row]:
    from pmgui.bench.misc import bytes_per_position, rss_at

    b = bytes_per_position(50, 500)
    rss, rss0 = rss_at(500)
    return [Row("memory.bytes_per_position", b.own, "B", b.bare,
                {"from": 50, "to": 500, "with_market_data": round(b.engine),
                 "with_paper_venue": round(b.with_venue),
                 "baseline": "the Position values alone",
                 "note": "the position's own engine state; its symbol's candles and "
                         "indicator sets are the _with_market_data row"}),
            Row("memory.bytes_per_position_with_market_data", b.engine, "B", b.bare,
                {"from": 50, "to": 500, "market_data": round(b.market),
                 "positions_per_symbol": 2, "baseline": "the Position values alone",
                 "note": "includes its symbol's rule candles and indicator sets (loaded at "
                         "open; per symbol, sized by the venue's history)"}),
            Row("memory.bytes_per_position_with_venue", b.with_venue, "B", b.bare,
                {"from": 50, "to": 500, "baseline": "the Position values alone",
                 "note": "includes the simulated venue's own orders, fills and positions"}),
            Row("memory.rss_500", rss, "MB", rss0,
                {"positions": 500, "baseline": "the same process before opening any"})]


def bench_journal(plan: Plan) -> list[Row]:
    from pmgui.bench.misc import journal_rate

    ours, raw, n = journal_rate(plan.journal_s)
    return [Row("journal.actions", ours, "actions/s", raw,
                {"rows": n, "baseline": "bare sqlite3 insert + synced commit"})]


def bench_replay(plan: Plan) -> list[Row]:
    from pmgui.bench.rules import evaluate_only, replay_marginal

    return [replay_row(m := replay_marginal(preset, plan.replay_n),
                       evaluate_only(preset, m.n))
            for preset in ("manual", "guardian")]


def replay_row(m: ReplayMarginal, baseline: float) -> Row:
    """A replay measurement's row. A pair whose 2n-tick run took no more CPU than its n-tick
    run (a short `--quick` run on a busy machine) has no figure of its own: null, as the
    row's value would be."""
    from pmgui.bench.rules import REPLAY_MEASURED

    return Row(f"replay[{m.preset}]", m.per_s, "ticks/s (CPU, marginal)", baseline,
               {"ticks": [m.n, 2 * m.n], "cpu_s": [round(min(m.cpu_n), 3),
                                                   round(min(m.cpu_2n), 3)],
                "runs_cpu_s": [[round(c, 3) for c in m.cpu_n],
                               [round(c, 3) for c in m.cpu_2n]],
                "pairs_ticks_per_s": [_clean(r) for r in m.pair_rates],
                "estimator": "n / (least CPU of 2n - least CPU of n), runs interleaved",
                "actions": m.actions, "measured": REPLAY_MEASURED,
                "baseline": "the rules alone, same path"})


def bench_flat(plan: Plan) -> list[Row]:
    from pmgui.bench.misc import time_to_flat

    together, one_by_one = time_to_flat(50)
    return [Row("flat.50", together, "s", one_by_one,
                {"positions": 50, "baseline": "closed one by one"})]


def bench_startup(plan: Plan) -> list[Row]:
    from pmgui.bench.misc import first_paint, replay_startup

    r = first_paint(plan.paint_runs)
    c = replay_startup(plan.paint_runs)
    med = r.median
    base = {"baseline": "bare PySide6 window (table, status bar, menu), first frame",
            "baseline_runs": [round(x, 3) for x in r.bare], "mode": "python -m pmgui --paper",
            "start": "fresh interpreter, empty config and data folders"}
    return [Row("startup.first_paint", med(r.paint), "s", med(r.bare),
                {"runs": [round(x, 3) for x in r.paint],
                 "measured": "spawn → first frame of the main window painted (median)",
                 **base}),
            Row("startup.ready", med(r.ready), "s", med(r.bare),
                {"runs": [round(x, 3) for x in r.ready],
                 "measured": "spawn → the window shows its chart and the paper demo "
                             "positions (median)", **base}),
            Row("startup.replay", med(c.command), "s", med(c.bare),
                {"runs": [round(x, 3) for x in c.command],
                 "baseline_runs": [round(x, 3) for x in c.bare], "ticks": c.ticks,
                 "measured": f"spawn → exit of `python -m pmgui replay FILE --json` on a "
                             f"{c.ticks}-tick CSV, `manual` (median)",
                 "baseline": "a bare interpreter, `python -c pass` (median)"})]


def bench_live(plan: Plan) -> list[Row]:
    from pmgui.bench.live import bench_live as run

    return run(plan)


SECTIONS = {"rules": bench_rules, "storm": bench_storm, "gui": bench_gui,
            "memory": bench_memory, "journal": bench_journal, "replay": bench_replay,
            "flat": bench_flat, "startup": bench_startup, "live": bench_live}
OPT_IN = {"live"}  # run only when named with --only (pmgui.bench.live: long, source checkout)


def machine() -> dict:
    """Where the figures were measured. The interpreter's build is part of it: on one host,
    the same CPython 3.11 from pyenv (built without `--enable-optimizations`, libpython
    shared) ran the rules 18-22 % slower than Debian's packaged one (session 43), so a
    figure is compared with another from the same interpreter (`python_executable`,
    `python_build`)."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "python_executable": python_executable(),
            "python_build": " ".join((platform.python_implementation(),
                                      *platform.python_build(), platform.python_compiler())),
            "python_configure": python_configure()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def python_executable() -> str:
    """The interpreter itself, not the virtual environment's link to it."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


_CONFIGURE_FLAGS = ("--enable-optimizations", "--with-lto", "--enable-shared")


def python_configure(args: str | None = None) -> list[str]:
    """Of the interpreter's configure options (`args`: as `CONFIG_ARGS` records them), those
    that change its speed. A distribution may build with profile guidance without them."""
    if args is None:
        import sysconfig

        args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    try:  # shell-quoted: a quoted value (`'CFLAGS=-O2 -g'`) is one word, not several
        words = shlex.split(args)
    except ValueError:  # unbalanced quotes: no options can be told apart
        return []
    given = {w.split("=", 1)[0] for w in words}
    return [f for f in _CONFIGURE_FLAGS if f in given]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pmgui.bench")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke run)")
    ap.add_argument("--only", nargs="+", choices=sorted(SECTIONS), metavar="SECTION",
                    help=f"run only these sections ({', '.join(SECTIONS)})")
    args = ap.parse_args(argv)
    plan = Plan.make(args.quick)
    rows: list[Row] = []
    t0 = time.time()
    for name, fn in SECTIONS.items():
        if (args.only and name not in args.only) or (not args.only and name in OPT_IN):
            continue
        section = fn(plan)
        rows += section
        if not args.json:
            for r in section:
                _print(r)
            sys.stdout.flush()
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in rows], "quick": args.quick,
                          "machine": machine(), "seconds": round(time.time() - t0, 1)},
                         indent=2, ensure_ascii=False))
    return 0


def _print(r: Row) -> None:
    base = "" if r.baseline is None else f"   baseline {r.baseline:>12,.4g}"
    ratio = "" if r.ratio is None else f"   ×{r.ratio:,.3g}"
    print(f"{r.name:<28} {r.value:>12,.4g} {r.unit:<22}{base}{ratio}")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # PySide6 can crash while the interpreter finalises a QApplication that outlived its
    # widgets; the results are already printed, so leave without finalisation.
    os._exit(code)
