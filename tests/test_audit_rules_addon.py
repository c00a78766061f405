"""Audit of the breakout preset's add-on (seed 001) against its own lifecycle.

A resting add-on is withdrawn once the stop protects the entry (`adds.add_on_cancel`, why
`breakeven`): adding at the EMA above a long's entry with the stop at breakeven would put the
average entry above the stop, so the "breakeven" stop would lock in a loss. The add-on must
therefore not be placed in that state in the first place — else it is sent, then cancelled on
the next tick (and a marketable limit may fill in between).
"""

from __future__ import annotations

import pytest

from pmgui.domain.enums import ActionType, Side, StopKind
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, observe
from tests.rules_support import mkt, pos, step


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_no_add_on_once_the_stop_is_at_breakeven(side):
    d = side.dir
    b = resolve_params("breakout")
    ind = {"atr": 1.0, "highest_high": 112.0, "lowest_low": 88.0}
    # R = 5; the price pulled back to 0.6R, 0.1 % from the EMA: the add-on's own conditions
    price, ema = 100 + d * 3.0, 100 + d * 3.1
    fresh = pos(side, qty=4.0, sl=100 - d * 5.0, initial_sl=100 - d * 5.0)
    [add] = evaluate(observe(fresh, price), mkt(price, ema9=ema, **ind), b)
    assert add.type is ActionType.ADD  # before breakeven it is placed
    # after TP1 (2 of 4 closed) the stop went to breakeven: no add-on any more
    after_tp1 = pos(side, qty=2.0, initial_qty=4.0, sl=100 + d * 0.1,
                    initial_sl=100 - d * 5.0, sl_kind=StopKind.BREAKEVEN,
                    flags=frozenset({"tp1_done", "breakeven_set"}), best_price=100 + d * 5.5)
    p, acts = step(after_tp1, price, b, **{**ind, "ema9": ema})
    assert not [a for a in acts if a.type is ActionType.ADD], acts
    # nor when the stop got to the entry some other way (the cancel's own test)
    at_entry = pos(side, qty=4.0, sl=100.0, initial_sl=100 - d * 5.0,
                   best_price=100 + d * 5.5)
    acts = evaluate(observe(at_entry, price), mkt(price, ema9=ema, **ind), b)
    assert not [a for a in acts if a.type is ActionType.ADD], acts
    # the next tick after it would have cancelled it: nothing rests, nothing to withdraw
    assert not [a for a in evaluate(observe(p, price), mkt(price, ema9=ema, **ind), b)
                if a.type in (ActionType.ADD, ActionType.CANCEL)]
