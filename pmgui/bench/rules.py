"""Rules and replay: evaluations per CPU second on a realistic path, actions applied.

A position is kept open for the whole path: an action is applied as the engine would
(stop/TP moves change the levels, a reduction the size) and a close re-opens the position
at the current price, so every evaluation sees an open position with live levels.
`RulesRun.evaluations` and `RulesRun.actions` say what was measured; `check()` refuses a
run whose position was not open for its evaluations.

Baseline (the same path, the same run): the indicators recomputed from the candle window
on every tick instead of updated once per closed candle.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pmgui.domain.enums import ActionType, PositionStatus, Side
from pmgui.domain.models import Candle, Market, MarketState, Position, evolver

SYMBOL = "BENCH/USDT:USDT"
OPEN = PositionStatus.OPEN
_evolve_stop = evolver("sl", "sl_kind", "flags")
MARKET = Market(SYMBOL, 0.01, 0.001)
TICKS_PER_CANDLE = 60


def realistic_path(n: int, seed: int = 3, start: float = 100.0) -> list[float]:
    """A volatile walk with trends and pull-backs (≈ 0.1 % per tick, regime switches)."""
    rng = random.Random(seed)
    p, drift, out = start, 0.0, []
    for i in range(n):
        if i % 500 == 0:
            drift = rng.choice((-1, 0, 1)) * 0.0003
        p *= 1 + drift + rng.gauss(0.0, 0.001)
        p = max(p, 1.0)
        out.append(round(p, 2))
    return out


def quiet_path(n: int, seed: int = 5, band: float = 0.0015) -> list[float]:
    """A mean-reverting walk inside ±`band` of 100: no preset's exit fires on it, so a
    replay's position stays open to the end."""
    rng = random.Random(seed)
    x, out = 0.0, []
    for _ in range(n):
        x = max(-band, min(band, x + rng.gauss(0.0, 0.0003) - 0.05 * x))
        out.append(round(100.0 * (1 + x), 2))
    return out


def _candles(path: list[float]) -> list[Candle]:
    out = []
    for k in range(0, len(path), TICKS_PER_CANDLE):
        seg = path[k:k + TICKS_PER_CANDLE]
        out.append(Candle(k * 1.0, seg[0], max(seg), min(seg), seg[-1], 10.0))
    return out


def fresh_position(preset: str, price: float, side: Side, ts: float) -> Position:
    d = side.dir
    sl = round(price * (1 - d * 0.03), 2)
    tp = round(price * (1 + d * 0.06), 2)
    return Position(f"b{ts:.0f}", SYMBOL, side, 1.0, price, 5, ts, 1.0, sl=sl, tp=tp,
                    initial_sl=sl, preset=preset, best_price=price)


def apply(pos: Position, action, price: float) -> Position | None:
    """The position after `action` (None: closed)."""
    t = action.type
    if t is ActionType.CLOSE:
        return None
    flags = pos.flags | action.flags if action.flags else pos.flags
    if t is ActionType.REDUCE:
        q = pos.qty - (action.qty or 0.0)
        if q <= 1e-9:
            return None
        return pos.evolve(qty=q, flags=flags)
    if t is ActionType.MOVE_SL and action.sl is not None:  # the usual one: no keywords
        return _evolve_stop(pos, action.sl, action.stop_kind or pos.sl_kind, flags)
    if t is ActionType.MOVE_TP and action.tp is not None:
        return pos.evolve(tp=action.tp, flags=flags)
    if t is ActionType.ADD and action.qty:
        return pos.evolve(qty=pos.qty + action.qty, flags=flags)
    return pos.evolve(flags=flags)


