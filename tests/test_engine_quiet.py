"""The quiet tick path's caches follow what they were derived from: the book's runtimes per
symbol follow every add and remove, a position's rule info follows its Params."""

from __future__ import annotations

from pathlib import Path

from pmgui.domain.enums import PositionStatus, Side
from pmgui.domain.models import Position, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.runtime import PositionBook, PositionRuntime
from tests.engine_support import SYMBOL, one_long_open

T0 = 1_700_000_000.0


def _rt(pid: str, symbol: str = SYMBOL) -> PositionRuntime:
    pos = Position(pid, symbol, Side.LONG, 100.0, 1.0, 1.0, 100.0, T0,
                   status=PositionStatus.OPEN)
    return PositionRuntime(pos, {})


def test_for_symbol_follows_every_add_and_remove() -> None:
    """A tick walks `for_symbol`: a position added or removed after an earlier tick asked is
    in (out of) the next answer, and other symbols are not disturbed."""
    book = PositionBook()
    assert book.for_symbol(SYMBOL) == ()
    a = book.add(_rt("A"))
    assert book.for_symbol(SYMBOL) == (a,)
    b = book.add(_rt("B"))
    other = book.add(_rt("C", "ETH/USDT:USDT"))
    assert book.for_symbol(SYMBOL) == (a, b)
    assert book.for_symbol("ETH/USDT:USDT") == (other,)
    walked = book.for_symbol(SYMBOL)
    book.remove("A")
    assert walked == (a, b)  # a walk in progress keeps its snapshot
    assert book.for_symbol(SYMBOL) == (b,)
    book.remove("B")
    assert book.for_symbol(SYMBOL) == ()
    assert book.for_symbol("ETH/USDT:USDT") == (other,)


def test_for_symbol_keeps_the_other_symbols_answers() -> None:
    """An open or a close drops only its own symbol's answer: the other symbols' ticks
    still find theirs (in a 1,000-symbol book, dropping them all at each of a storm's ten
    closes and re-opens a second rebuilt one on nearly every tick). A runtime replaced
    under its id is the one the next answer holds."""
    book = PositionBook()
    other = book.add(_rt("C", "ETH/USDT:USDT"))
    kept = book.for_symbol("ETH/USDT:USDT")
    a = book.add(_rt("A"))
    assert book.for_symbol(SYMBOL) == (a,)
    book.remove("A")
    assert book.for_symbol(SYMBOL) == ()
    assert book.for_symbol("ETH/USDT:USDT") is kept  # not built again
    again = book.add(_rt("C", "ETH/USDT:USDT"))
    assert book.for_symbol("ETH/USDT:USDT") == (again,) and again is not other
    moved = book.add(_rt("C", SYMBOL))  # (an id keeps its symbol; if not, it moves whole)
    assert book.for_symbol(SYMBOL) == (moved,)
    assert book.for_symbol("ETH/USDT:USDT") == ()
    assert book.runtime("C") is moved and len(book) == 1


async def test_the_tick_path_reads_the_rule_info_of_the_positions_current_params(
        tmp_path: Path) -> None:
    """A preset change gives the position new Params: the next tick judges staleness (and
    reads frames and indicators) by the new ones, not by what the previous Params said."""
    h, rt = await one_long_open(tmp_path / "x.db")
    await h.paper.deliver(Tick(SYMBOL, 60_010.0, T0 + 1), h.engine)
    assert rt.info is not None and rt.info.max_age == 5.0  # type: ignore[attr-defined]
    await h.engine.handle(cmd.SetPreset(rt.id, "manual", {"price.max_age": 2.0}))
    await h.paper.deliver(Tick(SYMBOL, 60_020.0, T0 + 2), h.engine)
    assert rt.info.max_age == 2.0  # type: ignore[union-attr]
    assert rt.info == h.engine.rule_info(h.engine.params(rt.position))


async def test_a_tick_inside_the_quiet_band_is_decided_without_the_evaluation_path(
        tmp_path: Path) -> None:
    """`_screen_tick` decides a position's quiet tick by itself (counted, no coroutine of
    its own); a tick outside the band goes on to `_on_position_tick`, which evaluates it."""
    h, rt = await one_long_open(tmp_path / "x.db")
    engine = h.engine
    entered: list[float] = []
    evaluate_tick = engine._on_position_tick

    async def spy(rt_: PositionRuntime, tick: Tick, sync_only: bool = False) -> None:
        entered.append(tick.price)
        await evaluate_tick(rt_, tick, sync_only)

    engine._on_position_tick = spy  # type: ignore[method-assign]
    await h.paper.deliver(Tick(SYMBOL, 60_010.0, T0 + 1), engine)  # settles the band
    band = rt.gate.band
    assert band is not None and band.lo < 60_010.0 < band.hi
    quiet = engine.quiet_ticks
    inside = [60_010.0 - d for d in (2.0, 1.0, 3.0, 0.5)]
    assert all(band.lo < p < band.hi for p in inside)
    for i, p in enumerate(inside):
        await h.paper.deliver(Tick(SYMBOL, p, T0 + 2 + i), engine)
    assert engine.quiet_ticks == quiet + len(inside)
    assert entered == [60_010.0]
    outside = band.hi + 10.0
    await h.paper.deliver(Tick(SYMBOL, outside, T0 + 10), engine)
    assert entered == [60_010.0, outside]
    assert rt.position.best_price == outside  # observed and evaluated


