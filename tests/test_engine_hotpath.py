"""The engine's hot path takes shortcuts that must give what the plain way gives."""

from __future__ import annotations

from dataclasses import fields, replace

from pmgui.domain.enums import ActionType, Reason, StopKind
from pmgui.domain.levels import _MOVE_STOP
from pmgui.domain.models import Action, frozen_map
from pmgui.domain.slots import slot_copier


def test_action_copy_is_dataclasses_replace():
    a = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 101.5, qty=None, sl=99.0, tp=None,
               rule="trailing", priority=7, ts=12.5, inputs=frozen_map({"level": 99.0}),
               flags=frozenset({"x"}), stop_kind=StopKind.TRAILING, limit=False)
    for changes in ({"sl": 98.0, "tp": 110.0}, {"ts": 13.0}, {}):
        got = slot_copier(Action, tuple(changes))(a, *changes.values())
        want = replace(a, **changes)
        assert got == want and got is not a
        for f in fields(Action):
            assert getattr(got, f.name) is getattr(want, f.name), f.name


def test_a_stop_move_copy_is_evolve():
    from tests.test_store import full_position

    pos = full_position("p1")
    values = (43000.5, StopKind.BREAKEVEN, 43000.5, 44500.0, frozenset({"breakeven_set"}))
    got = _MOVE_STOP(pos, *values)
    want = replace(pos, sl=values[0], sl_kind=values[1], trailing=values[2],
                   initial_sl=values[3], flags=values[4])
    assert got == want


def test_indicator_states_follow_each_completed_candle_and_each_spec():
    """The indicator state the rules read is kept per symbol and spec object until the next
    completed candle: never the state of an older candle, never another spec's."""
    from pmgui.domain.models import Candle
    from pmgui.engine.marketdata import MarketData
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings
    from pmgui.indicators import IndicatorSpec

    md = MarketData(Outbox(), EngineSettings(), lambda: 0.0)
    spec = IndicatorSpec(ema_period=3, atr_period=3, channel_period=3, volatility_window=3,
                         momentum_window=3, volume_window=3)
    other = IndicatorSpec(ema_period=5, atr_period=3, channel_period=3, volatility_window=3,
                          momentum_window=3, volume_window=3)
    same = IndicatorSpec(ema_period=3, atr_period=3, channel_period=3, volatility_window=3,
                         momentum_window=3, volume_window=3)
    seen = []
    for i in range(12):
        p = 100.0 + i * (1 if i % 3 else -2)
        md.close_candle("BTC", Candle(60.0 * i, p, p + 1, p - 1, p + 0.5, 1.0))
        ind, _frames = md.state("BTC", spec, ())
        assert md.state("BTC", spec, ())[0] is ind  # kept until the next candle
        assert ind == md.series("BTC").indicator_set(spec).snapshot()
        assert md.state("BTC", same, ())[0] == ind
        assert md.state("BTC", other, ())[0] == md.series("BTC").indicator_set(other).snapshot()
        seen.append(ind.ema9)
    assert len({round(v, 9) for v in seen if v is not None}) > 3  # it moved with the candles


def test_outbox_keeps_the_newest_event_per_key_in_the_order_last_published():
    from pmgui.engine.events import ActionTaken, TickEvent
    from pmgui.engine.outbox import Outbox

    box = Outbox()
    a = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 101.5, sl=99.0, rule="trailing")
    box.publish(TickEvent("A", 1.0, 1.0))
    box.publish(TickEvent("B", 2.0, 1.0))
    box.publish(ActionTaken(a, "A"))
    box.publish(TickEvent("A", 3.0, 2.0))  # newer A: replaces the first, now after B
    box.publish(ActionTaken(a, "B"))
    got = box.drain()
    assert [type(e).__name__ for e in got[:2]] == ["ActionTaken", "ActionTaken"]
    assert [(e.symbol, e.price) for e in got[2:]] == [("B", 2.0), ("A", 3.0)]
    assert box.drain() == []


def test_an_outbox_nobody_drains_pushes_every_event_and_keeps_none():
    """`--headless` has listeners only: its outbox must not hold the last 10,000 actions (each
    would outlive every young collection and burden the collector for ever)."""
    import sys

    import pytest

    from pmgui.engine.events import ActionTaken, TickEvent
    from pmgui.engine.outbox import Outbox

    box = Outbox(buffered=False)
    heard: list = []
    box.add_listener(heard.append)
    a = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 101.5, sl=99.0, rule="trailing")
    events = [TickEvent("A", 1.0, 1.0), ActionTaken(a, "A"), TickEvent("A", 2.0, 2.0)]
    held = [sys.getrefcount(e) for e in events]
    for published in map(box.publish, events):
        assert published is None
    assert heard == events  # every event, in order, none coalesced away
    heard.clear()
    assert [sys.getrefcount(e) for e in events] == held  # the outbox kept no reference
    with pytest.raises(RuntimeError, match="keeps no events"):
        box.drain()


