"""The engine storm: the real engine, the real paper venue in real time, SQLite on disk.

`positions` positions on `positions / 2` symbols (a long and a short on each), paced at `rate`
ticks/s for `duration` s. Ticks are offered on a fixed schedule (tick i at t0 + i/rate);
the engine takes them one after the other, so a slow engine builds a backlog instead of
slowing the schedule. Measured: ticks delivered per second, the backlog at the end, CPU time
per tick (process CPU: the engine, the venue and SQLite run on this one thread), and the
latency from a tick to the closing order acknowledged for *probe* positions: every
`probe_every` s (10 a second by default, so a 20 s run has ~200 of them and its p99 is the
third largest, not simply the maximum, which is reported apart) one probe symbol gets a tick
through its stop;
the probe position's stop order on the venue fires and the engine books the close. Each
latency is split into the wait (the tick offered → the engine takes it: a backlog, a stall
of the loop) and the engine's own part (taken → acknowledged). A closed probe is re-opened
through the engine's OpenPosition command running beside the stream, as a trader's command
would (its tick at 100 is part of the stream), so the book keeps its size; a probe is crossed
again only once its stop order rests on the venue. Probes are part of the workload: a close
and an open cost the engine more with a larger book (the account is re-summed after a close,
the venue checks margin over all its orders), so more of them would change what is measured
(20 a second added ~95 µs of CPU per tick at 2,000 positions, ~28 at 50).

The loop's stretches over 1 ms are counted as the feed sees them (`stretches`): a tick's
delivery that held the feed (the engine's work on that tick, a GC pause inside it), and the
feed waking late from its pause (another task — a command, a re-placement, the housekeeping —
held the loop). ~200 probes make a p99 that a few stretches decide; how many stretches over
3 ms a storm had, and their total, is the steadier figure (two clock reads a tick).

The engine publishes its events as `--headless` does: to listeners (the bench's own), with
nothing kept for a window that is not there (`Outbox(buffered=False)`). Until session 9 the
storm's outbox was never drained — it held the last 10,000 actions, which no configuration
of the app does (a window drains on its timer, a headless engine now keeps none), and the
collector's work grew with them.

The main positions must stay open through the run: a figure that improves because the
workload vanished is a defect, so `StormResult.check()` raises when any of them closed or
when the ticks did not reach them.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pmgui.domain.enums import ActionType, Protection, Side
from pmgui.domain.models import Market, Tick

TICK = 1e-6  # price tick of the storm's markets: each offered price is unique per symbol
PROBE_SL = 0.99  # probe stops sit 1 % under the probe's price
STRETCH_MIN = 0.001  # s: a stretch of the loop shorter than this is not kept


def storm_symbols(n_symbols: int) -> list[str]:
    return [f"S{i:04d}/USDT:USDT" for i in range(n_symbols)]


def probe_symbols(n: int) -> list[str]:
    return [f"P{i:02d}/USDT:USDT" for i in range(n)]


def storm_markets(symbols: list[str]) -> dict[str, Market]:
    return {s: Market(s, TICK, 0.001, min_notional=0.0) for s in symbols}


class PricePath:
    """Per symbol a bounded, mean-reverting walk around 100 (±`band`), on the 0.01 grid, with
    the tick counter in the last decimals so every offered price of a symbol is unique within
    1000 ticks: a displayed price names the tick it came from."""

    def __init__(self, symbols: list[str], seed: int = 7, band: float = 0.003) -> None:
        self.rng = random.Random(seed)
        self.x = dict.fromkeys(symbols, 0.0)
        self.band = band
        self.count = dict.fromkeys(symbols, 0)

    def next(self, symbol: str) -> float:
        x = self.x[symbol]
        x += self.rng.gauss(0.0, 0.0004) - 0.05 * x
        x = max(-self.band, min(self.band, x))
        self.x[symbol] = x
        k = self.count[symbol] = self.count[symbol] + 1
        return round(100.0 * (1 + x), 2) + (k % 1000) * TICK


@dataclass
class StormResult:
    positions: int
    symbols: int
    rate: float
    duration: float
    offered: int = 0  # ticks due by the end of the run
    delivered: int = 0
    delivered_main: int = 0  # ticks on the main symbols
    cpu: float = 0.0  # process CPU seconds during the run
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)  # s, tick → closing order acked
    probes_sent: int = 0
    open_before: int = 0
    open_after: int = 0
    closed_main: list[str] = field(default_factory=list)
    actions: int = 0  # rule actions taken on main positions (moves) during the run
    # (process CPU s, ticks delivered, rule actions) when half the run's time had passed:
    # the storm's walks are young at its start (a symbol's price has seen few ticks, so
    # new best prices, hence trailing moves, are frequent), and more so with more symbols
    half: tuple[float, int, int] | None = None
    exchange_stops: bool = True
    active_symbols: int = 0  # the symbols the ticks go to (the first ones; 0: all of them)
    probes_censored: int = 0  # probes not acked by the end (counted at their least latency)
    probes_skipped: int = 0  # probe times at which no probe was ready (none sent)
    waits: list[float] = field(default_factory=list)  # s, offered → the engine takes it
    engine_parts: list[float] = field(default_factory=list)  # s, taken → acked
    # s, the loop's stretches over STRETCH_MIN the feed saw: a tick's delivery that held it
    # (the engine's work on that tick), or the feed waking late (others held the loop)
    stretches: list[float] = field(default_factory=list)

    @property
    def ticks_per_s(self) -> float:
        return self.delivered / self.wall if self.wall > 0 else 0.0

    @property
    def backlog(self) -> int:
        return max(0, self.offered - self.delivered)

    @property
    def cpu_per_tick(self) -> float:
        return self.cpu / self.delivered if self.delivered else math.inf

    def halves(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """((CPU s per tick, rule actions per tick) of the run's first half, the same of its
        second half), None without a half-time sample or with a half without ticks."""
        if self.half is None:
            return None
        cpu, ticks, actions = self.half
        rest = self.delivered - ticks
        if ticks <= 0 or rest <= 0:
            return None
        return ((cpu / ticks, actions / ticks),
                ((self.cpu - cpu) / rest, (self.actions - actions) / rest))

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)

    def stretch_summary(self) -> dict[str, float]:
        """How many stretches over 1, 3 and 10 ms, and the time in those over 3 ms: steadier
        figures than a p99 of ~200 probes, which a few stretches decide."""
        over3 = [s for s in self.stretches if s > 0.003]
        return {"stretches_over_1ms": sum(1 for s in self.stretches if s > 0.001),
                "stretches_over_3ms": len(over3),
                "stretches_over_10ms": sum(1 for s in self.stretches if s > 0.010),
                "stretches_over_3ms_total_ms": round(sum(over3) * 1e3, 1),
                "stretch_max_ms": round(max(self.stretches, default=0.0) * 1e3, 2)}

    def check(self) -> None:
        """The workload was the one announced (else the figures mean nothing)."""
        if self.open_before != self.positions:
            raise AssertionError(f"storm: {self.open_before} of {self.positions} positions "
                                 "opened")
        if self.closed_main or self.open_after != self.positions:
            raise AssertionError(f"storm: {len(self.closed_main)} main positions closed during "
                                 f"the run ({self.open_after} of {self.positions} open): the "
                                 "workload vanished")
        if self.delivered_main < min(self.offered, self.delivered) * 0.5:
            raise AssertionError("storm: the ticks did not go to the positions' symbols")
        if self.probes_sent and not self.latencies:
            raise AssertionError("storm: no probe close was acknowledged")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    k = min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


async def open_book(core, symbols: list[str], paper, clock: Callable[[], float],
                    preset: str | None = None, leverage: float = 5.0) -> list[str]:
    """A long and a short on each symbol, through the engine's own OpenPosition command."""
    from pmgui.engine import commands as cmd

    ids: list[str] = []
    for s in symbols:
        await paper.deliver(Tick(s, 100.0, clock()), core)
        for side in (Side.LONG, Side.SHORT):
            d = side.dir
            res = await core.handle(cmd.OpenPosition(s, side, 1.0, leverage, sl=100 * (1 - d * .05),
                                                     tp=100 * (1 + d * .05), preset=preset))
            ids.append(res.position_id)
    return ids


