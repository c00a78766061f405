"""Positions model: declarative columns, formatting, incremental updates, sorting by value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtCore import Qt

import pmgui.ui.positions_model as pm
from pmgui.domain.enums import Protection, Side
from pmgui.engine.events import PositionSnapshot
from pmgui.ui.fmt import fmt_money, fmt_pct, fmt_price, step_decimals
from pmgui.ui.positions_model import (
    COLUMNS,
    ID_ROLE,
    PositionsModel,
    PositionsProxy,
    column_index,
)
from tests.ui_doubles import BTC, ETH, SOL, T0, EngineDouble, position, snapshot

DISPLAY = Qt.ItemDataRole.DisplayRole


def text(model, row: int, key: str) -> str:
    return model.data(model.index(row, column_index(key)), DISPLAY)


@pytest.fixture
def model(qtbot):
    eng = EngineDouble()
    return PositionsModel(eng.market, clock=lambda: T0)


def test_columns_are_the_designed_set():
    assert [c.key for c in COLUMNS] == [
        "symbol", "side", "qty", "entry", "mark", "pnl", "roi", "r", "sl", "tp", "trailing",
        "liquidation", "liq_dist", "notional", "margin", "funding", "leverage", "mode", "preset",
        "protection", "age"]


def test_row_shows_signed_values_symbols_and_tick_size(model):
    p = position(trailing=39_500.0, liquidation=36_200.0, preset="breakout")
    model.update([snapshot(p, 40_600.0)])
    assert model.rowCount() == 1
    assert text(model, 0, "symbol") == "BTC/USDT:USDT"
    assert text(model, 0, "side") == "▲ LONG"
    assert text(model, 0, "qty") == "0.500"
    assert text(model, 0, "entry") == "40,000.0"  # tick 0.1 → one decimal
    assert text(model, 0, "mark") == "40,600.0"
    # 0.5·600 − fees 0.0005·(20000 + 20300) = 300 − 20.15
    assert text(model, 0, "pnl") == "+$279.85"
    assert text(model, 0, "roi").startswith("+") and text(model, 0, "roi").endswith("%")
    assert text(model, 0, "r") == "+0.56R"  # 279.85 / (1000 risk × 0.5): net of fees too
    assert text(model, 0, "notional") == "20,300.00" and text(model, 0, "margin") == "2,000.00"
    assert text(model, 0, "leverage") == "10×" and text(model, 0, "mode") == "isolated"
    assert text(model, 0, "liq_dist") == "10.8%"  # (40,600 − 36,200) / 40,600
    assert text(model, 0, "sl") == "39,000.0"
    assert text(model, 0, "trailing") == "39,500.0"
    assert text(model, 0, "liquidation") == "36,200.0"
    assert text(model, 0, "preset") == "breakout"
    assert text(model, 0, "protection") == "● exchange"
    assert text(model, 0, "age") == "10m 00s"
    align = model.data(model.index(0, column_index("pnl")), Qt.ItemDataRole.TextAlignmentRole)
    assert align & int(Qt.AlignmentFlag.AlignRight)


def test_short_losing_paused_unprotected_row(model):
    p = position("s1", ETH.symbol, Side.SHORT, qty=3, entry=3000.0, sl=3100.0, tp=2800.0,
                 automation=False)
    model.update([snapshot(p, 3050.0, protection=Protection.UNPROTECTED, stale=True)])
    assert text(model, 0, "side") == "▼ SHORT"
    assert text(model, 0, "pnl").startswith("−$")  # a real minus sign, not colour alone
    assert text(model, 0, "r") == "−0.53R"  # (−150 − 9.075 fees) / 300
    assert text(model, 0, "mark") == "⚠ 3,050.00"
    assert "paused" in text(model, 0, "preset")
    assert text(model, 0, "protection") == "○ UNPROTECTED"
    fg = model.data(model.index(0, column_index("pnl")), Qt.ItemDataRole.ForegroundRole)
    assert fg is not None  # colour repeats the sign


def test_pnl_roi_and_r_agree_in_sign_net_of_fees_with_gross_roe_in_the_tooltip(model):
    # a small favourable move that the fees eat: the exchange's ROE is positive, net is not
    p = position("x", ETH.symbol, qty=100, entry=0.5, sl=0.45, tp=None, leverage=10.0,
                 fees_paid=0.025)
    model.update([snapshot(p, 0.5002)])
    pnl, roi, r = (text(model, 0, k) for k in ("pnl", "roi", "r"))
    assert pnl.startswith("−$") and roi.startswith("−") and r.startswith("−"), (pnl, roi, r)
    tip = model.data(model.index(0, column_index("roi")), Qt.ItemDataRole.ToolTipRole)
    assert "Exchange ROE (gross, before fees) +0.40%" in tip
    assert "Fees −$0.05" in tip and "Gross P/L +$0.02" in tip


def test_missing_and_non_finite_values_show_a_dash(model):
    p = position(sl=None, tp=None)
    bad = PositionSnapshot(position=p, mark=math.nan, pnl=math.inf, roi=math.nan, r=None,
                           protection=Protection.LOCAL_ONLY, stale=False, ts=T0)
    model.update([bad])
    for key in ("mark", "pnl", "roi", "r", "sl", "tp", "trailing", "liquidation"):
        assert text(model, 0, key) == "—", key
    for c in range(model.columnCount()):
        shown = model.data(model.index(0, c), DISPLAY)
        assert "nan" not in shown.lower() and "inf" not in shown.lower()


def test_updates_are_incremental(model):
    inserted, removed, changed, resets = [], [], [], []
    model.rowsInserted.connect(lambda _p, a, b: inserted.append(
        (a, b, model.data(model.index(a, column_index("symbol"))))))
    model.rowsRemoved.connect(lambda _p, a, b: removed.append((a, b)))
    model.dataChanged.connect(lambda tl, br, _r=None: changed.append(
        (tl.row(), tl.column(), br.row(), br.column())))
    model.modelReset.connect(lambda: resets.append(1))
    a = position("a")
    b = position("b", ETH.symbol, entry=3000.0, sl=2900.0, tp=3300.0)
    model.update([snapshot(a, 40_100.0), snapshot(b, 3010.0)])
    # one insertion per new row, announced with its cells written (a view, or a slot
    # selecting the first row, reads them at once)
    assert inserted == [(0, 0, BTC.symbol), (1, 1, ETH.symbol)]
    model.update([snapshot(b, 3020.0, T0 + 1)])
    # only row 1, only the columns that follow the mark (mark to R, to-liq. and notional;
    # qty/entry/SL did not change)
    assert changed == [(1, column_index("mark"), 1, column_index("r")),
                       (1, column_index("liq_dist"), 1, column_index("notional"))]
    model.update([snapshot(b, 3020.0, T0 + 2)])  # same values: nothing to repaint
    assert len(changed) == 2  # (the two blocks above)
    assert model.remove("a") is True
    assert removed == [(0, 0)]
    assert model.remove("a") is False
    assert model.position_ids() == ["b"]
    assert model.data(model.index(0, 0), ID_ROLE) == "b"
    assert resets == []


def test_a_batch_repaints_once_and_formats_only_changed_values(model, monkeypatch):
    changed = []
    model.dataChanged.connect(lambda tl, br, _r=None: changed.append(
        (tl.row(), tl.column(), br.row(), br.column())))
    ps = [position(f"p{i}") for i in range(5)]
    model.update([snapshot(p, 40_000.0 + i) for i, p in enumerate(ps)])
    calls = []
    real = pm.price_text
    monkeypatch.setattr(pm, "price_text", lambda *a, **k: calls.append(a) or real(*a, **k))
    model.update([snapshot(ps[1], 40_101.0, T0 + 1), snapshot(ps[3], 40_103.0, T0 + 1)])
    # over the block of changed rows: one signal per block of columns following the mark
    assert changed == [(1, column_index("mark"), 3, column_index("r")),
                       (1, column_index("liq_dist"), 3, column_index("notional"))]
    assert len(calls) == 2  # only the two changed marks were formatted again (no view:
    # written at once)
    assert text(model, 1, "mark") == "40,101.0" and text(model, 3, "mark") == "40,103.0"
    assert text(model, 2, "mark") == "40,002.0"
    assert len(calls) == 2  # reading formats nothing


def test_rows_off_screen_are_written_when_they_come_into_view(model, monkeypatch):
    """With a view, the rows on screen are written at each update; the others keep their
    mark and sort values current and get the rest when they come into view."""
    ps = [position(f"p{i}") for i in range(4)]
    model.update([snapshot(p, 40_000.0) for p in ps])
    model.visible = lambda: [0]
    model.prepare_sort(column_index("roi"))
    model.update([snapshot(p, 41_000.0, T0 + 1) for p in ps])
    assert [text(model, r, "mark") for r in range(4)] == ["41,000.0"] * 4
    shown_pnl = text(model, 0, "pnl")
    assert text(model, 2, "pnl") != shown_pnl  # not on screen: not written yet
    roi = column_index("roi")  # the sort column: current in every row
    assert model.data(model.index(2, roi), pm.SORT_ROLE) == pytest.approx(
        model.sort_value(0, roi))
    assert text(model, 2, "roi") == text(model, 0, "roi")
    model.refresh_rows([2])
    assert text(model, 2, "pnl") == shown_pnl
    model.refresh_rows(None)
    assert text(model, 3, "pnl") == shown_pnl


def test_price_formatting_follows_each_markets_tick_size():
    assert fmt_price(41250.0, BTC) == "41,250.0"
    assert fmt_price(150.1234, SOL) == "150.123"
    assert fmt_price(41250.04, BTC) == "41,250.0"  # snapped to the tick
    assert fmt_price(math.nan, BTC) == "—"
    assert step_decimals(0.5) == 1 and step_decimals(0.25) == 2 and step_decimals(10) == 0
    assert fmt_money(-92.0, "USDT", 0) == "−$92"
    assert fmt_pct(-0.018, 1) == "−1.8%"


_any_price = st.one_of(st.floats(-2e5, 2e5), st.floats(allow_nan=True, allow_infinity=True),
                      st.integers(-10**6, 10**6), st.none(),
                      st.tuples(st.integers(390_000, 390_010),  # BTC's ticks and between
                                st.sampled_from([0.0, 0.02, 0.05, 0.07, -0.03])).map(
                                    lambda t: t[0] / 10 + t[1]))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_any_price, max_size=40))
def test_the_texts_a_formatter_keeps_per_tick_read_as_fmt_price(values):
    """A formatter keeps the text of each whole number of ticks (most of a storm's prices
    are a look-up); what it shows is `fmt_price`'s text for any price, also once its store
    was full and forgotten (a store of 3 here)."""
    cap = pm._TEXTS_PER_MARKET
    pm._TEXTS_PER_MARKET = 3
    try:
        for market in (BTC, SOL):
            f = pm._price_formatter(market)
            assert [f(v) for v in values + values] == [
                fmt_price(v, market) for v in values + values]  # type: ignore[arg-type]
    finally:
        pm._TEXTS_PER_MARKET = cap


def test_the_shared_price_formatter_is_fmt_price_for_any_sequence_of_prices():
    """One formatter per market, shared by its rows, keeps the text of each whole number of
    ticks it formatted: any sequence — repeats, other prices, ints, nan, None, negatives —
    reads as `fmt_price`."""
    seq = [41_250.0, 41_250.0, 41_250.04, 41_250.0, 41_251.0, 41_251, None, math.nan,
           math.nan, -0.0, 0.0, -12.3, 41_251.0, math.inf, 41_250.04]
    for market in (BTC, SOL):
        f = pm._formatter_of(market)
        assert pm._formatter_of(market) is f  # shared
        assert [f(v) for v in seq] == [fmt_price(v, market) for v in seq]  # type: ignore[arg-type]
        assert [pm.price_text(v, market) for v in reversed(seq)] == [
            fmt_price(v, market) for v in reversed(seq)]  # type: ignore[arg-type]


def sorted_column(proxy, key: str) -> list[str]:
    c = column_index(key)
    return [proxy.data(proxy.index(r, c), DISPLAY) for r in range(proxy.rowCount())]


def test_sorting_is_by_value_not_by_text(model):
    proxy = PositionsProxy()
    proxy.setSourceModel(model)
    # P/L +9.x, +100.x, −5.x: text order would be wrong in both directions
    pa = position("a", entry=100.0, qty=1.0, sl=90.0, tp=None, fee_rate=0.0)
    pb = position("b", entry=100.0, qty=10.0, sl=90.0, tp=None, fee_rate=0.0)
    pc = position("c", entry=100.0, qty=1.0, sl=None, tp=None, fee_rate=0.0)
    model.update([snapshot(pa, 109.0), snapshot(pb, 110.0), snapshot(pc, 95.0)])
    proxy.sort(column_index("pnl"), Qt.SortOrder.AscendingOrder)
    assert sorted_column(proxy, "pnl") == ["−$5.00", "+$9.00", "+$100.00"]
    proxy.sort(column_index("pnl"), Qt.SortOrder.DescendingOrder)
    assert sorted_column(proxy, "pnl") == ["+$100.00", "+$9.00", "−$5.00"]
    # R is undefined for c (no stop): last in both orders
    proxy.sort(column_index("r"), Qt.SortOrder.AscendingOrder)
    assert sorted_column(proxy, "r")[-1] == "—"
    proxy.sort(column_index("r"), Qt.SortOrder.DescendingOrder)
    assert sorted_column(proxy, "r") == ["+1.00R", "+0.90R", "—"]
    # live re-sort when a value changes
    proxy.sort(column_index("pnl"), Qt.SortOrder.DescendingOrder)
    model.update([snapshot(pc, 200.0, T0 + 1)])
    assert sorted_column(proxy, "pnl")[0] == "+$100.00"
    assert proxy.data(proxy.index(0, 0), ID_ROLE) in ("b", "c")
    assert {proxy.data(proxy.index(r, 0), ID_ROLE) for r in range(2)} == {"b", "c"}
    assert proxy.data(proxy.index(2, 0), ID_ROLE) == "a"


def test_age_is_live(qtbot):
    now = [T0]
    m = PositionsModel(EngineDouble().market, clock=lambda: now[0])
    m.update([snapshot(position(), 40_000.0)])
    assert text(m, 0, "age") == "10m 00s"
    seen = []
    m.dataChanged.connect(lambda tl, br, roles=None: seen.append(tl.column()))
    now[0] += 3600
    m.refresh_live()
    assert seen == [column_index("age")]
    assert text(m, 0, "age") == "1h 10m"


def test_a_storm_snapshot_names_only_the_columns_that_can_change(model):
    """Rule memory (best price, peak) changes with every tick and shows nothing: a new mark
    repaints the mark's columns, a trailing move the level columns too, anything else all."""
    import dataclasses

    changed = []
    model.dataChanged.connect(lambda tl, br, _r=None: changed.append((tl.column(), br.column())))
    p = position("a", trailing=39_500.0)
    model.update([snapshot(p, 40_100.0)])
    p2 = dataclasses.replace(p, best_price=40_200.0, peak_roi=0.05)
    model.update([snapshot(p2, 40_200.0, T0 + 1)])
    assert changed == [(column_index("mark"), column_index("r")),
                       (column_index("liq_dist"), column_index("notional"))]
    changed.clear()
    p3 = dataclasses.replace(p2, trailing=39_700.0, best_price=40_300.0)
    model.update([snapshot(p3, 40_300.0, T0 + 2)])
    assert changed == [(column_index("mark"), column_index("notional"))]
    assert text(model, 0, "trailing") == "39,700.0" and text(model, 0, "mark") == "40,300.0"
    changed.clear()
    model.update([snapshot(dataclasses.replace(p3, qty=0.25), 40_300.0, T0 + 3)])
    assert changed == [(0, model.columnCount() - 1)]
    assert text(model, 0, "qty") == "0.250"