def test_candles_are_published_only_where_someone_takes_them():
    """An unbuffered outbox whose listeners all name their event types says which types reach
    anyone (`wants`); the candle event — a tuple of the symbol's candles — is built only
    where one does: a window's buffered outbox, a listener taking every type, or one naming
    CandlesEvent. A replay's listener (actions, errors, closes) gets none."""
    from pmgui.domain.models import Tick
    from pmgui.engine.events import ActionTaken, CandlesEvent, ErrorEvent, TickEvent
    from pmgui.engine.marketdata import MarketData
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings

    def candle_events(box: Outbox, heard: list) -> list:
        md = MarketData(box, EngineSettings(candle_timeframe=60.0), lambda: 0.0)
        assert md.on_tick(Tick("BTC", 100.0, 120.5, 2.0))
        md.publish_candles("BTC")
        got = heard if not box.buffered else box.drain()
        return [e for e in got if isinstance(e, CandlesEvent)]

    narrow: list = []
    box = Outbox(buffered=False)
    box.add_listener(narrow.append, types=(ActionTaken, ErrorEvent))
    assert not box.wants(CandlesEvent) and box.wants(ActionTaken)
    assert candle_events(box, narrow) == []
    assert [type(e) for e in narrow] == [TickEvent]  # still called with every event

    for types in (None, (CandlesEvent,)):
        heard: list = []
        box = Outbox(buffered=False)
        box.add_listener(lambda e: None, types=(ActionTaken,))
        box.add_listener(heard.append, types=types)
        assert box.wants(CandlesEvent)
        assert len(candle_events(box, heard)) == 1
    assert Outbox().wants(CandlesEvent)  # a window drains everything it keeps
    assert len(candle_events(Outbox(), [])) == 1
    assert Outbox(buffered=False).wants(CandlesEvent) is False  # nobody listens at all


def test_frames_ready_says_when_ensure_frames_has_nothing_to_do():
    """The tick path skips `ensure_frames` only when it would do nothing: every timeframe
    wanted and its venue history loaded (or its load under way)."""
    import asyncio

    from pmgui.domain.models import Market
    from pmgui.engine.marketdata import MarketData
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings
    from pmgui.exchange.paper import PaperExchange

    md = MarketData(Outbox(), EngineSettings(), lambda: 0.0)
    venue = PaperExchange({"BTC": Market("BTC", 0.1, 0.001)}, None)
    assert md.frames_ready("BTC", ())
    assert not md.frames_ready("BTC", ("1h",))  # not wanted yet
    md.want("BTC", "1h")
    assert not md.frames_ready("BTC", ("1h",))  # wanted, its history not loaded
    asyncio.run(md.ensure_frames(venue, "BTC", ("1h",)))
    assert md.frames_ready("BTC", ("1h",))
    assert not md.frames_ready("BTC", ("1h", "4h"))  # one of them is new
    assert not md.frames_ready("ETH", ("1h",))  # per symbol


def test_a_started_engine_leaves_full_collections_rare():
    """Once the engine is started (`freeze_startup_objects`), a storm's long-lived objects
    no longer bring a full collection every 10 collections of the middle generation (each
    one a pause of tens of ms over a large book): 30 of them here, none full."""
    import gc

    from pmgui.engine.thread import FULL_COLLECTION_EVERY, freeze_startup_objects

    thresholds = gc.get_threshold()
    started: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    kept: list[list[list]] = []
    gc.collect()  # every generation's count starts at zero
    gc.callbacks.append(seen)
    try:
        freeze_startup_objects()
        young = gc.get_threshold()[0]
        while started.count(1) < 30:  # long-lived containers, as a storm's state grows
            kept.append([[] for _ in range(young)])
        assert FULL_COLLECTION_EVERY > 30
        assert 2 not in started
    finally:
        gc.callbacks.remove(seen)
        gc.unfreeze()  # other tests start from an unfrozen heap and the usual thresholds
        gc.set_threshold(*thresholds)
        del kept


