"""`pmgui replay`: the live engine, over the paper exchange, in simulated time (DESIGN §8).

There is no second implementation of the rules here: a recorded price path drives the paper
exchange (which fills protective orders exactly as it does live), and `EngineCore` evaluates
the same policy it runs in the GUI. Time is the data's time, so price-age checks, candle
windows and "after 30 minutes" rules behave as they would have.

Rows with an invalid price are skipped, as the live engine skips such ticks; how many and the
first line numbers go to stderr and the summary (`skipped_rows`, `skipped_lines`); `--strict`
makes them an error. Candle files have a timeframe of their own (the smallest gap between
rows): a rule timeframe coarser than it is built from the file's candles, one finer than it is
an error naming the file's timeframe (candles cannot be split). Tick files build any
timeframe.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Position, Scalar, Tick
from pmgui.domain.timeframes import describe, seconds
from pmgui.engine.core import EngineCore
from pmgui.engine.events import ActionTaken, ErrorEvent, PositionRemoved
from pmgui.engine.ids import sequential_client_ids
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.base import ExchangePosition, OrderUpdate
from pmgui.exchange.csvdata import (
    PriceData,
    describe_lines,
    load_price_csv,
    parse_timestamp,
    symbol_from_filename,
)
from pmgui.exchange.feeds import ReplayFeed
from pmgui.exchange.paper import PaperExchange
from pmgui.rules.params import Params, parse_assignment, resolve_params
from pmgui.rules.policy import indicator_frames
from pmgui.store.db import Store

DEFAULT_TAKER_FEE = 0.0005


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    side: Side
    entry: float
    qty: float
    leverage: float = 1.0
    sl: float | None = None
    tp: float | None = None
    preset: str = "manual"
    overrides: Mapping[str, Scalar] = field(default_factory=dict)
    fee: float = DEFAULT_TAKER_FEE
    slippage: float = 0.0
    symbol: str = "REPLAY/USDT:USDT"
    strict: bool = False  # rows with an invalid price are an error, not skipped
    # open at the first price at or after this time; the rows before it are the market's
    # history (as the venue's candles are live), so indicators are warm at the open
    open_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    actions: tuple[dict, ...]
    summary: dict


def infer_market(symbol: str, data: PriceData, qty: float,
                 levels: Sequence[float | None] = ()) -> Market:
    """A market fine enough not to distort the recorded prices, the trader's `levels`
    (entry, SL, TP), the prices the venue computes (a slipped fill, the liquidation price,
    a trailing stop) or the requested size.

    The file's decimals are not the venue's tick: a file of whole-number prices rounded
    `--sl 98.6` to 99 (stopped out by a price of 99), a 0.1 % slippage on 97 to nothing and
    a 20x long's liquidation at 95.4 to 95. So the tick is also at most a hundred-millionth
    of the lowest price seen (as fine as `_step_of` goes), which no price path notices."""
    # The amount step is fine, not the decimals of --qty: a whole-number quantity must still
    # allow partial exits (TP1 closes 50% of `--qty 1`); and no coarser than them: with
    # `--qty 0.123456789` a close of the whole was floored to 0.12345678, leaving 9e-9 open.
    prices = _prices(data) + [v for v in levels if v is not None and 0.0 < v < math.inf]
    low = min(prices, default=1.0)
    fine = 10.0 ** max(math.floor(math.log10(low)) - 8, -10)
    return Market(symbol, tick_size=min(_step_of(prices), fine),
                  amount_step=min(_step_of([qty]), 1e-8), min_amount=0.0, min_notional=0.0,
                  mmr=0.004)


def _prices(data: PriceData) -> list[float]:
    if data.kind == "ticks":
        return [t.price for t in data.ticks[:2000]]
    out: list[float] = []
    for c in data.candles[:500]:
        out += [c.open, c.high, c.low, c.close]
    return out


def _step_of(values: list[float]) -> float:
    decimals = 0
    for v in values:
        text = f"{v:.10f}".rstrip("0")
        if "." in text:
            decimals = max(decimals, len(text.split(".")[1]))
    return 10.0 ** -min(decimals, 10)


class _ReplaySink:
    """Opens the position on the first tick (or the first at/after `open_at`: the earlier
    rows are history the venue has seen), then forwards."""

    def __init__(self, engine: EngineCore, paper: PaperExchange, req: ReplayRequest,
                 progress: Callable[[float], None] | None) -> None:
        self.engine, self.paper, self.req = engine, paper, req
        self.opened: Position | None = None
        self.progress = progress
        self.n = 0

    async def on_tick(self, tick: Tick) -> None:
        if self.opened is None:
            if self.req.open_at is not None and tick.ts < self.req.open_at:
                return  # history: the venue records it, no position yet
            await self._open(tick)
            if self.progress is None:  # from now on the venue's ticks go straight on
                self.on_tick = self.engine.on_tick  # type: ignore[method-assign]
        self.n += 1
        if self.progress and self.n % 2000 == 0:
            self.progress(tick.ts)
        await self.engine.on_tick(tick)

    def on_tick_run(self, ticks: Sequence[Tick], low: float, high: float,
                    volumes: Sequence[float] | None) -> bool:
        """The engine's `on_tick_run` once the position is open (before, each tick is
        `on_tick`'s: the one that opens it must be found)."""
        if self.opened is None or not self.engine.on_tick_run(ticks, low, high, volumes):
            return False
        if self.progress:
            before, self.n = self.n, self.n + len(ticks)
            if before // 2000 != self.n // 2000:
                self.progress(ticks[-1].ts)
        return True

    async def on_candle(self, symbol, candle, closed) -> None:
        await self.engine.on_candle(symbol, candle, closed)

    async def on_order_update(self, update: OrderUpdate) -> None:
        await self.engine.on_order_update(update)

    async def on_connection(self, state) -> None:
        await self.engine.on_connection(state)

    async def _open(self, tick: Tick) -> None:
        r = self.req
        self.paper.seed_position(r.symbol, r.side, r.qty, r.entry, r.leverage, ts=tick.ts)
        self.engine._last[r.symbol] = tick  # the first price is known before the open
        self.opened = await self.engine.adopt(
            ExchangePosition(r.symbol, r.side, r.qty, r.entry, r.leverage, opened_at=tick.ts),
            sl=r.sl, tp=r.tp, preset=r.preset, overrides=r.overrides, entry_fee=r.fee)


