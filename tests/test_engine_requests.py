"""The UI's requests and manual actions answered by the real engine over the paper exchange."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.errors import PositionNotFound, ValidationError
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken
from tests.engine_support import SYMBOL, Harness

T0 = 1_700_000_000.0


async def _tick(h: Harness, price: float, i: int) -> None:
    await h.paper.deliver(Tick(SYMBOL, price, T0 + i), h.engine)


async def _open(h: Harness) -> str:
    await h.engine.start()
    await _tick(h, 60_000.0, 0)
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=59_000.0,
                                                 tp=62_000.0))
    return res.position_id


async def test_add_to_position_goes_through_the_executor_and_grows_the_position(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    res = await h.engine.handle(cmd.AddToPosition(pid, 0.01))
    assert res.ok and res.position_id == pid
    await h.paper.flush(h.engine)
    pos = h.engine.positions[pid]
    assert pos.qty == pytest.approx(0.02)
    # the protective orders follow the new size
    await _tick(h, 60_010.0, 1)
    stops = [o for o in await h.paper.fetch_open_orders(SYMBOL) if o.trigger_price == 59_000.0]
    assert stops and stops[0].amount == pytest.approx(0.02)
    assert [a.action.type.value for a in h.of(ActionTaken)][-1] == "add"
    with pytest.raises(ValidationError, match="below the minimum"):
        await h.engine.handle(cmd.AddToPosition(pid, 0.0001))
    with pytest.raises(PositionNotFound):
        await h.engine.handle(cmd.AddToPosition("nope", 0.01))
    await h.engine.shutdown()


async def test_history_rules_and_info_requests_answer_with_snapshots(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    await h.engine.handle(cmd.ClosePosition(pid, 1.0))
    hist = await h.engine.handle(cmd.GetHistory())
    assert isinstance(hist, cmd.HistorySnapshot)
    assert [t.position.id for t in hist.closed] == [pid]
    assert hist.metrics.count == 1 and hist.actions
    assert hist.realized_today == pytest.approx(hist.closed[0].position.realized_pnl)
    rules = await h.engine.handle(cmd.GetSymbolRules())
    assert isinstance(rules, cmd.SymbolRulesSnapshot) and SYMBOL in rules.rules
    assert "guardian" in rules.presets
    info = await h.engine.handle(cmd.GetEngineInfo())
    assert info == cmd.EngineInfo("paper", None, rules.presets)
    with pytest.raises(ValidationError):
        await h.engine.handle(cmd.GetHistory(closed_limit=0))
    await h.engine.shutdown()
