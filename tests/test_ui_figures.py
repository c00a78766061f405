"""The account's per-position terms are `figures`' own numbers (the panel sums them)."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import Side
from pmgui.domain.models import Market
from pmgui.ui.figures import account_terms, figures
from tests.ui_doubles import BTC, position, snapshot

prices = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
marks = st.one_of(prices, st.none(), st.just(math.nan), st.just(0.0), st.just(-5.0))


@settings(max_examples=300, deadline=None)
@given(side=st.sampled_from(list(Side)), qty=st.floats(0.001, 100), entry=prices,
       mark=marks, leverage=st.sampled_from([0.0, 1.0, 3.0, 125.0]),
       fee_rate=st.sampled_from([0.0, 0.0004, 0.001]),
       fees_paid=st.sampled_from([0.0, 1.5]), initial=st.sampled_from([1.0, 2.0]),
       contract=st.sampled_from([1.0, 0.01]),
       market=st.sampled_from([None, BTC, Market("X/USDT:USDT", 0.1, 0.001, mmr=0.01)]))
def test_account_terms_are_the_figures_the_account_sums(side, qty, entry, mark, leverage,
                                                        fee_rate, fees_paid, initial,
                                                        contract, market):
    p = position(side=side, qty=qty, entry=entry, leverage=leverage, fee_rate=fee_rate,
                 fees_paid=fees_paid, contract_size=contract, sl=entry * 0.9)
    p = replace(p, initial_qty=qty * initial)
    snap = snapshot(p, mark)
    f = figures(snap, market)
    assert account_terms(snap, market) == (f.pnl or 0.0, f.margin, f.maintenance)


def test_the_account_panel_sums_what_account_figures_sums(qtbot):
    """The panel keeps each position's terms while its snapshot is the same and sums them
    in one loop: the same figures as `account_figures` over its positions, also after a
    position's snapshot changed (a kept term must not outlive its snapshot)."""
    from pmgui.ui.figures import account_figures
    from tests.ui_doubles import ETH, T0, account_panel

    eng, _br, panel = account_panel(qtbot)
    a, b = position("a"), position("b", ETH.symbol, entry=3000.0, sl=2900.0, tp=3300.0)
    snaps = [snapshot(a, 40_500.0), snapshot(b, 3_010.0)]
    panel.on_positions(snaps)

    def expected():
        return account_figures(10_000.0, list(panel._snaps.values()), eng.market)

    assert panel.figures() == expected()
    panel.on_positions([snapshot(a, 39_000.0, T0 + 1)])  # the same position, a new mark
    assert panel.figures() == expected()
    assert panel.figures().unrealized < 0


def test_the_account_computes_terms_only_for_the_positions_that_changed(qtbot, monkeypatch):
    """Incremental sums: a new snapshot of one position computes that position's terms
    again, not every position's (the sums are then the same as `account_figures`')."""
    from pmgui.ui import panels
    from pmgui.ui.figures import account_figures
    from tests.ui_doubles import T0, account_panel

    eng, _br, panel = account_panel(qtbot)
    panel.on_positions([snapshot(position(f"p{i}"), 40_000.0 + i) for i in range(50)])
    panel.refresh()
    seen: list[str] = []
    real = panels.account_terms

    def counted(snap, market):
        seen.append(snap.position.id)
        return real(snap, market)

    monkeypatch.setattr(panels, "account_terms", counted)
    panel.on_positions([snapshot(position("p7"), 39_000.0, T0 + 1)])
    f = panel.figures()
    assert seen == ["p7"]
    assert f == account_figures(10_000.0, list(panel._snaps.values()), eng.market)


def test_the_account_sums_of_many_positions_are_spread_over_turns(qtbot, monkeypatch):
    """With more changed positions than `ACCOUNT_SLICE`, their terms are computed a slice
    per turn and the labels set once, after the last slice. A position that changes again
    while the slices run is left for the next sums (each position's terms once per sums,
    however slow the turns), which show its newest snapshot: none is left out."""
    from pmgui.ui.figures import account_figures
    from pmgui.ui.fmt import fmt_money
    from pmgui.ui.panels import ACCOUNT_SLICE
    from tests.ui_doubles import T0, account_panel

    eng, br, panel = account_panel(qtbot)
    n = ACCOUNT_SLICE * 3 + 5
    panel.on_positions([snapshot(position(f"p{i}"), 40_000.0) for i in range(n)])
    qtbot.waitUntil(lambda: not br.turns._jobs)
    panel._cooldown.stop()
    steps: list[tuple[str, int]] = []
    real_terms, real_refresh = panel._update_terms, panel.refresh

    def terms(limit=None):
        steps.append((f"slice {limit}", br.turns.runs))
        real_terms(limit)
        if len(steps) == 1:  # a newer snapshot of p0 after its terms, while the slices run
            panel.on_positions([snapshot(position("p0"), 38_000.0, T0 + 2)])

    def refresh(**kw):
        steps.append(("labels", br.turns.runs))
        real_refresh(**kw)

    monkeypatch.setattr(panel, "_update_terms", terms)
    monkeypatch.setattr(panel, "refresh", refresh)
    before = panel.text("upnl")
    panel.on_positions([snapshot(position(f"p{i}"), 39_000.0, T0 + 1) for i in range(n)])
    assert steps == []  # nothing summed inside the call
    qtbot.waitUntil(lambda: [k for k, _run in steps].count("labels") == 2)  # two sums
    qtbot.waitUntil(lambda: not br.turns._jobs)
    kinds = [k for k, _run in steps]
    s = ACCOUNT_SLICE
    assert kinds == [f"slice {s}"] * 3 + ["slice 5", "labels", "slice 1", "labels"]
    runs = [run for _k, run in steps]
    assert runs[:4] == sorted(set(runs[:4]))  # a slice per turn
    assert runs[4] == runs[3] and runs[6] == runs[5]  # the labels with the last slice
    want = account_figures(10_000.0, list(panel._snaps.values()), eng.market)
    assert panel._snaps["p0"].mark == 38_000.0 and not panel._changed
    assert panel.text("upnl") == f"Unrealized {fmt_money(want.unrealized, 'USDT')}" != before
    assert panel.figures() == want