def check_timeframes(data: PriceData, params: Params) -> dict[str, tuple[str, ...]]:
    """The timeframes the position's rules read ({timeframe: rules}); ValidationError when one
    is finer than a candle file's own timeframe or not made of whole candles of it."""
    frames = indicator_frames(params)
    if data.kind != "candles" or len(data.candles) < 2:
        return frames
    interval = data.interval
    name = Path(data.source).name if data.source else "the data"
    finer: list[tuple[str, str]] = []
    for tf, rules in frames.items():
        sec = seconds(tf)
        if sec < interval - 1e-9:
            finer += [(r, tf) for r in rules]
        elif abs(sec / interval - round(sec / interval)) > 1e-9:
            raise ValidationError(
                f"{', '.join(f'{r}.timeframe' for r in rules)} is {tf}, which is not a whole "
                f"number of the {describe(interval)} candles of {name}",
                field=f"{rules[0]}.timeframe")
    if finer:
        which = " and ".join(f"{r}.timeframe is {tf}" for r, tf in finer)
        fix = " ".join(f"--set {r}.timeframe={describe(interval)}" for r, _ in finer)
        raise ValidationError(
            f"{which}: finer than the {describe(interval)} candles of {name} (candles cannot be "
            f"split); use {fix} (or coarser), or a file with finer candles or ticks",
            field=f"{finer[0][0]}.timeframe")
    return frames