@dataclass
class RulesRun:
    preset: str
    evaluations: int = 0  # ticks decided (by a full evaluation or by the quiet band)
    open_evaluations: int = 0  # of them, ticks that saw an open position
    actions: int = 0
    reopened: int = 0
    cpu: float = 0.0
    mode: str = "full"  # "full": evaluate every tick; "band": the engine's way
    full_evaluations: int = 0  # ticks that ran observe + evaluate (or + evaluate_trend)
    band_ticks: int = 0  # ticks decided by the quiet band alone
    lane_ticks: int = 0  # of the evaluated ticks, those in the trend lane (evaluate_trend)
    close_band_ticks: int = 0  # of the band ticks, those right after a candle close
    decisions: list[tuple[int, str, str]] | None = None  # (tick, action type, reason)

    @property
    def per_s(self) -> float:
        return self.evaluations / self.cpu if self.cpu > 0 else math.inf

    def check(self) -> None:
        if self.open_evaluations != self.evaluations or self.evaluations == 0:
            raise AssertionError(f"rules[{self.preset}]: {self.evaluations - self.open_evaluations}"
                                 " evaluations saw no open position")
        if self.full_evaluations + self.band_ticks != self.evaluations \
                or self.lane_ticks > self.full_evaluations:
            raise AssertionError(f"rules[{self.preset}]: ticks not accounted for")


def run_rules(preset: str, n: int, *, recompute: bool = False, seed: int = 3,
              bands: bool = False, record: bool = False) -> RulesRun:
    """`n` ticks through the policy for one position kept open, actions applied.

    `bands=False`: observe + evaluate on every tick. `bands=True`: as the engine runs it —
    a tick inside the position's quiet band is decided by the band alone (observe would
    return the position unchanged and evaluate nothing, `pmgui.rules.bands`); a tick in
    the position's trend lane (`BandGate.lane`: only observe, trailing, momentum loss and
    the stop loss can act) runs
    observe + `evaluate_trend`; any other tick runs observe + evaluate. After either the
    band is that of the position as it then is (`BandGate`: computed when a tick first
    needs it); when a candle closes, that of the same position with the new indicators at
    the close's tick (settled there: the tick is evaluated only if outside it, as in the
    engine). `record` keeps every decision for comparing the two.
    """
    from pmgui.indicators import IndicatorSet
    from pmgui.rules.bands import BandGate
    from pmgui.rules.params import resolve_params
    from pmgui.rules.policy import evaluate, evaluate_trend, indicator_spec, observe

    params = resolve_params(preset, {})
    spec = indicator_spec(params)
    warm = realistic_path(300 * TICKS_PER_CANDLE, seed + 100)
    history = _candles(warm)
    path = realistic_path(n, seed, start=warm[-1])
    window: deque[Candle] = deque(history, maxlen=300)
    ind = IndicatorSet.from_candles(spec, window)
    snap = ind.snapshot()
    run = RulesRun(preset, mode="band" if bands else "full",
                   decisions=[] if record else None)
    side = Side.LONG
    pos = fresh_position(preset, path[0], side, 0.0)
    hi = lo = path[0]
    base_ts = history[-1].ts + 60
    gate = BandGate()
    quiet, lane = gate.quiet, gate.lane
    decisions = run.decisions
    # the run's counters are kept in locals inside the timed loop and stored after it
    evaluations = open_evaluations = actions = reopened = full_evaluations = band_ticks = 0
    lane_ticks = close_band_ticks = 0
    decide = evaluate
    cpu0 = time.process_time()
    for i, price in enumerate(path):
        ts = base_ts + i
        if i and i % TICKS_PER_CANDLE == 0:
            candle = Candle(ts - TICKS_PER_CANDLE, path[i - TICKS_PER_CANDLE], hi, lo,
                            path[i - 1], 10.0)
            window.append(candle)
            hi = lo = price
            if not recompute:
                ind.update(candle)
                snap = ind.snapshot()
            if bands:  # the indicators changed: the band of the position as it is, with
                # them, at this tick (the engine's way): no evaluation when it holds
                gate.settle(pos, MarketState(SYMBOL, price, ts, MARKET, snap), params)
                close_band_ticks += quiet(price, ts)  # (asked again below: kept, cheap)
        if price > hi:
            hi = price
        elif price < lo:
            lo = price
        if recompute:
            snap = IndicatorSet.from_candles(spec, window).snapshot()
        evaluations += 1
        if bands:
            if quiet(price, ts):
                band_ticks += 1
                open_evaluations += pos.status is OPEN  # `is_open`
                continue
            if lane(price, ts):
                lane_ticks += 1
                decide = evaluate_trend
            else:
                decide = evaluate
        full_evaluations += 1
        pos = observe(pos, price)
        open_evaluations += pos.status is OPEN  # `is_open`
        mkt = MarketState(SYMBOL, price, ts, MARKET, snap)
        for a in decide(pos, mkt, params):
            actions += 1
            if decisions is not None:
                decisions.append((i, a.type.value, a.reason.value))
            nxt = apply(pos, a, price)
            if nxt is None:
                side = Side.SHORT if side is Side.LONG else Side.LONG
                nxt = fresh_position(preset, price, side, ts)
                reopened += 1
                pos = nxt
                break
            pos = nxt
        if bands:
            gate.settle(pos, mkt, params)
    run.cpu = time.process_time() - cpu0
    run.evaluations, run.open_evaluations, run.actions = evaluations, open_evaluations, actions
    run.reopened, run.full_evaluations, run.band_ticks = reopened, full_evaluations, band_ticks
    run.lane_ticks, run.close_band_ticks = lane_ticks, close_band_ticks
    return run