def test_an_update_names_the_cells_whose_text_or_colour_changed(model):
    """While `update` tells the view what changed, `shown_changes` names per row the columns
    whose text or colour changed — the view repaints those cells only — including the rows
    on screen written in the same update; None at any other time."""
    seen = []
    model.dataChanged.connect(lambda *_a: seen.append(dict(model.shown_changes or {})))
    ps = [position(f"p{i}") for i in range(3)]
    model.update([snapshot(p, 40_100.0) for p in ps])
    model.visible = lambda: [0, 1]  # rows 0 and 1 on screen
    seen.clear()
    model.update([snapshot(ps[0], 40_200.0, T0 + 1), snapshot(ps[2], 40_300.0, T0 + 1)])
    assert seen, "the view was told"
    cols = {k: 1 << column_index(k) for k in ("mark", "pnl", "roi", "notional", "qty", "sl")}
    on_screen, off_screen = seen[0][0], seen[0][2]
    # on screen: the mark and what follows it (written now); off screen: the mark only
    assert on_screen & cols["mark"] and on_screen & cols["pnl"] and on_screen & cols["notional"]
    assert off_screen == cols["mark"]
    assert not on_screen & (cols["qty"] | cols["sl"])  # not changed: not repainted
    assert 1 not in seen[0]  # row 1 did not change
    assert all(s == seen[0] for s in seen)  # the same for every block signalled
    assert model.shown_changes is None  # only while the view is told
    assert text(model, 0, "mark") == "40,200.0" and text(model, 2, "mark") == "40,300.0"
    # the same mark again: nothing changed, nothing named
    seen.clear()
    model.update([snapshot(ps[0], 40_200.0, T0 + 2)])
    assert seen == []


def test_with_a_view_the_age_of_rows_off_screen_is_written_when_they_come_into_view(qtbot):
    now = [T0]
    m = PositionsModel(EngineDouble().market, clock=lambda: now[0])
    m.update([snapshot(position("a"), 40_000.0), snapshot(position("b"), 40_000.0)])
    m.visible = lambda: [0]
    now[0] += 3600
    m.refresh_live()
    assert text(m, 0, "age") == "1h 10m"  # on screen: now
    assert text(m, 1, "age") == "10m 00s"  # off screen: when it comes into view
    m.refresh_rows([1])
    assert text(m, 1, "age") == "1h 10m"
