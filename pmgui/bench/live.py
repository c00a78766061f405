"""The live storm: pmgui on the live ccxt path (binanceusdm) against the Binance emulator,
each in a process of its own, prices pushed over websockets.

What runs:

* the venue: `python -m tests.fakes.storm_venue` (the emulator of `tests/fakes`, hedge mode),
  holding `positions` positions opened "elsewhere" on `positions / 2` symbols (a long and a
  short each) and `probes` probe longs, pushing the storm's tickers itself;
* pmgui: this module run as `--child`, which calls `pmgui.cli.main(["--headless", …])` with a
  real config.toml (`[exchange.options]` → the emulator's URLs), a real SQLite file and the
  real ccxt client — the CLI's own code path; the child only adds an outbox listener that
  counts the engine's ticks, and answers `stats` on stdin (its CPU, ticks, closes).

pmgui adopts the positions at start-up and puts a stop and a take-profit for each on the
venue (the default preset `guardian` for the storm symbols, as the paper storm; `monitor` for
the probes: its stop sits 1 % under 100). The storm starts once every position is protected on
the exchange. The venue then pushes `rate` tickers a second for `duration` s, a random storm
symbol each; every `probe_every` s a probe whose stop rests on the venue gets a price through
its stop: the venue triggers it (an exchange stop), and the child stamps when the engine books
the close (the close's ActionTaken); the child re-opens the probe with an OpenPosition, as a
trader would. Measured from pmgui's process only (the venue's CPU is its own):

* ticks the engine took per second (its TickEvents) while the storm ran; `pushed` is what the
  venue sent; `backlog` is what the engine took after the storm ended (≈ 1 s later) and
  `coalesced` what it never took (ccxt keeps the newest ticker of a symbol: a ticker that
  arrives before the previous one was taken replaces it — a price the engine does not need);
* CPU per tick: pmgui's process CPU during the storm / ticks taken (websocket receive, JSON,
  ccxt parsing, the adapter, the engine and SQLite; start-up excluded);
* close latency: the venue's crossing price sent → the engine has booked the close (the
  venue's stop fill through the user stream), p50/p99/max over the probes.

Baseline: the paper storm (`pmgui.bench.storm.run_storm`, in process) at the same size in the
same run for CPU per tick; the offered rate for ticks/s; the 5 ms target for the latency.

The section needs the source checkout (`tests/fakes` is not shipped in the wheel): without it
`run_live` raises with that explanation. It takes about a minute and a half per size
(start-up: 500 adoptions and 1,000 protective orders through REST, then the storm, then the
paper storm beside it), so it is not part of the default full run (`OPT_IN` in
`pmgui.bench.__main__`): `python -m pmgui.bench --only live` runs it at 50 and 500
positions (10 s a storm with `--quick`, 20 s otherwise); `python -m pmgui.bench.live
--positions 2000` runs one size alone and prints its figures as JSON (`--profile FILE`
records pmgui's process with py-spy during the storm).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENUE_MODULE = "tests.fakes.storm_venue"
PROBE_PRESET = "monitor"  # stop 1 % under the entry (the venue crosses it at 98.95)


def venue_root() -> Path | None:
    """The source checkout whose `tests/fakes` holds the emulator, as the import system
    finds it from here (the current directory of `python -m …` first); None: not found."""
    try:
        spec = importlib.util.find_spec(VENUE_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parents[2]


def venue_available() -> bool:
    return venue_root() is not None


def ccxt_symbol(exchange_id: str) -> str:
    return f"{exchange_id[:-4]}/USDT:USDT"


def probe_symbols(n: int) -> list[str]:
    return [f"P{i:02d}/USDT:USDT" for i in range(n)]


@dataclass
class LiveResult:
    positions: int
    symbols: int
    rate: float
    duration: float
    pushed: int = 0
    taken: int = 0  # TickEvents of the engine during the storm
    taken_after: int = 0  # … up to about a second after it (the backlog drained)
    wall: float = 0.0
    cpu: float = 0.0  # pmgui's process CPU s during the storm
    venue_late: float = 0.0  # how far behind its schedule the venue's pusher ran (s)
    venue_cpu: float = 0.0  # the venue's own CPU s during the storm (not pmgui's)
    open_before: int = 0
    open_after: int = 0
    protected_before: int = 0
    latencies: list[float] = field(default_factory=list)  # s, crossing sent → close booked
    # each booked close split at the venue's first order event about it reaching pmgui's
    # adapter: the venue's part (its matching, the user stream, pmgui's loop getting to the
    # message) and pmgui's (that event → the close booked)
    venue_parts: list[float] = field(default_factory=list)
    pmgui_parts: list[float] = field(default_factory=list)
    crossings: int = 0
    probes_skipped: int = 0
    startup_s: float = 0.0

    @property
    def ticks_per_s(self) -> float:
        return self.taken / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_tick(self) -> float:
        return self.cpu / self.taken if self.taken else math.inf

    @property
    def backlog(self) -> int:
        return max(0, self.taken_after - self.taken)

    @property
    def coalesced(self) -> int:
        return max(0, self.pushed - self.taken_after)

    def pct(self, q: float) -> float:
        from pmgui.bench.storm import percentile

        return percentile(self.latencies, q)

    def check(self) -> None:
        """The workload was the one announced (else the figures mean nothing)."""
        want = self.positions
        if self.open_before < want or self.protected_before < want:
            raise AssertionError(f"live storm: {self.open_before} open, "
                                 f"{self.protected_before} protected of {want} before")
        if self.open_after < want:
            raise AssertionError(f"live storm: {self.open_after} of {want} main positions "
                                 "open after the run: the workload vanished")
        if self.taken <= 0 or self.pushed <= 0:
            raise AssertionError("live storm: no tick reached the engine")


# ------------------------------------------------------------------------------ the parent

class _Proc:
    """A child process spoken to by lines of JSON on its stdin/stdout."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None,
                 stderr: Any = None) -> None:
        self.p = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def line(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no answer from {self.p.args[:4]} in {timeout} s") \
                    from None
            if text is None:
                raise RuntimeError(f"{self.p.args[:4]} ended (exit {self.p.wait()})")
            text = text.strip()
            if text.startswith("{"):
                return json.loads(text)

    def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write(command + "\n")
        self.p.stdin.flush()
        return self.line(timeout)

    def close(self, command: str = "quit", timeout: float = 30.0) -> None:
        try:
            if self.p.poll() is None and self.p.stdin is not None:
                self.p.stdin.write(command + "\n")
                self.p.stdin.close()
            self.p.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()


def _toml(key_path: list[str], value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _toml([*key_path, json.dumps(k)], v, out)
    else:
        out.append(f"{'.'.join(key_path)} = {json.dumps(value)}")


def write_config(path: Path, ccxt_config: dict[str, Any], probes: list[str]) -> Path:
    lines = ["[exchange]", 'id = "binanceusdm"', "", "[exchange.options]"]
    _toml([], ccxt_config, lines)
    for sym in probes:
        lines += ["", f"[symbols.{json.dumps(sym)}]", f"preset = {json.dumps(PROBE_PRESET)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wait(cond, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"live storm: timed out waiting for {what}")
        time.sleep(interval)


def run_live(positions: int = 500, rate: float = 2000.0, duration: float = 20.0, *,
             probes: int = 8, probe_every: float = 0.1, seed: int = 7,
             workdir: Path | None = None, startup_timeout: float = 300.0,
             on_storm: Any = None) -> LiveResult:
    """One live storm (see the module docstring). `on_storm(pid)` is called as the storm
    starts (a profiler may attach to pmgui's process)."""
    root = venue_root() if venue_available() else None
    if root is None:
        raise RuntimeError(
            "the live storm needs the Binance emulator of the source checkout "
            f"({VENUE_MODULE.replace('.', '/')}.py, not found from {Path.cwd()}); it is "
            "not part of the installed package: run it from a clone of the repository")
    n_sym = max(1, positions // 2)
    res = LiveResult(positions, n_sym, rate, duration)
    psyms = probe_symbols(probes)
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        venue = _Proc([sys.executable, "-m", VENUE_MODULE, "--symbols", str(n_sym),
                       "--probes", str(probes)], root)
        child: _Proc | None = None
        log = (Path(tmp) / "pmgui.log").open("w", encoding="utf-8")  # pmgui's stderr
        try:
            hello = venue.line(30)
            cfg = write_config(Path(tmp) / "config.toml", hello["ccxt_config"], psyms)
            env = {**os.environ, "PMGUI_API_KEY": hello["api_key"],
                   "PMGUI_API_SECRET": "bench-live-secret", "PMGUI_NO_KEYRING": "1",
                   "PMGUI_CONFIG_DIR": str(Path(tmp) / "no-config"),
                   "PYTHONUNBUFFERED": "1"}
            child = _Proc([sys.executable, "-m", "pmgui.bench.live", "--child",
                           "--config", str(cfg), "--db", str(Path(tmp) / "live.db"),
                           "--probes", ",".join(psyms)], root, env=env, stderr=log)
            want = positions + probes

            def ready() -> dict[str, Any] | None:
                st = child.ask("stats", 60)
                return st if st.get("protected", 0) >= want else None

            before = _wait(ready, startup_timeout, f"{want} positions protected")
            _wait(lambda: len(venue.ask("status")["probes_ready"]) >= probes, 30,
                  "the probes' stops on the venue")
            res.startup_s = time.monotonic() - t_start
            res.open_before = before["open_main"]
            res.protected_before = before["protected_main"]
            if on_storm is not None:
                on_storm(child.p.pid)
            s0 = child.ask("stats")
            out = venue.ask(f"storm {rate} {duration} {probe_every} {seed}",
                            timeout=duration + 60)
            s1 = child.ask("stats")
            time.sleep(1.0)  # what the engine still takes now was its backlog
            s2 = child.ask("stats")
            res.pushed = out["pushed"]
            res.wall = out["wall"]
            res.venue_late = out["max_late"]
            res.venue_cpu = out["cpu"]
            res.probes_skipped = out["probes_skipped"]
            res.taken = s1["ticks"] - s0["ticks"]
            res.taken_after = s2["ticks"] - s0["ticks"]
            res.cpu = s1["cpu"] - s0["cpu"]
            res.open_after = s2["open_main"]
            res.crossings = len(out["crossings"])
            booked = _match(out["crossings"], s2["closes"])
            heard = _match(out["crossings"], s2["events"])
            res.latencies = [b for b in booked if b is not None]
            for b, h in zip(booked, heard, strict=True):
                if b is not None and h is not None and h <= b:
                    res.venue_parts.append(h)
                    res.pmgui_parts.append(b - h)
        finally:
            if child is not None:
                child.close()
            venue.close()
            log.close()
    return res


def _match(crossings: list[list[Any]], stamps: list[list[Any]]) -> list[float | None]:
    """Each crossing → the time from it to the first stamp of that probe after it (None:
    none came)."""
    by_sym: dict[str, list[float]] = {}
    for sym, t in stamps:
        by_sym.setdefault(sym, []).append(t)
    out: list[float | None] = []
    for sym, t0 in crossings:
        times = by_sym.get(ccxt_symbol(sym), [])
        while times and times[0] < t0:
            times.pop(0)
        out.append(times.pop(0) - t0 if times else None)
    return out


# ------------------------------------------------------------------------------- the child

def _child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pmgui.bench.live --child")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--config", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--probes", default="")
    args = ap.parse_args(argv)

    import pmgui.engine.build as build
    from pmgui import cli
    from pmgui.domain.enums import ActionType, Protection, Side
    from pmgui.engine import commands as cmd
    from pmgui.engine.events import ActionTaken, TickEvent

    probes = {s for s in args.probes.split(",") if s}
    ticks = [0]
    closes: list[tuple[str, float]] = []
    events: list[tuple[str, float]] = []  # the venue's order events about probes, received

    from pmgui.exchange.ccxt_adapter import CcxtExchange

    real_on_ws = CcxtExchange._on_ws_message

    def on_ws(self, client: Any, message: Any) -> bool:
        if message.__class__ is dict and message.get("e") in ("ALGO_UPDATE",
                                                               "ORDER_TRADE_UPDATE"):
            sym = ccxt_symbol(str((message.get("o") or {}).get("s") or ""))
            if sym in probes:
                events.append((sym, time.time()))
        return real_on_ws(self, client, message)

    CcxtExchange._on_ws_message = on_ws  # type: ignore[method-assign]
    reopen: queue.Queue[str] = queue.Queue()
    holder: dict[str, Any] = {}

    def on_event(ev: object) -> None:
        cls = ev.__class__
        if cls is TickEvent:
            ticks[0] += 1
        elif cls is ActionTaken and ev.symbol in probes and ev.ok \
                and ev.action.type is ActionType.CLOSE:
            closes.append((ev.symbol, time.time()))
            reopen.put(ev.symbol)

    real_build = build.build_engine

    def build_engine(*a: Any, **kw: Any):
        engine = real_build(*a, **kw)
        engine.outbox.add_listener(on_event)
        holder["engine"] = engine
        return engine

    build.build_engine = build_engine

    def book(core) -> dict[str, int]:
        main = [p for p in core.book.values() if p.symbol not in probes]
        return {"open_main": len(main),
                "protected_main": sum(1 for p in main
                                      if core.protection(p) is Protection.ON_EXCHANGE),
                "protected": sum(1 for p in core.book.values()
                                 if core.protection(p) is Protection.ON_EXCHANGE)}

    def back_at_100(engine, sym: str) -> bool:
        price = engine.query(lambda core: core.market.price(sym)).result(30)
        return price is not None and price > 99.5

    def reopener() -> None:
        while True:
            sym = reopen.get()
            engine = holder["engine"]
            try:
                # the venue put the price back at 100 after the crossing: open at that
                _wait(lambda e=engine, s=sym: back_at_100(e, s), 10, f"{sym} back at 100",
                      interval=0.01)
            except TimeoutError:
                pass  # opened at whatever the price is (the venue skips an unready probe)
            try:
                engine.submit(cmd.OpenPosition(sym, Side.LONG, 1.0, 5.0, sl=99.0,
                                               tp=102.0)).result(30)
            except Exception as exc:  # a probe not re-opened is skipped by the venue
                print(f"probe {sym} not re-opened: {exc}", file=sys.stderr, flush=True)

    def control() -> None:
        for line in sys.stdin:
            word = line.strip()
            if word == "quit":
                break
            if word != "stats":
                continue
            engine = holder.get("engine")
            st: dict[str, Any] = {"ticks": ticks[0], "cpu": time.process_time(),
                                  "closes": list(closes), "events": list(events),
                                  "open_main": 0,
                                  "protected_main": 0, "protected": 0}
            if engine is not None and engine.running:
                try:
                    st.update(engine.query(book).result(30))
                except Exception as exc:
                    st["error"] = str(exc)
            sys.stdout.write(json.dumps(st) + "\n")
            sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=control, daemon=True, name="bench-control").start()
    threading.Thread(target=reopener, daemon=True, name="bench-reopen").start()
    return cli.main(["--headless", "--config", args.config, "--db", args.db, "--new-db"])


# ------------------------------------------------------------------------------- the rows

def live_rows(res: LiveResult, prefix: str, paper_cpu: float | None,
              small_cpu: float | None = None) -> list:
    from pmgui.bench.__main__ import Row
    from pmgui.bench.storm import percentile

    p = {"positions": res.positions, "symbols": res.symbols, "rate": res.rate,
         "duration_s": round(res.wall, 2), "pushed": res.pushed, "taken": res.taken,
         "taken_after_1s": res.taken_after, "coalesced": res.coalesced,
         "venue_late_ms": round(res.venue_late * 1e3, 1), "open_after": res.open_after,
         "path": "binanceusdm via ccxt.pro, emulator in its own process, hedge mode"}
    rows = [
        Row(f"{prefix}.ticks_per_s", res.ticks_per_s, "ticks/s", res.rate,
            {**p, "baseline": "offered rate"}),
        Row(f"{prefix}.backlog", float(res.backlog), "ticks", float(res.pushed),
            {**p, "baseline": "ticks pushed"}),
        Row(f"{prefix}.cpu_per_tick", res.cpu_per_tick * 1e6, "µs",
            paper_cpu * 1e6 if paper_cpu else None,
            {**p, "baseline": "paper storm CPU per tick, same size, same run",
             "cpu_s": round(res.cpu, 3)}),
    ]
    if small_cpu:
        rows.append(Row(f"{prefix}.cpu_per_tick_vs_small", res.cpu_per_tick * 1e6, "µs",
                        small_cpu * 1e6,
                        {**p, "baseline": "live CPU per tick at the smallest book"}))
    def ms(values: list[float], q: float) -> float | None:
        v = percentile(values, q)
        return None if math.isnan(v) else round(v * 1e3, 2)

    lat = {**p, "crossings": res.crossings, "closes_booked": len(res.latencies),
           "probes_skipped": res.probes_skipped, "baseline": "target 5 ms",
           "venue_p50_ms": ms(res.venue_parts, 50), "venue_p99_ms": ms(res.venue_parts, 99),
           "pmgui_p50_ms": ms(res.pmgui_parts, 50), "pmgui_p99_ms": ms(res.pmgui_parts, 99),
           "measured": "venue sends the crossing price → the engine booked the close "
                       "(exchange stop filled on the venue)"}
    if res.latencies:
        rows += [Row(f"{prefix}.close_p50", percentile(res.latencies, 50) * 1e3, "ms", 5.0,
                     lat),
                 Row(f"{prefix}.close_p99", percentile(res.latencies, 99) * 1e3, "ms", 5.0,
                     lat)]
    return rows


SIZES = (50, 500)


def bench_live(plan, sizes: tuple[int, ...] = SIZES, duration: float | None = None,
               rate: float = 2000.0, **kw: Any) -> list:
    """The `live` section: each size's live storm beside the paper storm of the same size
    (same rate and duration, in this process) for CPU per tick. `kw` goes to `run_live`."""
    import asyncio

    from pmgui.bench.storm import run_storm

    if duration is None:
        duration = min(20.0, max(10.0, plan.storm_s))
    rows: list = []
    small: float | None = None
    for n in sizes:
        res = run_live(n, rate, duration, **kw)
        res.check()
        paper = asyncio.run(run_storm(n, rate, duration))
        paper.check()
        prefix = "live" if n == 500 else f"live[{n}]"
        rows += live_rows(res, prefix, paper.cpu_per_tick,
                          small if small is not None and n != min(sizes) else None)
        if small is None:
            small = res.cpu_per_tick
    return rows


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pmgui.bench.live")
    ap.add_argument("--positions", type=int, default=500)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--profile", help="py-spy raw output file for pmgui's process")
    args = ap.parse_args(argv)
    spy: list[subprocess.Popen] = []

    def on_storm(pid: int) -> None:
        if args.profile:
            spy.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-r", "200",
                 "-f", "raw", "-o", args.profile, "--nonblocking",
                 "-d", str(int(args.duration)), "--pid", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    from pmgui.bench.storm import percentile

    res = run_live(args.positions, args.rate, args.duration, probes=args.probes,
                   on_storm=on_storm)
    for p in spy:
        p.wait(60)
    out = {k: v for k, v in res.__dict__.items()
           if k not in ("latencies", "venue_parts", "pmgui_parts")}
    out.update(ticks_per_s=round(res.ticks_per_s, 1),
               cpu_per_tick_us=round(res.cpu_per_tick * 1e6, 1), backlog=res.backlog,
               coalesced=res.coalesced, close_p50_ms=round(res.pct(50) * 1e3, 2),
               close_p99_ms=round(res.pct(99) * 1e3, 2),
               close_max_ms=round(max(res.latencies, default=math.nan) * 1e3, 2),
               closes=len(res.latencies),
               venue_p50_ms=round(percentile(res.venue_parts, 50) * 1e3, 2),
               venue_p99_ms=round(percentile(res.venue_parts, 99) * 1e3, 2),
               pmgui_p50_ms=round(percentile(res.pmgui_parts, 50) * 1e3, 2),
               pmgui_p99_ms=round(percentile(res.pmgui_parts, 99) * 1e3, 2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv[1:]:
        code = _child(sys.argv[1:])
        sys.stdout.flush()
        os._exit(code)
    sys.exit(_main(sys.argv[1:]))
