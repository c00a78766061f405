"""A position's rules' candles and indicators are loaded when it is opened or restored
(`EngineCore.warm_up`), not on its symbol's first tick; the tick path keeps the lazy load as
the fallback: it waits for a warm-up under way (one fetch per timeframe, never rules on half a
history) and works when the warm-up failed or was stopped."""

from __future__ import annotations

import asyncio
import logging

from pmgui.domain.enums import Side
from pmgui.domain.errors import ExchangeError
from pmgui.domain.models import Candle, Tick
from pmgui.engine import commands as cmd
from pmgui.engine import core as core_module
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.feeds import CandleClosed
from tests.engine_support import SYMBOL, Harness
from tests.paper_support import RecordingSink

H = 3600.0
T0 = 1_700_006_400.0
NOW = T0 + 30 * 60.0 + 1
OVER = {"trailing.enabled": True, "trailing.mode": "chandelier", "trailing.timeframe": "1h",
        "trailing.atr_period": 3}


def _minutes(start: float, n: int) -> list[Candle]:
    out = []
    for i in range(n):
        o = 100.0 + (i % 7) * 0.3 + i * 0.01
        c = o + (0.2 if i % 3 else -0.25)
        out.append(Candle(start + 60.0 * i, o, max(o, c) + 0.15, min(o, c) - 0.1, c, 10.0))
    return out


class Fetches:
    """The venue's `fetch_ohlcv`, counted; `gate` (when set) holds each rule timeframe's
    fetch until opened (the start-up's 1m stream history passes), `fail` makes them raise."""

    def __init__(self, h: Harness) -> None:
        self.calls: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False
        self._orig = h.paper.fetch_ohlcv
        h.paper.fetch_ohlcv = self  # type: ignore[method-assign]

    async def __call__(self, symbol: str, timeframe: str = "1m", limit: int = 200
                       ) -> list[Candle]:
        self.calls.append((symbol, timeframe))
        if self.gate is not None and timeframe != "1m":
            await self.gate.wait()
        if self.fail:
            raise ExchangeError("venue down")
        return await self._orig(symbol, timeframe, limit)

    def frames(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[1] != "1m"]  # the start-up's stream history apart


async def _venue_with_history(db_path) -> tuple[Harness, Fetches]:
    h = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    await h.paper.connect()
    rec = RecordingSink()
    for c in _minutes(T0 - 10 * H, 10 * 60 + 30):
        await h.paper.deliver(CandleClosed(SYMBOL, c), rec)
    return h, Fetches(h)


async def _open(h: Harness) -> str:
    await h.paper.deliver(Tick(SYMBOL, 100.5, NOW), h.engine)
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.1, 5, sl=90.0,
                                                 preset="manual", overrides=OVER))
    assert res.ok
    return res.position_id


def _record_evaluations(monkeypatch, h: Harness) -> list[int]:
    """How many hourly candles the engine holds each time the rules evaluate."""
    seen: list[int] = []
    evaluate = core_module.evaluate

    def counting(pos, mkt, params):
        seen.append(len(h.engine.market.candles(SYMBOL, "1h")))
        return evaluate(pos, mkt, params)

    monkeypatch.setattr(core_module, "evaluate", counting)
    return seen


async def test_history_is_loaded_at_open_and_restore_not_on_the_first_tick(db_path,
                                                                         monkeypatch):
    h, fetches = await _venue_with_history(db_path)
    await h.engine.start()
    await _open(h)
    await h.engine.warmed_up()
    assert fetches.frames() == [(SYMBOL, "1h")]  # at the open, beside it
    assert h.engine.market.candles(SYMBOL, "1h")
    seen = _record_evaluations(monkeypatch, h)
    await h.paper.deliver(Tick(SYMBOL, 100.6, NOW + 1), h.engine)
    assert seen and fetches.frames() == [(SYMBOL, "1h")]  # the first tick fetched nothing
    await h.engine.shutdown()

    # restored: loaded by the start-up, after protection, before `start` returns
    again = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    fetches = Fetches(again)
    await again.engine.start()
    assert fetches.frames() == [(SYMBOL, "1h")]
    assert again.engine.market.frames_ready(SYMBOL, ("1h",))
    await again.paper.deliver(Tick(SYMBOL, 100.7, NOW + 2), again.engine)
    assert fetches.frames() == [(SYMBOL, "1h")]
    await again.engine.shutdown()


