"""The chart over the real engine thread and the real paper exchange: older candles of a
coarse timeframe are asked of the engine (GetCandles) and shown, for display only."""

from __future__ import annotations

import itertools
import time

import pytest
from PySide6.QtCore import Qt

from pmgui.domain.errors import ValidationError
from pmgui.engine.commands import CandlesSnapshot, GetCandles
from pmgui.ui.main_window import MainWindow
from tests.ui_doubles import paper_engine


@pytest.fixture
def engine(tmp_path):
    with paper_engine(tmp_path / "p.db", seed=7, demo_positions=True) as eng:
        yield eng


def _shown(qtbot, engine) -> MainWindow:
    """The window over the engine, shown at 1400×900, once it has a position selected."""
    win = MainWindow(engine)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitUntil(lambda: win.selected_snapshot() is not None, timeout=20_000)
    return win


def test_get_candles_is_answered_on_the_engine_thread_with_completed_candles(engine):
    symbol = "BTC/USDT:USDT"
    snap = engine.submit(GetCandles(symbol, "4h", 50)).result(30)
    assert isinstance(snap, CandlesSnapshot) and snap.timeframe == "4h"
    assert len(snap.candles) == 50
    ts = [c.ts for c in snap.candles]
    assert ts == sorted(ts) and all(b - a == 14_400 for a, b in itertools.pairwise(ts))
    assert all(t % 14_400 == 0 for t in ts)
    assert ts[-1] + 14_400 <= time.time() + 1  # completed candles only
    for bad, why in ((GetCandles(symbol, "2h", 10), "unknown timeframe"),
                     (GetCandles(symbol, "1h", 0), "limit"),
                     (GetCandles("NOPE/USDT:USDT", "1h", 10), "unknown symbol")):
        with pytest.raises(ValidationError, match=why):
            engine.submit(bad).result(30)


def test_the_4h_chart_shows_the_engines_history_after_a_restart(qtbot, engine):
    win = _shown(qtbot, engine)
    chart = win.chart
    symbol = chart.symbol
    qtbot.waitUntil(lambda: len(chart.candles()) > 0, timeout=20_000)
    minutes = chart.candles()
    span = minutes[-1].ts - minutes[0].ts
    assert span < 2 * 86_400  # the published 1-minute window: a few 4h candles at most
    qtbot.mouseClick(chart.tf_buttons["4h"], Qt.MouseButton.LeftButton)
    assert chart.timeframe == "4h"
    qtbot.waitUntil(lambda: len(chart.candles()) >= 100, timeout=20_000)  # the GUI never waited
    shown = chart.candles()
    engine_4h = engine.submit(GetCandles(symbol, "4h", 300)).result(30).candles
    first_own = chart._series[symbol].candles[0].ts
    older = [c for c in shown if c.ts + 14_400 <= first_own]
    assert older and older == [c for c in engine_4h if c.ts in {o.ts for o in older}]
    assert [c.ts for c in shown] == sorted({c.ts for c in shown})  # no bucket twice
    chart.grab().save("/tmp/pmgui_chart_4h_history.png")
    win.ask_before_quit = False


def test_history_fills_only_what_the_base_candles_do_not_cover():
    """The partial first hour of the base candles is the engine's complete hour instead;
    later hours come from the base candles (they are newer than any answer)."""
    from pmgui.ui.chart_candles import CandleSeries
    from tests.ui_doubles import candles

    series = CandleSeries()
    t0 = 1_763_700_000.0 - 1_763_700_000.0 % 3600 + 1800  # half past an hour
    series.merge(candles(120, t0=t0))
    hours = candles(10, start=30_000.0, t0=t0 - 1800 - 8 * 3600, width=3600.0)
    series.set_history(3600.0, hours)
    shown = series.view(3600.0)
    ts = [c.ts for c in shown]
    assert ts == sorted(set(ts))
    assert shown[:9] == list(hours[:9])  # up to and including the partial hour: the engine's
    assert shown[9].ts == t0 + 1800 and shown[9].open == series.candles[30].open
    assert series.view(60.0) == list(series.candles)  # the base timeframe is untouched


def test_the_chandelier_line_is_the_engines_and_matches_an_independent_computation(
        qtbot, engine):
    """A position switched to breakout (chandelier 22×3 on 1h): the chart's thin line comes
    from the engine (warm at once from the venue's 1h history) and its newest level equals
    HH(22) − 3·ATR(22) computed here with a fresh IndicatorSet over the engine's 1h candles."""
    from pmgui.domain.enums import Side
    from pmgui.engine.commands import SetPreset
    from pmgui.indicators import IndicatorSet, IndicatorSpec

    win = _shown(qtbot, engine)
    chart = win.chart
    pos = win.selected_snapshot().position
    assert engine.submit(SetPreset(pos.id, "breakout")).result(30).ok
    qtbot.waitUntil(lambda: chart.indicator() is not None
                    and chart.indicator().name == "Chandelier 22×3 · 1h"
                    and len(set(chart.indicator().ys)) > 50, timeout=30_000)
    ind = chart.indicator()  # the past came from the engine (days of hours), warm at once
    assert ind.step
    hours = engine.submit(GetCandles(pos.symbol, "1h", 300)).result(30).candles
    ref = IndicatorSet(IndicatorSpec(atr_period=22, channel_period=22))
    for c in hours:
        ref.update(c)
    snap = ref.snapshot()
    want = (snap.highest_high - 3 * snap.atr if pos.side is Side.LONG
            else snap.lowest_low + 3 * snap.atr)
    assert ind.last == pytest.approx(want, rel=1e-6)
    assert chart.indicator_tag.isVisible() and "Chandelier 22×3 · 1h" in \
        chart.indicator_tag.toPlainText()
    assert chart.readout.text().strip() == ""  # nothing "warming"
    chart.grab().save("/tmp/pmgui_chart_chandelier_engine.png")
    win.ask_before_quit = False