def test_a_started_engine_collects_young_objects_in_small_batches():
    """A storm's shape: each tick replaces a position's state (freeing the one before, which
    takes one off CPython's allocation count) and a queue grows by one every 4th tick. The
    young count then reaches its threshold only every 4 x threshold ticks, while the young
    generation holds every state made since: once started (`freeze_startup_objects`), a
    young collection finds at most ~6 x YOUNG_COLLECTION_EVERY objects (was 5 x 700), and
    full collections are no more frequent per allocation than CPython's own thresholds
    after 10 x 10 x 700 (deterministic counts, no timing)."""
    import gc

    from pmgui.engine.thread import (
        FULL_COLLECTION_EVERY,
        MIDDLE_COLLECTION_EVERY,
        YOUNG_COLLECTION_EVERY,
        freeze_startup_objects,
    )

    thresholds = gc.get_threshold()
    young_sizes: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 0:
            young_sizes.append(len(gc.get_objects(generation=0)))

    state: dict[int, list] = {i: [] for i in range(2_000)}
    queue: list[list] = []
    gc.collect()
    try:
        freeze_startup_objects()
        gc.callbacks.append(seen)
        try:
            for tick in range(20_000):
                state[tick % 2_000] = [tick]  # the new state; the old one is freed
                if tick % 4 == 0:
                    queue.append([])
        finally:
            gc.callbacks.remove(seen)
        assert len(young_sizes) >= 10
        assert max(young_sizes) <= 6 * YOUNG_COLLECTION_EVERY <= 1_000
        assert YOUNG_COLLECTION_EVERY * MIDDLE_COLLECTION_EVERY * FULL_COLLECTION_EVERY \
            >= 700 * 10 * 100
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        del state, queue


def test_the_forming_candle_is_built_from_ticks_and_takes_over_the_venues_own():
    """The forming candle the chart shows: opened by the first tick of a bucket (its volume
    that tick's alone), extended in place by the ticks inside it, restarted by a later bucket;
    a forming candle the venue sent is taken over and extended, never replaced."""
    from pmgui.domain.models import Candle, Tick
    from pmgui.engine.marketdata import MarketData
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings

    md = MarketData(Outbox(), EngineSettings(candle_timeframe=60.0), lambda: 0.0)

    def forming() -> Candle:
        md.publish_candles("BTC")
        (ev,) = [e for e in md.outbox.drain() if getattr(e, "symbol", None) == "BTC"
                 and hasattr(e, "candles")]
        return ev.candles[-1]

    assert md.on_tick(Tick("BTC", 100.0, 120.5, 2.0))
    assert forming() == Candle(120.0, 100.0, 100.0, 100.0, 100.0, 2.0)
    for price, ts, vol in ((103.0, 130.0, 1.0), (98.0, 150.0, 0.5), (101.0, 179.9, 0.25)):
        assert md.on_tick(Tick("BTC", price, ts, vol))
    assert forming() == Candle(120.0, 100.0, 103.0, 98.0, 101.0, 3.75)
    assert md.on_tick(Tick("BTC", 99.0, 180.0, 4.0))  # a later bucket starts a new candle
    assert forming() == Candle(180.0, 99.0, 99.0, 99.0, 99.0, 4.0)

    md.on_candle("BTC", Candle(240.0, 95.0, 97.0, 94.0, 96.0, 10.0), False)  # the venue's
    assert md.on_tick(Tick("BTC", 98.0, 250.0, 1.0))
    assert forming() == Candle(240.0, 95.0, 98.0, 94.0, 98.0, 11.0)
    assert md.on_tick(Tick("BTC", 93.0, 260.0, 1.0))
    assert forming() == Candle(240.0, 95.0, 98.0, 93.0, 93.0, 12.0)


def test_a_run_of_ticks_taken_at_once_is_each_tick_taken_in_turn():
    """`MarketData.take_run` (what `EngineCore.on_tick_run` does with a quiet run) leaves
    the last price, the forming candle and the held price of `on_tick` tick by tick; and
    `can_take_run` refuses what tick by tick would do otherwise: a run that starts a new
    candle, an older tick, prices not held (published per tick)."""
    import random

    from pmgui.domain.models import Tick
    from pmgui.engine.marketdata import MarketData
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings

    rng = random.Random(3)
    t0 = 1_700_000_040.0  # a candle's open (60 s)
    ticks = [Tick("X", round(100 + rng.uniform(-1, 1), 2), t0 + i, rng.choice((0.0, 0.3)))
             for i in range(60)]

    def market() -> MarketData:
        md = MarketData(Outbox(), EngineSettings(candle_timeframe=60.0), lambda: 0.0)
        md.hold()
        assert md.on_tick(ticks[0])
        return md

    one, run = market(), market()
    for t in ticks[1:]:
        assert one.on_tick(t)
    rest = ticks[1:]
    prices = [t.price for t in rest]
    low, high = min(prices), max(prices)
    assert run.can_take_run("X", rest[0], rest[-1], low, high)
    run.take_run(rest, low, high, [t.volume for t in rest])
    assert run.last == one.last
    assert run._forming["X"].candle() == one._forming["X"].candle()  # volume summed in order
    assert run._held == one._held

    late = Tick("X", 100.0, t0 + 60)  # the next candle's first tick
    assert not run.can_take_run("X", late, late, 100.0, 100.0)
    assert not market().can_take_run("X", rest[0], late, low, high)  # a run into it
    assert not run.can_take_run("X", ticks[5], ticks[-1], low, high)  # older than the last
    assert not run.can_take_run("X", rest[0], rest[-1], 0.0, high)  # an invalid price
    run.release()  # prices published per tick again
    assert not run.can_take_run("X", rest[0], rest[-1], low, high)


