"""Closed-trade metrics on a small concrete history, through a real store."""

from __future__ import annotations

import math

import pytest

from pmgui.domain.enums import ActionType, PositionStatus, Reason, Side, StopKind
from pmgui.domain.models import Action, Position, Tranche
from pmgui.domain.money import trade_r
from pmgui.store import Store, TradeMetrics
from pmgui.store.metrics import compute_metrics


def closed(pid: str, *, side: Side = Side.LONG, entry: float = 100.0, qty: float = 2.0,
           initial_sl: float | None = 95.0, pnl: float, opened: float, closed_at: float,
           flags: frozenset[str] = frozenset(), sl_kind: StopKind = StopKind.INITIAL,
           exit_reason: str = "stop_loss", tranches: tuple[Tranche, ...] = ()) -> Position:
    return Position(id=pid, symbol="BTC/USDT:USDT", side=side, qty=0.0, entry=entry,
                    leverage=10, opened_at=opened, initial_qty=qty, initial_sl=initial_sl,
                    status=PositionStatus.CLOSED, realized_pnl=pnl, closed_at=closed_at,
                    exit_reason=exit_reason, flags=flags, sl_kind=sl_kind, tranches=tranches)


def history() -> list[Position]:
    """Four closed trades. Risk per trade with an R: |100 − 95| · 2 = 10 quote."""
    return [
        # A: TP1 then TP2 then trailed out: +25 → +2.5R, held 600 s
        closed("A", pnl=25.0, opened=0.0, closed_at=600.0,
               flags=frozenset({"tp1_done", "breakeven_set"}), sl_kind=StopKind.TRAILING,
               exit_reason="trailing_stop"),
        # B: plain stop-out: −10 → −1R, held 300 s
        closed("B", pnl=-10.0, opened=1000.0, closed_at=1300.0),
        # C: short, TP1 (from its action log), added on, breakeven stop: +5 → +0.5R, 1200 s
        closed("C", side=Side.SHORT, initial_sl=105.0, pnl=5.0, opened=2000.0,
               closed_at=3200.0, exit_reason="breakeven_stop",
               tranches=(Tranche("c1", 2.0, 100.0, 2000.0),
                         Tranche("c2", 1.0, 98.0, 2100.0, source="add_on"))),
        # D: no stop → no R; a small loss, held 900 s
        closed("D", initial_sl=None, pnl=-3.0, opened=5000.0, closed_at=5900.0,
               exit_reason="manual"),
    ]


def test_compute_metrics_on_concrete_history():
    reasons = {"C": {Reason.TP1.value, Reason.ADD_ON.value}, "B": {Reason.TRAILING.value}}
    # B's trailing action: a trailing move that later stopped out at the initial kind
    m = compute_metrics(history(), reasons)
    assert m == TradeMetrics(
        count=4, wins=2, losses=2, win_rate=0.5,
        avg_r=pytest.approx((2.5 - 1.0 + 0.5) / 3),
        tp1_hit_rate=pytest.approx(2 / 3), tp2_hit_rate=0.0,
        avg_hold_seconds=(600 + 300 + 1200 + 900) / 4,
        breakeven_count=2, trailing_count=2, add_on_count=1, total_pnl=17.0)


def test_trade_r_uses_first_entry_and_contract_size():
    p = closed("X", entry=99.0, pnl=20.0, opened=0.0, closed_at=1.0,
               tranches=(Tranche("x1", 2.0, 100.0, 0.0), Tranche("x2", 1.0, 97.0, 0.5)))
    assert trade_r(p) == pytest.approx(2.0)  # risk |100 − 95|·2 = 10
    assert trade_r(p.evolve(contract_size=0.5)) == pytest.approx(4.0)
    assert trade_r(p.evolve(initial_sl=None)) is None
    assert trade_r(p.evolve(initial_sl=100.0)) is None  # stop on the entry: no R


def test_empty_history_is_all_finite_zero_or_none():
    m = compute_metrics([])
    assert m == TradeMetrics()
    assert m.avg_r is None and m.tp1_hit_rate is None and m.tp2_hit_rate is None
    for v in (m.win_rate, m.avg_hold_seconds, m.total_pnl):
        assert v == 0.0 and math.isfinite(v)


def test_store_trade_metrics_reads_closed_positions_and_ok_actions(db_path):
    with Store.open(db_path) as s:
        assert s.trade_metrics() == TradeMetrics()
        for p in history():
            s.save_position(p)
        # an open position with TP1 does not count
        s.save_position(Position(id="open", symbol="S", side=Side.LONG, qty=1.0, entry=1.0,
                                 leverage=1, opened_at=0.0, initial_qty=1.0, initial_sl=0.5,
                                 flags=frozenset({"tp1_done"})))
        def act(pid: str, reason: Reason, ok: bool = True) -> None:
            s.record_action(Action(type=ActionType.MOVE_SL, reason=reason, position_id=pid,
                                   price=100.0, sl=101.0), symbol="BTC/USDT:USDT", ok=ok)
        act("C", Reason.TP1)
        act("C", Reason.ADD_ON)
        act("B", Reason.TRAILING)
        act("D", Reason.TP2, ok=False)  # failed actions are not counted
        act("B", Reason.TP2, ok=False)
        m = s.trade_metrics()
    assert m.count == 4 and m.wins == 2 and m.losses == 2 and m.win_rate == 0.5
    assert m.avg_r == pytest.approx(2.0 / 3)
    assert m.tp1_hit_rate == pytest.approx(2 / 3) and m.tp2_hit_rate == 0.0
    assert m.avg_hold_seconds == 750.0
    assert (m.breakeven_count, m.trailing_count, m.add_on_count) == (2, 2, 1)
    assert m.total_pnl == 17.0
