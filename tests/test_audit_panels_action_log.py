"""Audit of the action log as a trader reads it: every decision with its reason *and* the
inputs that made it (DESIGN §6/§7: "every rule decision … with its reason and inputs"),
written plainly (no None, nan or 1e-05)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from pmgui.domain.enums import ActionType, Reason
from pmgui.domain.models import Action, Market
from pmgui.engine.events import ActionTaken
from pmgui.engine.outbox import Outbox
from pmgui.ui.action_log import ActionLogPanel
from pmgui.ui.bridge import Bridge
from pmgui.ui.theme import make_theme
from tests.ui_doubles import BTC, T0

PEPE = Market("1000PEPE/USDT:USDT", tick_size=0.0000001, amount_step=1.0, min_amount=1.0,
              base="1000PEPE", quote="USDT")


@pytest.fixture
def rig(qtbot):
    ob = Outbox()
    br = Bridge(ob)
    markets = {m.symbol: m for m in (BTC, PEPE)}
    log = ActionLogPanel(br, markets.get, make_theme("dark"), lambda _pid: None)
    qtbot.addWidget(log)
    log.resize(700, 300)
    log.show()
    qtbot.waitExposed(log)
    return ob, br, log


def test_a_rule_decisions_inputs_are_readable_in_the_log(rig):
    ob, br, log = rig
    a = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 40_300.0, sl=39_400.0,
               rule="trailing", ts=T0,
               inputs={"atr": 120.5, "atr_mult": 3.0, "highest_high": 40_761.0})
    ob.publish(ActionTaken(a, BTC.symbol))
    br.flush_now()
    assert log.rowCount() == 1
    assert log.text(0, 2) == "trailing"
    shown = log.log_model.item(0, 3)
    assert shown is not None  # the row on screen has its cells
    tip = shown.data(Qt.ItemDataRole.ToolTipRole)
    assert "atr 120.5" in tip and "atr mult 3" in tip and "highest high 40,761.0" in tip
    assert "rule trailing" in tip
    assert log.tooltip(0, 2) == tip  # the reason cell explains it too


def test_inputs_never_show_none_nan_or_exponents(rig):
    ob, br, log = rig
    a = Action(ActionType.CLOSE, Reason.MOMENTUM_LOSS, "p2", 0.0000123, qty=1_000_000.0,
               rule="momentum", ts=T0,
               inputs={"roi": 0.0000123, "peak_roi": float("nan"), "ema": None,
                       "give_back": 0.35})
    ob.publish(ActionTaken(a, PEPE.symbol, True, "filled 1000000 @ 0.0000123"))
    br.flush_now()
    tip = log.tooltip(0, 3)
    assert "roi 0.0000123" in tip and "give back 0.35" in tip
    assert "peak roi —" in tip and "ema —" in tip
    for bad in ("None", "nan", "e-0", "inf"):
        assert bad not in tip, tip
    assert "filled 1000000 @ 0.0000123" in tip and log.text(0, 3) == "filled 1000000 @ 0.0000123"


def test_a_reconcile_note_without_a_price_is_explained_without_a_zero_price(rig):
    """Reconciliation's notes carry no price (0.0) and their note as an input: the hover
    said "at 0.00" and the note twice."""
    ob, br, log = rig
    note = "order sl-7 (BTC/USDT:USDT) cancelled outside pmgui"
    a = Action(ActionType.MOVE_SL, Reason.RECONCILE, "", 0.0, rule="reconcile", ts=T0,
               inputs={"note": note})
    ob.publish(ActionTaken(a, "", True, note))
    br.flush_now()
    tip = log.tooltip(0, 3)
    assert "0.00" not in tip and tip.count(note) == 1 and "rule reconcile" in tip
    assert log.text(0, 3) == note
