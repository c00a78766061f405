"""Audit: on a hedge-mode account of each venue the trader opens both legs of a symbol
through the engine's commands (the one-way refusal must not refuse them); on a one-way
account the opposite open is refused, nothing sent. The real engine, the real ccxt
adapter, the local Bybit / OKX emulators and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.engine import commands as cmd
from tests.fakes.bybit_server import BybitServer
from tests.fakes.okx_server import OkxServer
from tests.venue_support import BTC, VenueRig

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("venue", ["bybit", "okx"])
@pytest.mark.parametrize("hedge", [True, False])
async def test_both_legs_on_hedge_accounts_and_a_refusal_on_one_way_ones(
        tmp_path: Path, venue: str, hedge: bool) -> None:
    server = BybitServer() if venue == "bybit" else OkxServer()
    server.core.hedge_mode = hedge
    await server.start()
    rig = VenueRig(venue, server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        long = await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                               preset="manual"))
        assert long.ok, long.message
        short = cmd.OpenPosition(BTC, Side.SHORT, 0.01, 10, sl=51_000.0, preset="manual")
        if hedge:
            res = await e.handle(short)
            assert res.ok, res.message
            assert sorted((p.side.value, p.qty) for p in rig.open_positions()) == [
                ("long", 0.02), ("short", 0.01)]
        else:
            with pytest.raises(ValidationError, match="one-way"):
                await e.handle(short)
            assert [(p.side, p.qty) for p in rig.open_positions()] == [(Side.LONG, 0.02)]
        assert all(o.protection == "on_exchange" for o in long.outcomes if o.level)
    finally:
        await rig.stop()
        await server.stop()