async def run_replay(data: PriceData, req: ReplayRequest,
                     on_action: Callable[[dict], None] | None = None,
                     progress: Callable[[float], None] | None = None,
                     workdir: Path | None = None, fast: bool = True) -> ReplayResult:
    """Replay `data` for the position `req` describes. `fast=False` runs the reference
    path the fast one must equal: every tick evaluated (no quiet bands), one loop iteration
    and one publication per tick."""
    frames = check_timeframes(data, resolve_params(req.preset, req.overrides))  # fail first
    if req.strict and data.skipped:
        raise ValidationError(
            f"{Path(data.source).name or 'the data'}: {len(data.skipped)} rows with an invalid "
            f"price ({describe_lines(data.skipped)})", field="data")
    market = infer_market(req.symbol, data, req.qty, (req.entry, req.sl, req.tp))
    feed = ReplayFeed(data, symbol=req.symbol)
    notional = req.entry * req.qty
    paper = PaperExchange({req.symbol: market}, feed, balance=max(1e6, notional * 10),
                          taker_fee=req.fee, maker_fee=req.fee, slippage=req.slippage,
                          realtime=False)
    # nothing drains a replay's outbox (its listener takes the actions): it keeps nothing,
    # as a headless engine's does (`Outbox(buffered=False)`), instead of a lock, a keyed
    # dict and up to 10,000 undrained events held to the end
    outbox = Outbox(buffered=False)
    actions: list[dict] = []
    errors: list[str] = []
    removed: list[Position] = []

    def listen(ev) -> None:
        if isinstance(ev, ActionTaken) and ev.symbol == req.symbol and ev.ok:
            row = action_row(ev)
            actions.append(row)
            if on_action:
                on_action(row)
        elif isinstance(ev, ErrorEvent):
            errors.append(ev.message)
        elif isinstance(ev, PositionRemoved):
            removed.append(ev.position)

    outbox.add_listener(listen, types=(ActionTaken, ErrorEvent, PositionRemoved))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = Store.open(Path(tmp) / "replay.db")
        settings = EngineSettings(default_preset=req.preset, overrides=dict(req.overrides),
                                  protect_throttle=0.0, save_interval=math.inf,
                                  candle_window=500,
                                  # the stream's candles: the file's own, or minutes of ticks
                                  candle_timeframe=data.interval if data.kind == "candles"
                                  else feed.timeframe, quiet_bands=fast)
        engine = EngineCore(paper, store, outbox, settings, clock=paper.now,
                            client_ids=sequential_client_ids(paper.now))
        await engine.start()
        sink = _ReplaySink(engine, paper, req, progress)
        # Nothing else runs beside a replay: the venue yields to the loop now and then (not
        # after every tick), and prices and marks are published once per batch.
        if fast:
            paper.yield_every = 256
            engine.hold_marks()
        try:
            await paper.run(sink)
        finally:
            engine.release_marks()
        last = paper.now()
        final = removed[-1] if removed else (
            engine.positions.get(sink.opened.id) if sink.opened else None)
        last_price = engine._last.get(req.symbol)
        await engine.shutdown()
    if sink.opened is None:
        raise ValidationError(
            f"no price at or after --open-at {_fmt_ts(req.open_at or 0.0)} in the data "
            f"(it ends {_fmt_ts(last)})", field="open_at")
    summary = summarize(final, req, last_price, last, errors)
    summary["opened_at"] = sink.opened.opened_at
    summary["skipped_rows"] = len(data.skipped)
    summary["skipped_lines"] = list(data.skipped[:10])
    summary["timeframes"] = {tf: list(rules) for tf, rules in frames.items()}
    if data.kind == "candles":
        summary["data_timeframe"] = describe(data.interval)
    return ReplayResult(tuple(actions), summary)


def action_row(ev: ActionTaken) -> dict:
    a = ev.action
    row: dict = {"ts": a.ts, "type": a.type.value, "reason": a.reason.value,
                 "price": _num(a.price), "qty": _num(a.qty), "sl": _num(a.sl), "tp": _num(a.tp),
                 "rule": a.rule}
    if a.inputs:
        row["inputs"] = {k: _num(v) if isinstance(v, float) else v for k, v in a.inputs.items()}
    return row


def _num(v: float | None) -> float | None:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return round(float(v), 10)


def summarize(pos: Position | None, req: ReplayRequest, last: Tick | None, ts: float,
              errors: list[str]) -> dict:
    margin = req.entry * req.qty / req.leverage if req.leverage else 0.0
    out: dict = {"type": "summary", "exit_reason": None, "exit_price": None,
                 "realized_pnl": 0.0, "roi": 0.0, "open_qty": 0.0, "final_price": None,
                 "ts": ts}
    if pos is not None:
        out["realized_pnl"] = _num(pos.realized_pnl)
        out["roi"] = _num(pos.realized_pnl / margin) if margin else 0.0
        out["open_qty"] = _num(pos.qty) if pos.is_open else 0.0
        out["exit_reason"] = pos.exit_reason
        out["exit_price"] = _num(pos.exit_price)
        out["sl"] = _num(pos.sl)
        out["tp"] = _num(pos.tp)
    if last is not None:
        out["final_price"] = _num(last.price)
    if errors:
        out["errors"] = errors
    return out


def _fmt_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _plain(v: float | None) -> str:
    """A number as the JSON line has it (`_num`: up to 10 decimals), written out in full:
    `:g` kept six significant digits (a BTC price of 101234.56 printed as 101235)."""
    if v is None:
        return "None"
    return f"{v:.10f}".rstrip("0").rstrip(".") or "0"


