"""Audit of the account bar as a trader reads it through a long session."""

from __future__ import annotations

from pmgui.engine.commands import GetHistory, HistorySnapshot
from pmgui.store.metrics import TradeMetrics
from pmgui.ui.history import local_midnight
from tests.ui_doubles import T0, EngineDouble, shown_window


def test_today_starts_again_at_local_midnight_in_a_window_left_running(qtbot):
    """"Today" is the P/L realized since local midnight; it came only with the history's
    answers (asked when a trade closes), so a window left running overnight still showed
    yesterday's P/L as today's the next morning until some trade closed."""
    wall = [T0]
    eng = EngineDouble(hold_requests=True, hold=True)
    win = shown_window(qtbot, eng, wall_clock=lambda: wall[0])
    win.history.refresh()
    qtbot.waitUntil(lambda: len(eng.held) == 1, timeout=5000)
    eng.held[0].set_result(HistorySnapshot((), TradeMetrics(), (), (), 123.45))
    today = win.account.labels["today"]
    qtbot.waitUntil(lambda: today.text() == "Today +$123.45", timeout=5000)
    win.refresh_status()  # the window's second: still the same day, nothing asked
    assert len(eng.of_type(GetHistory)) == 1
    wall[0] = local_midnight(T0) + 86_400 + 30  # half a minute into the next day
    win.refresh_status()
    qtbot.waitUntil(lambda: len(eng.of_type(GetHistory)) == 2, timeout=5000)
    eng.held[1].set_result(HistorySnapshot((), TradeMetrics(), (), (), 0.0))
    qtbot.waitUntil(lambda: today.text() == "Today $0.00", timeout=5000)
    win.refresh_status()
    assert len(eng.of_type(GetHistory)) == 2  # once a day


def test_margin_ratio_past_liquidation_warns_instead_of_a_dash(qtbot):
    """Equity at or below zero (losses beyond the wallet: a gap, cross margin) is the
    account past liquidation; the ratio maintenance / equity has no meaning there and the
    bar showed "Margin ratio —" in the normal colour — the calmest text of the bar at its
    most dangerous moment."""
    from tests.ui_doubles import account_panel, position, snapshot

    _eng, _br, panel = account_panel(qtbot, wallet=3_000.0)
    long = position("a", qty=1.0, entry=40_000.0, leverage=20.0)
    panel.on_positions([snapshot(long, 39_000.0)])
    panel.refresh()
    assert panel.figures().equity > 0
    assert panel.text("ratio").startswith("Margin ratio ") and "⚠" not in panel.text("ratio")
    panel.on_positions([snapshot(long, 36_500.0, T0 + 1)])
    panel.refresh()
    f = panel.figures()
    assert f.equity < 0 and f.margin_ratio is None
    assert panel.text("ratio") == "Margin ratio ⚠ over 100% (equity ≤ 0)"
    sheet = panel.labels["ratio"].styleSheet()
    assert panel._theme.warning in sheet and "bold" in sheet


def test_equity_does_not_jump_by_a_closed_positions_pnl_before_the_wallet_is_reported(qtbot):
    """A close takes the position's P/L out of "Unrealized" at once, but the venue's new
    wallet comes with the next account report (a REST call on a live venue; after a burst
    of closes, the next housekeeping pass): until then the bar's Equity and Wallet left the
    closed trade's P/L out — at every profitable close the equity dropped by its profit
    for a moment, and rose by its loss for a losing one."""
    from pmgui.engine.events import AccountEvent, PositionRemoved
    from pmgui.engine.outbox import Outbox
    from tests.ui_doubles import account_panel, position, snapshot

    ob = Outbox()
    _eng, br, panel = account_panel(qtbot, ob, wallet=None)
    ob.publish(AccountEvent(10_000.0, 10_000.0, "USDT", T0))
    long = position("a", qty=1.0, entry=40_000.0, fee_rate=0.0)
    ob.publish(snapshot(long, 41_000.0, T0 + 1))
    br.flush_now()
    assert panel.text("equity") == "Equity 11,000.00 USDT"
    assert panel.text("upnl") == "Unrealized +$1,000.00"
    # closed at 41,000 (the engine books +1,000 realised); the wallet report follows
    closed = long.evolve(qty=0.0, realized_pnl=1_000.0, exit_price=41_000.0,
                         exit_reason="take_profit", closed_at=T0 + 2)
    ob.publish(PositionRemoved(closed, T0 + 2))
    br.flush_now()
    assert panel.text("upnl") == "Unrealized $0.00"
    assert panel.text("equity") == "Equity 11,000.00 USDT"
    assert panel.text("wallet") == "Wallet 11,000.00"
    # a report made before the close (still on its way) does not undo it …
    ob.publish(AccountEvent(10_000.0, 10_000.0, "USDT", T0 + 1.5))
    br.flush_now()
    assert panel.text("equity") == "Equity 11,000.00 USDT"
    # … the venue's report after it is the wallet (no P/L counted twice)
    ob.publish(AccountEvent(10_999.0, 10_999.0, "USDT", T0 + 3))
    br.flush_now()
    assert panel.text("wallet") == "Wallet 10,999.00"
    assert panel.text("equity") == "Equity 10,999.00 USDT"


