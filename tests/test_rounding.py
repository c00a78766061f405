"""Numbers are shown to the market's precision in the command line and logs too."""

from __future__ import annotations

from pmgui.cli import _positions
from pmgui.store.db import Store
from pmgui.ui.fmt import plain_price, plain_qty, venue_decimals
from tests.ui_doubles import BTC, position


def test_plain_numbers_follow_the_tick_and_step():
    assert plain_price(87125.7208, BTC) == "87125.7"
    assert plain_price(0.31702905600000003, None, 5) == "0.31703"
    assert plain_qty(0.123456, BTC) == "0.123"
    assert plain_price(None) == "—"
    assert venue_decimals(87517.5, [87125.7, 90125.0]) == 1
    assert venue_decimals(0.32006, []) == 5
    assert venue_decimals(1234.5678901234, []) == 3  # an averaged entry: capped


def test_positions_command_prints_levels_to_the_venues_precision(tmp_path, capsys):
    db = tmp_path / "pmgui.db"
    st = Store.open(db)
    try:
        st.save_position(position("p1", entry=87_517.5, sl=87_125.7208, tp=90_125.0))
        st.save_position(position("p2", "DOGE/USDT:USDT", entry=0.32006,
                                  sl=0.31702905600000003, tp=0.3392))
    finally:
        st.close()
    assert _positions(db, False) == 0
    out = capsys.readouterr().out
    assert "SL 87125.7  TP 90125.0" in out
    assert "SL 0.31703  TP 0.33920" in out
    assert "87125.7208" not in out and "0.317029056" not in out