def test_side_direction_is_each_members_own():
    from pmgui.domain.enums import Side

    assert (Side.LONG.dir, Side.SHORT.dir) == (1, -1)
    assert Side("long").dir == 1 and Side("short").dir == -1
    assert len(Side) == 2  # `dir` is an attribute of the members, not a member


async def test_a_snapshot_is_the_plain_ways(db_path):
    """`EngineCore.snapshot` (its runtime looked up once, the max age from the rule info,
    a straight-line constructor) gives what each of its fields is defined as: the money
    formulas at the mark, staleness against `price.max_age`, the protection, the line."""
    from pmgui.domain import money
    from pmgui.domain.enums import Protection
    from pmgui.domain.models import Tick
    from pmgui.engine.events import PositionSnapshot
    from tests.engine_support import SYMBOL, one_long_open

    h, rt = await one_long_open(db_path)
    core = h.engine
    max_age = float(core.params(rt.position)["price.max_age"])

    def plain(pos, now):
        tick = core.market.last.get(pos.symbol)
        mark = tick.price
        return PositionSnapshot(pos, mark, money.position_pnl(pos, mark),
                                money.position_roi(pos, mark), money.position_r(pos, mark),
                                core.protection(pos), now - tick.ts > max_age, now,
                                rt.indicator)

    seen = set()
    for k, (price, age) in enumerate(((60_300.0, 0.0), (59_800.0, max_age * 2),
                                      (60_050.0, max_age / 2))):
        at = 1_700_000_001.0 + 10 * k
        await h.paper.deliver(Tick(SYMBOL, price, at), core)
        now = at + age
        core.clock = lambda now=now: now
        got = core.snapshot(rt.position)
        want = plain(rt.position, now)
        assert type(got) is PositionSnapshot and got == want
        seen.add((got.stale, got.protection))
    assert seen == {(False, Protection.ON_EXCHANGE), (True, Protection.ON_EXCHANGE)}
    # a position the book does not hold: no line, protection from its stop alone
    loose = rt.position.evolve(id="elsewhere")
    got = core.snapshot(loose)
    assert got.indicator is None and got.protection is Protection.LOCAL_ONLY
    assert got.pnl == money.position_pnl(loose, got.mark)


async def test_only_an_acknowledged_stop_covering_the_whole_size_protects_on_the_exchange(
        db_path):
    """`Protector.covering` walks the runtime's orders itself (no lists per snapshot): the
    stop counts only when it is the stop's role, acknowledged (OPEN, not merely journaled)
    and covers the whole quantity within half an amount step."""
    from dataclasses import replace as evolve_order

    from pmgui.domain.enums import OrderRole, OrderStatus, Protection
    from tests.engine_support import one_long_open

    h, rt = await one_long_open(db_path)
    core = h.engine
    assert core.protection(rt.position) is Protection.ON_EXCHANGE
    (sl_id, sl), = [(k, o) for k, o in rt.orders.items() if o.role is OrderRole.STOP_LOSS]
    step = core.market.market(rt.position.symbol).amount_step
    cases = {
        "journaled only": evolve_order(sl, status=OrderStatus.PENDING),
        "a take-profit's role": evolve_order(sl, role=OrderRole.TAKE_PROFIT),
        "a smaller size": evolve_order(sl, amount=rt.position.qty - step),
    }
    for what, order in cases.items():
        rt.orders[sl_id] = order
        assert core.protection(rt.position) is Protection.LOCAL_ONLY, what
    rt.orders[sl_id] = evolve_order(sl, amount=rt.position.qty - step * 0.4)  # rounding
    assert core.protection(rt.position) is Protection.ON_EXCHANGE
    rt.orders[sl_id] = sl
    assert core.protection(rt.position) is Protection.ON_EXCHANGE