async def test_a_first_tick_during_the_warm_up_waits_for_its_load(db_path, monkeypatch):
    """One fetch per timeframe, and the rules never evaluate on a history still to come."""
    h, fetches = await _venue_with_history(db_path)
    await h.engine.start()
    fetches.gate = asyncio.Event()
    await _open(h)
    for _ in range(5):
        await asyncio.sleep(0)
    assert fetches.frames() == [(SYMBOL, "1h")]  # the warm-up's fetch, held
    seen = _record_evaluations(monkeypatch, h)
    tick = asyncio.create_task(h.paper.deliver(Tick(SYMBOL, 100.6, NOW + 1), h.engine))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not tick.done() and seen == []  # waiting for the load under way
    fetches.gate.set()
    await tick
    await h.engine.warmed_up()
    assert fetches.frames() == [(SYMBOL, "1h")]  # no second fetch
    assert seen and seen[0] > 0  # evaluated on the loaded history
    await h.engine.shutdown()


async def test_the_first_tick_works_when_the_warm_up_failed(db_path, monkeypatch, caplog):
    h, fetches = await _venue_with_history(db_path)
    await h.engine.start()
    fetches.fail = True
    with caplog.at_level(logging.WARNING, logger="pmgui.engine"):
        await _open(h)
        await h.engine.warmed_up()
        seen = _record_evaluations(monkeypatch, h)
        await h.paper.deliver(Tick(SYMBOL, 100.6, NOW + 1), h.engine)
        await h.paper.deliver(Tick(SYMBOL, 100.7, NOW + 2), h.engine)
    assert seen  # the rules act (on the candles the stream brings), as before
    assert fetches.frames() == [(SYMBOL, "1h")]  # not fetched again on every tick
    assert len([r for r in caplog.records if "no 1h candle history" in r.message]) == 1
    await h.engine.shutdown()


async def test_a_warm_up_stopped_midway_leaves_the_load_to_the_first_tick(db_path,
                                                                         monkeypatch):
    h, fetches = await _venue_with_history(db_path)
    await h.engine.start()
    fetches.gate = asyncio.Event()
    await _open(h)
    for _ in range(5):
        await asyncio.sleep(0)
    [warming] = h.engine._warming
    warming.cancel()
    await asyncio.gather(warming, return_exceptions=True)
    fetches.gate.set()
    seen = _record_evaluations(monkeypatch, h)
    await h.paper.deliver(Tick(SYMBOL, 100.6, NOW + 1), h.engine)
    assert fetches.frames() == [(SYMBOL, "1h"), (SYMBOL, "1h")]  # the tick loaded it
    assert seen and seen[0] > 0
    await h.engine.shutdown()


async def test_a_slow_venue_does_not_hold_the_start_up_back(db_path, monkeypatch):
    """The restored book's warm-ups run side by side and `start` waits for them at most
    `STARTUP_WARM_WAIT` (here none): a fetch still held when `start` returns goes on in the
    background, and the first tick after it finds the history in, fetched once."""
    h, _ = await _venue_with_history(db_path)
    await h.engine.start()
    await _open(h)
    await h.engine.warmed_up()
    await h.engine.shutdown()

    monkeypatch.setattr(core_module, "STARTUP_WARM_WAIT", 0.0)
    again = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    fetches = Fetches(again)
    fetches.gate = asyncio.Event()  # the venue answers no history request for now
    # returns although the warm-up's fetch is held (the bound only turns a start-up that
    # waits for the venue into a failure instead of a hang)
    await asyncio.wait_for(again.engine.start(), 30)
    assert again.engine.started
    assert fetches.frames() == [(SYMBOL, "1h")]
    assert not again.engine.market.frames_ready(SYMBOL, ("1h",))
    fetches.gate.set()
    await again.engine.warmed_up()
    assert again.engine.market.frames_ready(SYMBOL, ("1h",))
    await again.paper.deliver(Tick(SYMBOL, 100.7, NOW + 2), again.engine)
    assert fetches.frames() == [(SYMBOL, "1h")]  # loaded once, by the warm-up
    await again.engine.shutdown()
