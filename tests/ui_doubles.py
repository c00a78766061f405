"""Test doubles and builders for the UI tests (real Outbox, real events, fake engine only).

`EngineDouble` implements pmgui.ui.handle.EngineHandle by recording every submitted
command and answering with a future — completed at once by default, or left pending
(`hold=True`) so a test can check what happens while a command is on its way.

For the end-to-end tests, `paper_engine` runs the real engine thread over the paper venue
instead, and `stored` reads what it left in its database.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmgui.domain.enums import ActionType, Protection, Reason, Side, StopKind
from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Action, Candle, Market, Position, Scalar
from pmgui.domain.money import position_pnl, position_r, position_roi
from pmgui.engine.commands import (
    REQUESTS,
    Command,
    CommandResult,
    EngineInfo,
    GetEngineInfo,
    GetHistory,
    GetSymbolRules,
    SetSymbolRules,
    SymbolRulesSnapshot,
)
from pmgui.engine.events import (
    ActionTaken,
    CandlesEvent,
    PositionSnapshot,
    RuleIndicator,
    TickEvent,
)
from pmgui.engine.outbox import Outbox
from pmgui.rules.params import resolve_params

if TYPE_CHECKING:  # Qt is imported by the UI tests only (test_bench, test_rounding use doubles)
    from pmgui.engine.thread import EngineThread
    from pmgui.store.db import Store
    from pmgui.ui.main_window import MainWindow

T0 = 1_763_700_000.0  # a fixed wall-clock origin for deterministic ages

BTC = Market("BTC/USDT:USDT", tick_size=0.1, amount_step=0.001, min_amount=0.001,
             base="BTC", quote="USDT")
ETH = Market("ETH/USDT:USDT", tick_size=0.01, amount_step=0.01, min_amount=0.01,
             base="ETH", quote="USDT")
SOL = Market("SOL/USDT:USDT", tick_size=0.001, amount_step=0.1, min_amount=0.1,
             base="SOL", quote="USDT")


@dataclass
class EngineDouble:
    outbox: Outbox = field(default_factory=Outbox)
    exchange_id: str = "paper"
    markets: dict[str, Market] = field(
        default_factory=lambda: {m.symbol: m for m in (BTC, ETH, SOL)})
    submitted: list[Command] = field(default_factory=list)
    answer: Callable[[Command], CommandResult] | None = None  # may raise a PmguiError
    hold: bool = False  # commands stay in flight (read-only requests are answered at once)
    hold_requests: bool = False  # … requests too
    held: list[concurrent.futures.Future] = field(default_factory=list)
    db: Path | None = None
    # {symbol: (preset, overrides)} as EngineCore.symbol_rules() returns it
    rules: dict[str, tuple[str, dict[str, Scalar]]] = field(
        default_factory=lambda: {m.symbol: ("guardian", {}) for m in (BTC, ETH, SOL)})
    default_preset: str = "guardian"
    demo: bool | None = None  # what GetEngineInfo says about demo mode
    broken_requests: str | None = None  # every request fails with this message

    def submit(self, cmd: Command) -> concurrent.futures.Future:
        self.submitted.append(cmd)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.hold and (self.hold_requests or not isinstance(cmd, REQUESTS)):
            self.held.append(fut)
            return fut
        try:
            if isinstance(cmd, REQUESTS):
                fut.set_result(self._request(cmd))
            elif self.answer is not None:
                fut.set_result(self.answer(cmd))
            elif isinstance(cmd, SetSymbolRules):
                fut.set_result(self._set_symbol_rules(cmd))
            else:
                fut.set_result(CommandResult(True, "ok"))
        except Exception as e:  # the engine's typed errors travel in the future
            fut.set_exception(e)
        return fut

    def _set_symbol_rules(self, cmd: SetSymbolRules) -> CommandResult:
        """What the engine does: validate with the real resolver, then remember."""
        preset = cmd.preset or self.default_preset
        resolve_params(preset, dict(cmd.overrides))  # raises ValidationError
        self.rules[cmd.symbol] = (preset, dict(cmd.overrides))
        return CommandResult(True, f"{cmd.symbol}: new positions use preset {preset}")

    def _request(self, req: Command) -> object:
        """The engine's own answers (pmgui.engine.queries), over the test's store file."""
        from pmgui.engine import queries

        if self.broken_requests is not None:
            raise PmguiError(self.broken_requests)
        if isinstance(req, GetHistory):
            if self.db is None:
                raise PmguiError("no database: history is not kept in this mode")
            from pmgui.store.db import Store

            store = Store.open(self.db, readonly=True)
            try:
                return queries.history_from_store(store, req, lambda: T0 + 7200)
            finally:
                store.close()
        if isinstance(req, GetSymbolRules):
            return SymbolRulesSnapshot(self.symbol_rules(), queries.preset_names())
        if isinstance(req, GetEngineInfo):
            return EngineInfo(self.exchange_id, self.demo, queries.preset_names())
        raise PmguiError(f"unknown request {req!r}")

    def symbol_rules(self) -> dict[str, tuple[str, dict[str, Scalar]]]:
        return {s: (p, dict(o)) for s, (p, o) in sorted(self.rules.items())}

    def query(self, fn: Callable[[EngineDouble], object]) -> concurrent.futures.Future:
        """Runs `fn(self)` at once (the double is its own core)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            fut.set_result(fn(self))
        except Exception as e:
            fut.set_exception(e)
        return fut

    def market(self, symbol: str) -> Market | None:
        return self.markets.get(symbol)

    def store_path(self) -> Path | None:
        return self.db

    def commands(self) -> list[Command]:
        """What was sent besides read-only requests (the chart asks those by itself)."""
        return [c for c in self.submitted if not isinstance(c, REQUESTS)]

    def of_type(self, kind: type) -> list[Command]:
        return [c for c in self.submitted if isinstance(c, kind)]