def _human(row: dict) -> str:
    parts = [_fmt_ts(row["ts"]), f"{row['type']:<8}", f"{row['reason']:<32}",
             f"price {_plain(row['price'])}" if row["price"] is not None else ""]
    if row.get("qty") is not None and row["type"] in ("open", "reduce", "add", "close"):
        parts.append(f"qty {_plain(row['qty'])}")
    if row["type"] in ("open", "move_sl") and row.get("sl") is not None:
        parts.append(f"sl {_plain(row['sl'])}")
    if row["type"] in ("open", "move_tp") and row.get("tp") is not None:
        parts.append(f"tp {_plain(row['tp'])}")
    return "  ".join(p for p in parts if p)


def _open_at(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError as e:
        raise ValidationError(f"--open-at: {e}", field="open_at") from None


@contextmanager
def _frozen_heap() -> Iterator[Callable[[], None]]:
    """The collector paused until `freeze()`, called once the price file is read: what
    exists then — the price data (a tick or candle object per row), the modules — lives to
    the end of the command, and `gc.freeze()` takes it out of the collector's generations,
    so the replay's collections walk only what the replay makes, not every row read (2k of
    ~41k instructions per tick of a 40k-tick replay). Paused until then because the load
    leaves the collector's count at about one per row: the first object made with the
    collector running would start a pass over every row before they are frozen (~800
    instructions per tick). Frozen objects are still freed by reference counting.
    Unfrozen and resumed at the end, as found; not frozen when something froze the heap
    before (an application's own freeze)."""
    enabled = gc.isenabled()
    mine = not gc.get_freeze_count()
    frozen = False

    def freeze() -> None:
        nonlocal frozen
        if mine and not frozen:
            gc.freeze()
            frozen = True
        if enabled:
            gc.enable()

    gc.disable()
    try:
        yield freeze
    finally:
        if frozen:
            gc.unfreeze()
        if enabled:
            gc.enable()


def run_replay_cli(args: argparse.Namespace) -> int:
    overrides: dict[str, Scalar] = {}
    for text in args.overrides:
        k, v = parse_assignment(text)
        overrides[k] = v
    params = resolve_params(args.preset, overrides)
    if not args.data.exists():
        raise ValidationError(f"{args.data}: file not found")
    symbol = args.symbol or symbol_from_filename(args.data)
    strict = bool(getattr(args, "strict", False))
    with _frozen_heap() as freeze:
        data = load_price_csv(args.data, symbol, strict=strict)
        freeze()
        check_timeframes(data, params)
        if data.skipped:
            n = len(data.skipped)
            print(f"warning: {args.data.name}: skipped {n} row{'s' if n != 1 else ''} with "
                  f"an invalid price ({describe_lines(data.skipped)}; first: "
                  f"{data.skipped_reasons[0]}); --strict makes this an error", file=sys.stderr)
        req = ReplayRequest(Side(args.side), args.entry, args.qty, args.leverage, args.sl,
                            args.tp, args.preset, overrides,
                            DEFAULT_TAKER_FEE if args.fee is None else args.fee,
                            args.slippage, symbol, strict,
                            _open_at(getattr(args, "open_at", None)))
        total = len(data)
        end_ts = data.ticks[-1].ts if data.kind == "ticks" else data.candles[-1].ts
        start_ts = data.ticks[0].ts if data.kind == "ticks" else data.candles[0].ts
        show_progress = sys.stderr.isatty() and total > 5000

        def progress(ts: float) -> None:
            frac = 0.0 if end_ts <= start_ts else (ts - start_ts) / (end_ts - start_ts)
            bar = "#" * int(frac * 40)
            print(f"\r[{bar:<40}] {frac:6.1%}", end="", file=sys.stderr, flush=True)

        def emit(row: dict) -> None:
            print(json.dumps(row) if args.json else _human(row), flush=False)

        result = asyncio.run(run_replay(data, req, emit, progress if show_progress else None))
    if show_progress:
        print(file=sys.stderr)
    s = result.summary
    if args.json:
        print(json.dumps(s))
    else:
        print(f"exit: {s['exit_reason'] or 'still open'} @ {_plain(s['exit_price'])}  realized "
              f"P/L {s['realized_pnl']:+.4f}  ROI {s['roi']:+.2%}  final price "
              f"{_plain(s['final_price'])}")
        for e in s.get("errors", []):
            print(f"warning: {e}", file=sys.stderr)
    return 0
