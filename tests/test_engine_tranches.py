"""Tranches on the exchange (issue 11, seed 002): each tranche group has its own reduce-only
SL and TP sized to it, so tranche exits happen while pmgui is stopped; the engine takes them
over on restart from the same SQLite file."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import ActionType, OrderRole, Protection, Reason, Side
from pmgui.domain.models import Action, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.settings import EngineSettings
from tests.engine_support import SYMBOL, Harness
from tests.paper_support import RecordingSink

T0 = 1_700_000_000.0


def _settings() -> EngineSettings:
    return EngineSettings(default_preset="monitor", protect_throttle=0.0)


async def _orders(h: Harness) -> list[tuple[str, float, float, str]]:
    return sorted((o.type.value, o.trigger_price, o.amount, (o.reason or "").split("=")[-1])
                  for o in await h.paper.fetch_open_orders(SYMBOL))


async def test_tranche_exits_on_the_exchange_while_pmgui_is_stopped(db_path):
    h = Harness(db_path, [], _settings())
    await h.engine.start()
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, T0), h.engine)
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.1, 5, preset="monitor"))
    assert res.ok
    pid = res.position_id
    first = h.engine.positions[pid].tranches[0].id
    # one tranche at the position's levels: one SL and one TP for the whole position
    assert [o[:3] for o in await _orders(h)] == [("stop_market", 59_400.0, 0.1),
                                                ("take_profit_market", 61_200.0, 0.1)]
    # a second fill at 60 600: its own levels from its own entry (1 % / 2 %)
    await h.paper.deliver(Tick(SYMBOL, 60_600.0, T0 + 1), h.engine)
    assert await h.engine.execute(Action(ActionType.ADD, Reason.MANUAL, pid, 60_600.0,
                                         qty=0.05, rule="manual", ts=T0 + 1))
    await h.paper.deliver(Tick(SYMBOL, 60_610.0, T0 + 2), h.engine)
    pos = h.engine.positions[pid]
    second = pos.tranches[1].id
    assert pos.qty == pytest.approx(0.15) and len(pos.tranches) == 2
    assert await _orders(h) == [
        ("stop_market", 59_400.0, 0.1, first), ("stop_market", 59_994.0, 0.05, second),
        ("take_profit_market", 61_200.0, 0.1, first),
        ("take_profit_market", 61_812.0, 0.05, second)]
    assert h.engine.protection(pos) is Protection.ON_EXCHANGE
    rt = h.engine.book.runtime(pid)
    assert h.engine.protector.outcome(rt, OrderRole.STOP_LOSS).protection == "on_exchange"
    assert h.engine.protector.outcome(rt, OrderRole.TAKE_PROFIT).protection == "on_exchange"
    await h.engine.shutdown()

    # pmgui is stopped; the market runs through the first tranche's TP only
    venue = Harness(db_path, [], _settings())
    await venue.paper.connect()
    rec = RecordingSink()
    for i, price in enumerate((60_900.0, 61_250.0, 60_500.0)):
        await venue.paper.deliver(Tick(SYMBOL, price, T0 + 100 + i), rec)
    [left] = await venue.paper.fetch_positions()
    assert left.qty == pytest.approx(0.05)  # the first tranche left at its TP
    # its SL went with it (a bracket): only the second tranche's pair is left
    assert await _orders(venue) == [("stop_market", 59_994.0, 0.05, second),
                                    ("take_profit_market", 61_812.0, 0.05, second)]
    venue.store.close()

    # restart from the same SQLite file: the engine takes the exit over
    h2 = Harness(db_path, [], _settings())
    await h2.engine.start()
    pos = h2.engine.positions[pid]
    assert pos.qty == pytest.approx(0.05) and [t.id for t in pos.tranches] == [second]
    assert pos.realized_pnl > 0
    assert await _orders(h2) == [("stop_market", 59_994.0, 0.05, second),
                                 ("take_profit_market", 61_812.0, 0.05, second)]
    assert h2.engine.protection(pos) is Protection.ON_EXCHANGE
    # and the second tranche exits at its own stop, not the first one's
    await h2.paper.deliver(Tick(SYMBOL, 59_990.0, T0 + 200), h2.engine)
    closed = h2.store.load_position(pid)
    assert not closed.is_open and closed.exit_price == pytest.approx(59_994.0, abs=10.0)
    await h2.engine.shutdown()