def shown_window(qtbot: Any, eng: EngineDouble | None = None, *,
                 size: tuple[int, int] | None = None, exposed: bool = True,
                 clock: Callable[[], float] = lambda: 0.0, **kw: Any) -> MainWindow:
    """A MainWindow on the double, shown as a trader sees it, closed after the test by qtbot.

    Frozen clocks (monotonic `clock`, wall clock T0) so ages and time ranges are
    deterministic; not started (no timers: the test flushes the bridge itself). `size`
    resizes before showing (the chart's geometry depends on it); `exposed` waits until the
    window is on screen, which painting tests need. Other keywords go to MainWindow
    (`settings`, `qsettings`, `defer_chart`…).
    """
    from pmgui.ui.main_window import MainWindow

    kw.setdefault("wall_clock", lambda: T0)
    win = MainWindow(eng if eng is not None else EngineDouble(), clock=clock, start=False,
                     **kw)
    qtbot.addWidget(win)
    if size is not None:
        win.resize(*size)
    win.show()
    if exposed:
        qtbot.waitExposed(win)
    return win


def account_panel(qtbot: Any, outbox: Outbox | None = None,
                  wallet: float | None = 10_000.0) -> tuple[EngineDouble, Any, Any]:
    """The account panel (dark theme) on a Bridge over `outbox` (a new one by default) with
    an EngineDouble's markets and its wallet at `wallet` (None: none known yet), closed
    after the test by qtbot: (the double, the bridge, the panel)."""
    from pmgui.ui.bridge import Bridge
    from pmgui.ui.panels import AccountPanel
    from pmgui.ui.theme import make_theme

    eng = EngineDouble()
    br = Bridge(outbox if outbox is not None else Outbox())
    panel = AccountPanel(br, eng.market, make_theme("dark"))
    qtbot.addWidget(panel)
    if wallet is not None:
        panel._wallet = wallet
    return eng, br, panel


@contextlib.contextmanager
def paper_engine(db: Path, seed: int, demo_positions: bool) -> Iterator[EngineThread]:
    """The real engine thread over the paper venue (its prices from `seed`; the demo
    positions opened at start, or none) on the SQLite file `db`: started, stopped after."""
    from pmgui.config import Config, PaperConfig
    from pmgui.engine.build import build_engine
    from pmgui.engine.settings import EngineSettings

    engine = build_engine(Config(paper=PaperConfig(seed=seed),
                                 engine=EngineSettings(demo_positions=demo_positions)), db)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@contextlib.contextmanager
def stored(db: Path) -> Iterator[Store]:
    """The SQLite file `db` opened read-only (what the engine left in it), closed after."""
    from pmgui.store.db import Store

    store = Store.open(db, readonly=True)
    try:
        yield store
    finally:
        store.close()


def position(pid: str = "p1", symbol: str = BTC.symbol, side: Side = Side.LONG,
             qty: float = 0.5, entry: float = 40_000.0, leverage: float = 10.0,
             sl: float | None = 39_000.0, tp: float | None = 42_000.0, **kw: object
             ) -> Position:
    """A plausible open position; SL defines R (initial_sl = sl unless given)."""
    kw.setdefault("initial_sl", sl)
    kw.setdefault("opened_at", T0 - 600)
    return Position(id=pid, symbol=symbol, side=side, qty=qty, entry=entry,
                    leverage=leverage, initial_qty=qty, sl=sl, tp=tp,
                    **kw)  # type: ignore[arg-type]


def snapshot(pos: Position, mark: float | None, ts: float = T0, *, stale: bool = False,
             protection: Protection = Protection.ON_EXCHANGE,
             indicator: RuleIndicator | None = None) -> PositionSnapshot:
    """A snapshot computed with the real money math, as the engine would publish it."""
    m = mark if mark is not None else pos.entry
    return PositionSnapshot(position=pos, mark=mark, pnl=position_pnl(pos, m),
                            roi=position_roi(pos, m), r=position_r(pos, m),
                            protection=protection, stale=stale, ts=ts, indicator=indicator)


def candles(n: int = 30, start: float = 40_000.0, step: float = 20.0, t0: float = T0 - 1800,
            width: float = 60.0) -> tuple[Candle, ...]:
    out = []
    price = start
    for i in range(n):
        o = price
        c = price + (step if i % 3 else -step / 2)
        out.append(Candle(ts=t0 + i * width, open=o, high=max(o, c) + 8, low=min(o, c) - 8,
                          close=c, volume=1.0))
        price = c
    return tuple(out)


def tick(symbol: str, price: float, ts: float = T0) -> TickEvent:
    return TickEvent(symbol, price, ts)


def candles_event(symbol: str, cs: tuple[Candle, ...]) -> CandlesEvent:
    return CandlesEvent(symbol, cs)


def action(pid: str, symbol: str, kind: ActionType = ActionType.MOVE_SL,
           reason: Reason = Reason.TRAILING, price: float = 40_500.0, ts: float = T0,
           sl: float | None = None, tp: float | None = None, qty: float | None = None,
           ok: bool = True, detail: str = "") -> ActionTaken:
    a = Action(type=kind, reason=reason, position_id=pid, price=price, qty=qty, sl=sl, tp=tp,
               ts=ts, stop_kind=StopKind.TRAILING if kind is ActionType.MOVE_SL else None)
    return ActionTaken(a, symbol, ok, detail)
