"""The headless console (`pmgui.cli.console_listener`): which actions it prints, and at which
level. A level that follows the price moves at every new best price; its lines go to DEBUG
(`--verbose`), everything a trader must see stays at INFO."""

from __future__ import annotations

import logging

import pytest

from pmgui.cli import console_listener
from pmgui.domain.enums import ActionType, Reason
from pmgui.domain.models import Action, Market
from pmgui.engine.events import ActionTaken

SYM = "BTC/USDT:USDT"
MARKET = Market(SYM, 0.1, 0.001)


class _Engine:
    def market(self, _symbol: str) -> Market:
        return MARKET


def _taken(type_: ActionType, reason: Reason, *, ok: bool = True, detail: str = "",
           **levels: float) -> ActionTaken:
    return ActionTaken(Action(type_, reason, "pos-1", 41_000.04, rule=reason.value,
                              **levels), SYM, ok, detail)


FOLLOWING = [
    _taken(ActionType.MOVE_SL, Reason.TRAILING, sl=40_180.0, tp=45_000.0),
    _taken(ActionType.MOVE_TP, Reason.DYNAMIC_TP, sl=39_000.0, tp=45_500.0),
]
NOTABLE = [
    _taken(ActionType.MOVE_SL, Reason.BREAKEVEN, sl=40_020.0, tp=45_000.0),
    _taken(ActionType.MOVE_SL, Reason.MANUAL, sl=40_500.0, tp=45_000.0),
    _taken(ActionType.CLOSE, Reason.TRAILING_STOP, qty=0.5, sl=40_180.0, tp=45_000.0),
    _taken(ActionType.REDUCE, Reason.TP1, qty=0.25, sl=39_000.0, tp=45_000.0),
    _taken(ActionType.MOVE_SL, Reason.TRAILING, ok=False, detail="database error",
           sl=40_180.0, tp=45_000.0),
]


def _lines(caplog, level: int, events: list[ActionTaken]) -> list[tuple[int, str]]:
    on_event = console_listener(_Engine())
    with caplog.at_level(level, logger="pmgui"):
        for ev in events:
            on_event(ev)
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_the_console_keeps_following_levels_out_of_info(caplog) -> None:
    lines = _lines(caplog, logging.INFO, FOLLOWING + NOTABLE)
    assert [level for level, _ in lines] == [logging.INFO] * len(NOTABLE)
    assert [line.split()[1:3] for _, line in lines] == [
        ["move_sl", "breakeven"], ["move_sl", "manual"], ["close", "trailing_stop"],
        ["reduce", "tp1"], ["move_sl", "trailing"]]
    assert lines[-1][1].endswith("database error")  # a failed move: the trader hears of it


def test_verbose_prints_every_move_with_its_levels(caplog) -> None:
    lines = _lines(caplog, logging.DEBUG, FOLLOWING + NOTABLE)
    assert [level for level, _ in lines[:2]] == [logging.DEBUG, logging.DEBUG]
    assert lines[0][1] == (f"{SYM} move_sl trailing qty=- price=41000.0 sl=40180.0 tp=45000.0 ")
    assert lines[1][1].startswith(f"{SYM} move_tp dynamic_tp qty=- price=41000.0 sl=39000.0 "
                                  "tp=45500.0")
    assert len(lines) == len(FOLLOWING) + len(NOTABLE)


@pytest.mark.parametrize("ev", FOLLOWING)
def test_a_following_move_is_not_formatted_when_nobody_reads_it(caplog, ev) -> None:
    class Unreadable(_Engine):
        def market(self, _symbol: str) -> Market:
            raise AssertionError("formatted a line no handler takes")

    with caplog.at_level(logging.INFO, logger="pmgui"):
        console_listener(Unreadable())(ev)
    assert not caplog.records
