"""A rule's move not worth re-placing the exchange order: the answer is kept.

A trailing position asks `Protector._worth_replacing` on every tick until the housekeeping
pass settles it; the answer is given again from what the runtime kept (`not_worth`) while the
position, its live orders and the market are the same and the tick's price keeps the step
over the distance — the very answer a fresh scan gives (replay: ~40 % of a guardian run was
this scan, on 19,985 of 20,000 ticks).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole
from pmgui.domain.models import Tick
from pmgui.engine.settings import EngineSettings
from tests.engine_support import SYMBOL, one_long_open

T0 = 1_700_000_000.0


def _counted(monkeypatch, obj: object, name: str) -> list[int]:
    """Count the calls of `obj.name` (the count in the returned list's one item)."""
    calls = [0]
    fn = getattr(obj, name)

    def counted(*a, **k):
        calls[0] += 1
        return fn(*a, **k)

    monkeypatch.setattr(obj, name, counted)
    return calls


async def test_a_small_move_is_not_worth_it_again_without_a_scan(tmp_path: Path,
                                                                 monkeypatch) -> None:
    h, rt = await one_long_open(tmp_path / "x.db", EngineSettings(default_preset="manual",
                                                                 protect_throttle=0.0))
    protector = h.engine.protector
    scans = _counted(monkeypatch, protector, "covering")

    def fresh() -> bool:  # the answer of a full scan
        kept, rt.not_worth = rt.not_worth, None
        try:
            return protector._worth_replacing(rt)
        finally:
            rt.not_worth = kept

    # a rule's move of 10 under 0.1 % of the price (60): not worth a re-placement
    h.engine.set_position(rt.position.evolve(sl=58_510.0), persist=False)
    assert not protector._worth_replacing(rt)
    scanned = scans[0]
    assert scanned > 0
    assert not protector._worth_replacing(rt)
    assert scans[0] == scanned  # the kept answer, no scan
    for price, ts in ((61_000.0, 1), (9_000.0, 2), (60_000.0, 3), (9_999.0, 4), (10_001.0, 5)):
        h.engine.market.on_tick(Tick(SYMBOL, price, T0 + ts))  # the engine's view only
        assert protector._worth_replacing(rt) is fresh() is (price < 10_000.0), price
    h.engine.set_position(rt.position.evolve(sl=58_440.0), persist=False)  # 60 away now
    assert protector._worth_replacing(rt) is fresh() is True
    await h.engine.shutdown()


async def test_the_tick_path_does_not_sync_a_move_not_worth_replacing(tmp_path: Path) -> None:
    """`wants_sync` (the tick path's test before it takes the lock for `sync`) says no while
    a move is under `protect_min_step`, though `due` (throttle, budget: the housekeeping
    pass's test) says yes; a move worth replacing, or protection kept locally, says yes."""
    h, rt = await one_long_open(tmp_path / "x.db", EngineSettings(default_preset="manual",
                                                                 protect_throttle=0.0))
    protector, now = h.engine.protector, h.engine.clock()
    pos = rt.position
    rt.position = pos.evolve(sl=pos.sl + 0.1)  # far under 0.1 % of the price
    rt.protect_dirty = True
    assert protector.due(rt, now) and not protector.wants_sync(rt, now)
    await protector.sync(rt)  # what the tick path skips: sync would only leave it dirty
    assert rt.protect_dirty
    rt.position = pos.evolve(sl=pos.sl + 300.0)  # 0.5 % of the price
    assert protector.wants_sync(rt, now)
    rt.position = pos.evolve(sl=pos.sl + 0.1)
    h.engine.settings = replace(h.engine.settings, protect_on_exchange=False)
    assert protector.wants_sync(rt, now)
    await h.engine.shutdown()


async def test_a_spent_budget_is_not_asked_again_before_it_refills(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """With the shared re-placement budget spent, a dirty position's quiet ticks do not ask
    `wants_sync` until the time the budget has a token again (`budget_spent_until`, from the
    refill's rate); the first tick at that time re-places the order, as asking on every
    tick did."""
    h, rt = await one_long_open(tmp_path / "x.db", EngineSettings(
        default_preset="manual", protect_throttle=0.0, protect_budget=2.0))
    protector, t0 = h.engine.protector, h.engine.clock()
    protector._tokens, protector._refilled = 0.0, t0  # spent (two moves a second)
    h.engine.set_position(rt.position.evolve(sl=59_000.0), persist=False)
    rt.protect_dirty = True
    # evaluated: the move stays dirty, a token is 0.4 s away at this tick
    await h.paper.deliver(Tick(SYMBOL, 60_010.0, t0 + 0.1), h.engine)
    assert rt.protect_dirty
    assert protector.budget_spent_until == pytest.approx(t0 + 0.5)
    asked = _counted(monkeypatch, protector, "wants_sync")
    quiet = h.engine.quiet_ticks
    for k, price in enumerate((60_005.0, 60_004.0, 60_003.0), start=2):  # under the best
        await h.paper.deliver(Tick(SYMBOL, price, t0 + k / 10), h.engine)
    assert h.engine.quiet_ticks == quiet + 3
    assert asked[0] == 0 and rt.protect_dirty  # the budget still spent
    assert protector.covering(rt, OrderRole.STOP_LOSS).trigger_price == 58_500.0
    await h.paper.deliver(Tick(SYMBOL, 60_002.0, t0 + 0.5), h.engine)
    assert asked[0] == 1 and not rt.protect_dirty
    assert protector.covering(rt, OrderRole.STOP_LOSS).trigger_price == 59_000.0
    await h.engine.shutdown()


async def test_the_housekeeping_pass_does_not_ask_a_spent_budget(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The housekeeping pass settles dirty positions (`sync(settle=True)`, a move under
    `protect_min_step` included) as the budget allows: while it is spent, the pass does not
    ask `due` for each of them; once a token is back, the pass re-places the order."""
    h, rt = await one_long_open(tmp_path / "x.db", EngineSettings(
        default_preset="manual", protect_throttle=0.0, protect_budget=2.0))
    protector, t0 = h.engine.protector, h.engine.clock()
    protector._tokens, protector._refilled = 0.0, t0
    assert not protector._token_ready(t0)  # spent: a token 0.5 s away
    h.engine.set_position(rt.position.evolve(sl=58_510.0), persist=False)  # under min step
    rt.protect_dirty = True
    asked = _counted(monkeypatch, protector, "due")
    await h.engine.periodic()
    assert asked[0] == 0 and rt.protect_dirty
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, t0 + 0.5), h.engine)  # the clock moves on
    await h.engine.periodic()
    assert asked[0] >= 1 and not rt.protect_dirty
    assert protector.covering(rt, OrderRole.STOP_LOSS).trigger_price == 58_510.0
    await h.engine.shutdown()


async def test_a_run_is_quiet_for_protection_where_every_tick_would_be(tmp_path: Path) -> None:
    """`quiet_through(rt, now, low)` (a run of quiet ticks taken at once, `on_tick_run`) is
    True only where each tick's own test would say no sync: the kept not-worth answer holds
    at the run's lowest price (a smaller price, a smaller step), the throttle or the spent
    budget hold every tick back; a bucket a refill would change is left to the ticks."""
    h, rt = await one_long_open(tmp_path / "x.db", EngineSettings(
        default_preset="manual", protect_throttle=0.0, protect_budget=2.0))
    protector, now = h.engine.protector, h.engine.clock()
    assert protector.quiet_through(rt, now, 1.0)  # not dirty: nothing to sync
    # a rule's move of 10: not worth re-placing at a price whose 0.1 % step is over 10
    h.engine.set_position(rt.position.evolve(sl=58_510.0), persist=False)
    rt.protect_dirty = True
    assert not protector._worth_replacing(rt)  # the answer kept at the last price (60,000)
    for low in (60_000.0, 10_001.0, 9_999.0, 5_000.0):
        h.engine.market.on_tick(Tick(SYMBOL, low, now))  # a tick at the run's lowest price
        assert protector.quiet_through(rt, now, low) is (not protector.wants_sync(rt, now)) \
            is (low > 10_000.0), low
    h.engine.market.on_tick(Tick(SYMBOL, 60_000.0, now))
    protector._tokens = 1.5  # a token ready, the bucket not full: each tick's refill counts
    assert protector.wants_sync(rt, now) is False
    assert not protector.quiet_through(rt, now, 60_000.0)
    protector._tokens = 0.5  # spent: due again at `budget_spent_until`, not in the run
    assert not protector.due(rt, now)
    assert protector.quiet_through(rt, protector.budget_spent_until - 0.01, 9_000.0)
    rt.protect_last = now  # the position's throttle holds every tick of the run back
    h.engine.settings = replace(h.engine.settings, protect_throttle=5.0)
    assert protector.quiet_through(rt, now + 4.9, 9_000.0)
    assert not protector.quiet_through(rt, now + 5.0, 9_000.0)  # (the spent budget's test)
    protector._tokens, protector._refilled = 2.0, now
    assert not protector.quiet_through(rt, now + 5.0, 60_000.0)  # kept for other settings
    assert not protector._worth_replacing(rt)  # kept again, for these
    assert protector.quiet_through(rt, now + 5.0, 60_000.0)
    protector.through(rt, now + 5.0)  # what the run's last tick's test left: the refill time
    assert protector._refilled == now + 5.0 and protector._tokens == 2.0
    await h.engine.shutdown()