async def run_storm(positions: int = 500, rate: float = 2000.0, duration: float = 20.0, *,
                    probes: int = 8, probe_every: float = 0.1, exchange_stops: bool = True,
                    preset: str | None = None, workdir: Path | None = None,
                    seed: int = 7, active: int | None = None) -> StormResult:
    """One storm on a fresh engine (see the module docstring). With `active`, the ticks go
    to the first `active` symbols only: the rest of the book stands open and untouched
    (`storm[2000@25]`: a large book with a small storm's symbols ticking)."""
    from pmgui.engine.core import EngineCore
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings
    from pmgui.engine.thread import freeze_startup_objects
    from pmgui.exchange.paper import PaperExchange
    from pmgui.store.db import Store

    n_sym = max(1, positions // 2)
    symbols = storm_symbols(n_sym)
    psyms = probe_symbols(probes)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = Store.open(Path(tmp) / "storm.db")
        paper = PaperExchange(storm_markets(symbols + psyms), None, realtime=True,
                              db=store.db, relaxed=store.relaxed, balance=1e12)
        settings = EngineSettings(protect_on_exchange=exchange_stops)
        # as --headless runs it: nothing pulls events, the bench listens (see Outbox)
        core = EngineCore(paper, store, Outbox(buffered=False), settings)
        await core.start()
        res = StormResult(positions, n_sym, rate, duration, exchange_stops=exchange_stops,
                          active_symbols=min(n_sym, active) if active else n_sym)
        # Setting up is not measured: without syncing, 2,000 opens take seconds, not minutes.
        store.db.conn.execute("PRAGMA synchronous = OFF")
        main_ids = await open_book(core, symbols, paper, time.time, preset)
        for p in psyms:
            await _open_probe(core, paper, p)
        await core.warmed_up()  # the book stands for a restored one: warmed before the freeze
        _steady_saves(core, main_ids)
        store.db.conn.execute("PRAGMA synchronous = FULL")
        store.forget_level()  # set behind the store's back: its relaxed commits re-set NORMAL
        res.open_before = sum(1 for i in main_ids if i in core.book)
        thresholds = gc.get_threshold()
        freeze_startup_objects()  # as the manager thread does once started (the book here)
        try:
            await _drive(core, paper, res, symbols[:res.active_symbols], psyms, probe_every,
                         seed)
        finally:
            gc.unfreeze()  # the next storm of the bench starts from the same state
            gc.set_threshold(*thresholds)
            res.open_after = sum(1 for i in main_ids if i in core.book)
            res.closed_main = [i for i in main_ids if i not in core.book]
            await core.shutdown()
    return res


def _steady_saves(core, ids: list[str]) -> None:
    """The book as one that has been running: its positions' last saves spread evenly over
    the period in which each is saved again (`EngineCore.save_every`), so the storm writes
    changed peaks at the steady rate from its first second. Just opened, every position
    would be due at the same moment, one period in: a 20 s storm of 2,000 positions
    (a save every 20 s each) would write none at all."""
    every = core.save_every()
    if not ids or not math.isfinite(every):
        return
    now = core.clock()
    for k, pid in enumerate(ids):
        rt = core.book.runtime(pid)
        if rt is not None:
            rt.saved_at = now - every * k / len(ids)


async def _open_probe(core, paper, symbol: str) -> None:
    await paper.deliver(Tick(symbol, 100.0, time.time()), core)
    await _open_probe_position(core, symbol)


async def _open_probe_position(core, symbol: str) -> None:
    from pmgui.engine import commands as cmd

    await core.handle(cmd.OpenPosition(symbol, Side.LONG, 1.0, 5, sl=100 * PROBE_SL, tp=150.0,
                                       preset="manual"))


async def _drive(core, paper, res: StormResult, symbols: list[str], psyms: list[str],
                 probe_every: float, seed: int) -> None:
    from pmgui.engine.events import ActionTaken

    path = PricePath(symbols, seed)
    rng = random.Random(seed + 1)
    psym_set = set(psyms)
    sent: dict[str, float] = {}  # probe symbol → when its stop-crossing tick was offered
    taken: dict[str, float] = {}  # probe symbol → when the engine took that tick
    acked: list[str] = []
    reopening: dict[str, asyncio.Task] = {}
    main_ids = set(core.book)

    def listen(ev: object) -> None:
        if not isinstance(ev, ActionTaken) or not ev.ok:
            return
        a = ev.action
        if ev.symbol in psym_set and a.type is ActionType.CLOSE and ev.symbol in sent:
            now = time.perf_counter()
            at, took = sent.pop(ev.symbol), taken.pop(ev.symbol, now)
            res.latencies.append(now - at)
            res.waits.append(took - at)
            res.engine_parts.append(now - took)
            acked.append(ev.symbol)
        elif a.position_id in main_ids:
            res.actions += 1

    def ready(s: str) -> bool:
        task = reopening.get(s)
        if task is not None:
            if not task.done():
                return False
            del reopening[s]
            task.result()  # a probe that cannot be re-opened is a broken bench
        rt = core.book.find(s, Side.LONG)
        return rt is not None and core.protection(rt.position) is Protection.ON_EXCHANGE

    core.outbox.add_listener(listen)
    loop = asyncio.get_running_loop()
    rate, duration = res.rate, res.duration
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    next_probe = probe_every
    probe_turn = 0
    housekeeping = asyncio.create_task(_housekeeping(core))
    i = 0
    stretches = res.stretches
    clock = time.perf_counter
    while True:
        now = clock() - t0
        if now >= duration:
            break
        if res.half is None and now >= duration / 2:
            res.half = (time.process_time() - cpu0, res.delivered, res.actions)
        if acked:  # re-open the probes that closed (the book keeps its size)
            for s in acked:
                await paper.deliver(Tick(s, 100.0, time.time()), core)
                reopening[s] = asyncio.create_task(_open_probe_position(core, s))
            acked.clear()
        due = i / rate
        if due > now:
            await asyncio.sleep(due - now)
            late = clock() - t0 - due  # the loop was held past the feed's time
            if late > STRETCH_MIN:
                stretches.append(late)
            continue
        offered_at = t0 + due
        if due >= next_probe and psyms:
            next_probe += probe_every
            turn = [psyms[(probe_turn + k) % len(psyms)] for k in range(len(psyms))]
            probe_turn += 1
            s = next((p for p in turn if p not in sent and ready(p)), None)
            if s is None:
                res.probes_skipped += 1  # every probe still closing or re-opening
            else:
                sent[s] = offered_at
                res.probes_sent += 1
                taken[s] = start = clock()
                await paper.deliver(Tick(s, round(100 * PROBE_SL - 0.05, 2), time.time()),
                                    core)
                held = clock() - start
                if held > STRETCH_MIN:
                    stretches.append(held)
                i += 1
                res.delivered += 1
                continue
        s = symbols[rng.randrange(len(symbols))]
        tick = Tick(s, path.next(s), time.time())
        start = clock()
        await paper.deliver(tick, core)
        held = clock() - start
        if held > STRETCH_MIN:
            stretches.append(held)
        i += 1
        res.delivered += 1
        res.delivered_main += 1
        if i % 64 == 0:
            start = clock()
            await asyncio.sleep(0)
            held = clock() - start
            if held > STRETCH_MIN:
                stretches.append(held)
    res.wall = time.perf_counter() - t0
    res.cpu = time.process_time() - cpu0
    res.offered = int(res.wall * rate)
    # Probes still waiting in the backlog (never reached, or reached and not yet acked)
    # count with the least latency they will have: a backlog is latency too.
    missed = 0
    t = next_probe
    while t < res.wall:
        res.latencies.append(res.wall - t)
        missed += 1
        t += probe_every
    for at in sent.values():
        res.latencies.append(time.perf_counter() - at)
        missed += 1
    res.probes_censored = missed
    housekeeping.cancel()
    await asyncio.gather(housekeeping, return_exceptions=True)
    await asyncio.gather(*reopening.values())
    del loop


async def _housekeeping(core) -> None:
    """What the manager thread runs beside the stream (`EngineThread._housekeeping`)."""
    while True:
        await asyncio.sleep(1.0)
        await core.periodic()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
