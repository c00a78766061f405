"""Funding per position: the paper venue's 8-hourly charges attributed to their positions by the
real engine, persisted with them, and consistent with the account-wide figure."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.events import AccountEvent
from pmgui.exchange.paper import FUNDING_PERIOD
from tests.engine_support import SYMBOL, Harness

START = 1_700_006_400.0  # an 8-hour boundary


async def _tick(h: Harness, price: float, ts: float) -> None:
    await h.paper.deliver(Tick(SYMBOL, price, ts), h.engine)


async def test_each_charge_is_attributed_to_its_position_and_persisted(db_path):
    h = Harness(db_path, [])
    h.paper.funding_rate = 0.0001
    await h.engine.start()
    await _tick(h, 60_000.0, START - 100)
    long_ = (await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10))).position_id
    short = (await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.SHORT, 0.02, 10))).position_id
    await h.engine.refresh_account()
    assert h.engine.positions[long_].funding == 0.0  # known, nothing charged yet
    await _tick(h, 60_000.0, START + 1)  # the long pays 600 × 0.01 %, the short receives
    await h.engine.refresh_account()
    assert h.engine.positions[long_].funding == pytest.approx(-0.06)
    assert h.engine.positions[short].funding == pytest.approx(0.12)
    account = h.of(AccountEvent)[-1].funding
    assert account == pytest.approx(0.06)  # the account's figure is the positions' sum
    assert h.store.load_position(long_).funding == pytest.approx(-0.06)
    await h.engine.refresh_account()  # seen again: counted once
    assert h.engine.positions[long_].funding == pytest.approx(-0.06)
    await h.engine.shutdown()

    h2 = Harness(db_path, [])
    h2.paper.funding_rate = 0.0001
    await h2.engine.start()  # restored with the position; recomputed, never added twice
    assert h2.engine.positions[long_].funding == pytest.approx(-0.06)
    await _tick(h2, 60_000.0, START + FUNDING_PERIOD + 1)
    await h2.engine.refresh_account()
    assert h2.engine.positions[long_].funding == pytest.approx(-0.12)
    assert h2.engine.positions[short].funding == pytest.approx(0.24)
    # a position opened after a charge does not inherit it
    await h2.engine.handle(cmd.ClosePosition(long_))
    again = (await h2.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10))).position_id
    await h2.engine.refresh_account()
    assert h2.engine.positions[again].funding == 0.0
    assert h2.store.load_position(long_).funding == pytest.approx(-0.12)  # kept when closed
    await h2.engine.shutdown()


async def test_a_live_venue_funding_history_is_attributed_by_symbol(server, tmp_path):
    """binanceusdm through ccxt against the local emulator: the income history's funding
    fees (not commissions) land on the position of their symbol, persisted with it."""
    import time

    from tests.test_engine_emulator_faults import Rig

    rig = Rig(server, tmp_path / "pmgui.db")
    try:
        server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
        now_ms = int(time.time() * 1000)
        server.state.income += [
            {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.40",
             "time": now_ms + 1000},
            {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "0.15",
             "time": now_ms + 2000},
            {"symbol": "BTCUSDT", "incomeType": "COMMISSION", "income": "-9.00",
             "time": now_ms + 2000},
            {"symbol": "ETHUSDT", "incomeType": "FUNDING_FEE", "income": "-3.00",
             "time": now_ms + 2000},
        ]
        await rig.start()
        (pos,) = rig.engine.positions.values()
        assert pos.funding == pytest.approx(-0.25)
        assert rig.store.load_position(pos.id).funding == pytest.approx(-0.25)
        assert any(p.endswith("/income") for _, p, _ in server.requests)
    finally:
        await rig.stop()