def test_a_partial_close_keeps_equity_until_the_wallet_report(qtbot):
    """TP1 closes half: that half's P/L leaves "Unrealized" at once, and the engine reports
    the wallet after a partial close only with its periodic report (10 s): for that long
    the equity was short of the half's profit."""
    from pmgui.engine.events import AccountEvent
    from pmgui.engine.outbox import Outbox
    from tests.ui_doubles import account_panel, position, snapshot

    ob = Outbox()
    _eng, br, panel = account_panel(qtbot, ob, wallet=None)
    ob.publish(AccountEvent(10_000.0, 10_000.0, "USDT", T0))
    long = position("a", qty=1.0, entry=40_000.0, fee_rate=0.0)
    ob.publish(snapshot(long, 42_000.0, T0 + 1))
    br.flush_now()
    assert panel.text("equity") == "Equity 12,000.00 USDT"
    half = long.evolve(qty=0.5, realized_pnl=1_000.0)  # TP1: half closed at 42,000
    ob.publish(snapshot(half, 42_000.0, T0 + 2))
    br.flush_now()
    assert panel.text("upnl") == "Unrealized +$1,000.00"
    assert panel.text("equity") == "Equity 12,000.00 USDT"
    ob.publish(snapshot(half, 42_100.0, T0 + 2.5))  # the price moves on: counted once
    br.flush_now()
    assert panel.text("equity") == "Equity 12,050.00 USDT"
    ob.publish(AccountEvent(11_000.0, 11_000.0, "USDT", T0 + 12))  # the periodic report
    br.flush_now()
    assert panel.text("wallet") == "Wallet 11,000.00"
    assert panel.text("equity") == "Equity 12,050.00 USDT"


def test_sums_over_stale_prices_say_so(qtbot):
    """A position's price gone stale (its feed silent past `price.max_age`) is marked in
    its row; the account's Unrealized and Equity summed over it looked as live as ever."""
    from pmgui.engine.events import AccountEvent
    from pmgui.engine.outbox import Outbox
    from tests.ui_doubles import ETH, account_panel, position, snapshot

    ob = Outbox()
    _eng, br, panel = account_panel(qtbot, ob, wallet=None)
    ob.publish(AccountEvent(10_000.0, 10_000.0, "USDT", T0))
    a = position("a", qty=1.0, entry=40_000.0, fee_rate=0.0)
    b = position("b", ETH.symbol, qty=1.0, entry=3_000.0, sl=2_900.0, tp=3_300.0,
                 fee_rate=0.0)
    ob.publish(snapshot(a, 41_000.0, T0 + 1))
    ob.publish(snapshot(b, 3_100.0, T0 + 1))
    br.flush_now()
    assert panel.text("upnl") == "Unrealized +$1,100.00"
    assert panel.text("equity") == "Equity 11,100.00 USDT"
    ob.publish(snapshot(a, 41_000.0, T0 + 30, stale=True))
    br.flush_now()
    assert panel.text("upnl") == "Unrealized +$1,100.00 ⚠ 1 stale price"
    assert panel.text("equity") == "Equity 11,100.00 USDT ⚠ stale"
    assert panel._theme.warning in panel.labels["upnl"].styleSheet()
    ob.publish(snapshot(a, 41_050.0, T0 + 31))  # its feed is back
    br.flush_now()
    assert panel.text("upnl") == "Unrealized +$1,150.00"
    assert panel.text("equity") == "Equity 11,150.00 USDT"