async def test_quiet_ticks_of_a_move_not_worth_replacing_leave_the_lock_and_sync_alone(
        tmp_path: Path) -> None:
    """A position left dirty by a move under `protect_min_step` (its orders still at its
    levels) waits for the housekeeping pass: its quiet ticks neither take its lock nor run
    `sync` to be told "not worth" again — on every tick (a replay has no housekeeping
    pass) — and it stays dirty for that pass."""
    h, rt = await one_long_open(tmp_path / "x.db")
    engine = h.engine
    await h.paper.deliver(Tick(SYMBOL, 60_010.0, T0 + 1), engine)  # settles the band
    synced: list[str] = []
    real_sync = engine.protector.sync

    async def spy(rt_: PositionRuntime, force: bool = False, settle: bool = False) -> None:
        synced.append(rt_.id)
        await real_sync(rt_, force, settle)

    engine.protector.sync = spy  # type: ignore[method-assign]
    rt.protect_dirty = True  # as a rule's move under the step leaves it
    quiet = engine.quiet_ticks
    for i, p in enumerate((60_008.0, 60_009.0, 60_007.5)):
        await h.paper.deliver(Tick(SYMBOL, p, T0 + 5 + i), engine)
    assert engine.quiet_ticks == quiet + 3
    assert synced == []
    assert rt.protect_dirty


async def test_a_run_of_ticks_is_taken_at_once_only_where_each_would_be_quiet(
        tmp_path: Path) -> None:
    """`EngineCore.on_tick_run` takes a run of ticks only where each tick would be a quiet
    one doing nothing else, and otherwise declines with nothing changed: prices published
    per tick (marks not held), a save falling due within the run, a price outside the band,
    a clock that is not the ticks' own."""
    from pmgui.engine.settings import EngineSettings

    h, rt = await one_long_open(tmp_path / "x.db", EngineSettings(
        default_preset="manual", protect_throttle=0.0, save_interval=5.0))
    engine, paper = h.engine, h.paper
    await paper.deliver(Tick(SYMBOL, 60_010.0, T0 + 1), engine)  # a new best: evaluated
    await paper.deliver(Tick(SYMBOL, 60_005.0, T0 + 2), engine)  # quiet: the band is known
    assert rt.position is not rt.saved  # the best price moved, saved behind later
    rt.saved_at = T0

    def run(prices: list[float], start: float) -> list[Tick]:
        ticks = [Tick(SYMBOL, p, start + i * 0.5) for i, p in enumerate(prices)]
        paper._sim_ts = ticks[-1].ts  # the venue's part: its clock at the last tick
        return ticks

    def take(ticks: list[Tick]) -> bool:
        prices = [t.price for t in ticks]
        before = (engine.market.last[SYMBOL], engine.quiet_ticks, rt.indicator_due)
        ok = engine.on_tick_run(ticks, min(prices), max(prices), None)
        if not ok:
            assert (engine.market.last[SYMBOL], engine.quiet_ticks, rt.indicator_due) == before
        return ok

    quiet = run([60_001.0, 60_003.0, 59_999.0, 60_004.0], T0 + 3)  # T0+3 … T0+4.5
    assert not take(quiet)  # marks published per tick: each tick's own
    engine.hold_marks()
    assert not take(run([60_001.0, 60_003.0, 61_500.0], T0 + 3))  # over the TP: acts
    assert not take(run([60_001.0, 60_011.0], T0 + 3))  # a new best: observed
    assert not take(run([60_001.0] * 6, T0 + 3))  # to T0+5.5: the save falls due at T0+5
    ticks = run([60_001.0, 60_003.0, 59_999.0, 60_004.0], T0 + 3)
    rt.saved = rt.position  # (saved: no save to fall due)
    # a clock ahead of the ticks: each would be judged at that time, not its own — the
    # first 6 s old, over `price.max_age` (5 s): stale, not a quiet tick
    paper._sim_ts = T0 + 9
    assert not take(ticks)
    paper._sim_ts = ticks[-1].ts
    quiet_ticks = engine.quiet_ticks
    assert take(ticks)
    assert engine.quiet_ticks == quiet_ticks + 4
    assert engine.market.last[SYMBOL] is ticks[-1] and rt.indicator_due is ticks[-1]
    assert engine._marks == {rt.id: rt}
    engine.release_marks()
    await engine.shutdown()