# ---------------------------------------------------------------------------------- replay

REPLAY_MEASURED = ("pmgui replay --json on a tick CSV inside the clock: the file read, the "
                   "replay, the JSON lines written (to a buffer)")


@dataclass
class ReplayRun:
    preset: str
    ticks: int
    cpu: float
    actions: int
    ticks_read: int = 0  # ticks the command replayed from the file (its summary's last time)
    lines_written: int = 0  # JSON lines it wrote: one per action, then the summary


REPLAY_T0 = 1_700_000_000  # the first row's timestamp in a bench tick file (1 s apart)


def replay_file(path: Sequence[float], dest: Path, preset: str) -> list[str]:
    """Write `path` to `dest` as a tick CSV (`timestamp,price`, a row a second from
    `REPLAY_T0`) and give the `pmgui replay … --json` arguments that replay it with `preset`:
    a long at the first price, with levels so wide that the position stays open for the
    whole path (the workload must not vanish)."""
    dest.write_text("timestamp,price\n" + "".join(f"{REPLAY_T0 + i},{p}\n"
                                                   for i, p in enumerate(path)))
    return ["replay", str(dest), "--side", "long", "--entry", repr(path[0]), "--qty", "1",
            "--sl", repr(path[0] * 0.2), "--tp", repr(path[0] * 5), "--preset", preset,
            "--symbol", SYMBOL, "--json"]


def replayed_summary(what: str, n: int, rc: int, rows: list[dict], err: str) -> dict:
    """The summary of a `replay_file` run whose JSON lines are `rows`, checked: the command
    succeeded, the position is still open and every one of the file's `n` rows was replayed
    (the summary's time is the last tick's: the rows read up to it, in order). Raises an
    AssertionError naming `what` otherwise."""
    summary = rows[-1] if rc == 0 and rows else {}
    if summary.get("type") != "summary" or not summary.get("open_qty"):
        raise AssertionError(f"{what}: the position closed or the replay failed "
                             f"(rc {rc}, {summary or err[-3000:]}); the workload vanished")
    read = round(summary["ts"] - REPLAY_T0) + 1
    if read != n:
        raise AssertionError(f"{what}: {read} of {n} ticks replayed")
    return summary


def replay_cpu(preset: str, n: int, seed: int = 5) -> ReplayRun:
    """CPU seconds of `pmgui replay --json` over `n` ticks (start-up included, the
    interpreter's own and the imports aside): the command's own path, as a checker running
    it from outside pays it — the CSV read, the replay, the JSON lines written (to a buffer:
    the terminal or file they go to is not pmgui's cost)."""
    import contextlib
    import io
    import json
    import tempfile

    from pmgui.cli import build_parser
    from pmgui.engine.replay import run_replay_cli

    with tempfile.TemporaryDirectory() as tmp:
        args = build_parser().parse_args(
            replay_file(quiet_path(n, seed), Path(tmp) / "bench-ticks.csv", preset))
        out, err = io.StringIO(), io.StringIO()  # not a terminal: no progress bar
        cpu0 = time.process_time()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_replay_cli(args)
        cpu = time.process_time() - cpu0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    summary = replayed_summary(f"replay[{preset}]", n, rc, rows, err.getvalue())
    return ReplayRun(preset, n, cpu, len(rows) - 1, round(summary["ts"] - REPLAY_T0) + 1,
                     len(rows))


@dataclass(frozen=True)
class ReplayMarginal:
    """`replay_marginal`'s measurement: every run's CPU time, in the order run."""

    preset: str
    n: int
    cpu_n: tuple[float, ...]  # the runs of n ticks
    cpu_2n: tuple[float, ...]  # the runs of 2n ticks, each right after its run of n
    actions: int  # actions of the last 2n-tick run

    @property
    def per_s(self) -> float:
        return marginal_rate(self.n, self.cpu_n, self.cpu_2n)

    @property
    def pair_rates(self) -> tuple[float, ...]:
        """Each interleaved pair's own figure: the spread the reported one comes from."""
        return tuple(marginal_rate(self.n, (a,), (b,))
                     for a, b in zip(self.cpu_n, self.cpu_2n, strict=True))


def marginal_rate(n: int, cpu_n: Sequence[float], cpu_2n: Sequence[float]) -> float:
    """Ticks per CPU second with start-up removed: n / (min cpu(2n) − min cpu(n)).

    The cost is linear in the ticks (instruction counts at 5k/10k/20k/40k ticks: 34–38k per
    tick, no collection of the old generation and no retained state per tick), so the
    spread between runs is the machine's: other processes inflate a run's CPU time (shared
    caches and cores), they never shrink it, so the least CPU time of each size is the
    closest to the workload's own; a difference of single runs swings by 2x."""
    extra = min(cpu_2n) - min(cpu_n)
    return n / extra if extra > 0 else math.inf


def replay_marginal(preset: str, n: int, pairs: int = 5) -> ReplayMarginal:
    """`pairs` interleaved runs of n and 2n ticks (n, 2n, n, 2n, ...: a slow spell of the
    machine touches both sizes), after one warm-up replay (the first run in a process pays
    the lazy imports and first caches, which would shrink the difference)."""
    replay_cpu(preset, max(1, n // 10))
    cpu_n: list[float] = []
    cpu_2n: list[float] = []
    actions = 0
    for _ in range(max(1, pairs)):
        cpu_n.append(replay_cpu(preset, n).cpu)
        b = replay_cpu(preset, 2 * n)
        cpu_2n.append(b.cpu)
        actions = b.actions
    return ReplayMarginal(preset, n, tuple(cpu_n), tuple(cpu_2n), actions)


def evaluate_only(preset: str, n: int) -> float:
    """The rules alone over the replay's path (ticks per CPU second)."""
    from pmgui.rules.params import resolve_params
    from pmgui.rules.policy import evaluate, observe

    params = resolve_params(preset, {})
    path = quiet_path(n, 5)
    pos = replace(fresh_position(preset, path[0], Side.LONG, 0.0), sl=path[0] * 0.2,
                  tp=path[0] * 5)
    cpu0 = time.process_time()
    for i, price in enumerate(path):
        pos = observe(pos, price)
        for a in evaluate(pos, MarketState(SYMBOL, price, float(i), MARKET), params):
            pos = apply(pos, a, price) or pos
    return n / max(time.process_time() - cpu0, 1e-9)
