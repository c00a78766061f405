"""The housekeeping pass's shortcuts over a large book give what the full scans give.

* `OrderLedger.unresolved` answers from a count of the live pending orders when there are
  none: the count follows every change of `live` (random histories of tracked orders);
* `EngineCore._orphans_possible` (one test per position with live orders) is True whenever
  the full scan of `_cancel_orphans` would find an orphan;
* `open_pnl` (the account's unrealized P/L, the usual floats inline) is the very float the
  sum of `money.position_pnl` gives, odd values included.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain import money
from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionStatus,
    Side,
)
from pmgui.domain.models import Order, Position, Tick
from pmgui.engine.core import EngineCore, open_pnl
from pmgui.engine.events import ErrorEvent
from pmgui.engine.ledger import OrderLedger, state_of
from pmgui.engine.outbox import Outbox
from pmgui.engine.protection import PROTECTIVE
from pmgui.engine.runtime import PositionBook, PositionRuntime
from tests.engine_support import SYMBOL, one_long_open

T0 = 1_700_000_000.0
PIDS = ("P1", "P2", "P3", None)
CIDS = tuple(f"c{i}" for i in range(6))

orders = st.builds(
    lambda cid, pid, status, role: Order(cid, SYMBOL, OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                                         status, position_id=pid, role=role),
    st.sampled_from(CIDS), st.sampled_from(PIDS), st.sampled_from(list(OrderStatus)),
    st.sampled_from(list(OrderRole)))


class _NoStore:
    """The ledger's `_track` reads nothing from the store; anything else would be a bug."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"store.{name} used")


def _ledger() -> OrderLedger:
    return OrderLedger(_NoStore(), Outbox(), lambda: 0.0)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(orders, max_size=30))
def test_unresolved_follows_every_change_of_the_live_orders(history: list[Order]) -> None:
    ledger = _ledger()
    for order in history:
        ledger._track(order, state_of(order))
        assert {o.client_id: o for o in ledger.unresolved()} == {
            o.client_id: o for o in ledger.live.values() if o.status is OrderStatus.PENDING}
        assert len(ledger.unresolved()) == len({o.client_id for o in ledger.unresolved()})


class _OnlyLookups(dict):
    """Live orders that may be looked up by client id, never walked."""

    def values(self):  # type: ignore[override]
        raise AssertionError("live orders walked")

    def items(self):  # type: ignore[override]
        raise AssertionError("live orders walked")

    def __iter__(self):
        raise AssertionError("live orders walked")


def test_unresolved_reads_only_the_pending_orders() -> None:
    """The housekeeping asks every second; with thousands of resting orders and one on
    its way, the answer comes from the pending ones, not a walk of every live order."""
    ledger = _ledger()
    ledger.live = _OnlyLookups()
    for i in range(50):
        resting = Order(f"r{i}", SYMBOL, OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                        OrderStatus.OPEN, position_id=f"P{i}")
        ledger._track(resting, state_of(resting))
    pending = Order("n1", SYMBOL, OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                    OrderStatus.PENDING, position_id="P1")
    ledger._track(pending, state_of(pending))
    assert ledger.unresolved() == [pending]
    acked = replace(pending, status=OrderStatus.OPEN)
    ledger._track(acked, state_of(acked))
    assert ledger.unresolved() == []


def _position(pid: str, status: PositionStatus) -> Position:
    return Position(pid, SYMBOL, Side.LONG, 1.0, 100.0, 5.0, 0.0, 1.0, status=status)


@settings(max_examples=300, deadline=None)
@given(st.lists(orders, max_size=30),
       st.dictionaries(st.sampled_from(PIDS[:3]), st.sampled_from(list(PositionStatus))),
       st.sets(st.sampled_from(CIDS)))
def test_orphans_possible_whenever_the_full_scan_finds_one(
        history: list[Order], book_spec: dict[str, PositionStatus], cancelling: set[str]) -> None:
    ledger = _ledger()
    for order in history:
        ledger._track(order, state_of(order))
    ledger.cancelling |= cancelling
    book = PositionBook()
    for pid, status in book_spec.items():
        book.add(PositionRuntime(_position(pid, status), ledger.of_position(pid)))
    core = SimpleNamespace(ledger=ledger, book=book)
    found = [o for o in ledger.resting()
             if o.role in PROTECTIVE
             and ((owner := book.runtime(o.position_id)) is None or not owner.is_open)
             and o.client_id not in ledger.cancelling]
    possible = asyncio.run(EngineCore._orphans_possible(core))  # type: ignore[arg-type]
    if found:
        assert possible
    # and it is not merely always True: it says False exactly when every live order names
    # an open position of the book
    every_owned = all(o.position_id and (rt := book.runtime(o.position_id)) is not None
                      and rt.is_open for o in ledger.live.values())
    assert possible is not every_owned


async def test_the_orphan_test_goes_a_slice_at_a_time(monkeypatch) -> None:
    """`_orphans_possible` tests `HOUSEKEEPING_SLICE` positions per step, the loop handed
    over in between, and still finds a position of the last slice that is not open."""
    import pmgui.engine.core as core_mod

    monkeypatch.setattr(core_mod, "HOUSEKEEPING_SLICE", 3)
    ledger = _ledger()
    book = PositionBook()
    for i in range(7):
        pid = f"P{i}"
        status = PositionStatus.CLOSED if i == 6 else PositionStatus.OPEN
        book.add(PositionRuntime(_position(pid, status), ledger.of_position(pid)))
        stop = Order(f"s{i}", SYMBOL, OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                     OrderStatus.OPEN, position_id=pid, role=OrderRole.STOP_LOSS)
        ledger._track(stop, state_of(stop))
    seen: list[str] = []
    real_all_open = book.all_open

    def all_open(ids) -> bool:
        ids = list(ids)
        seen.append(f"slice of {len(ids)}")
        return real_all_open(ids)

    monkeypatch.setattr(book, "all_open", all_open)
    core = SimpleNamespace(ledger=ledger, book=book)
    got: list[bool] = []

    async def run() -> None:
        got.append(await EngineCore._orphans_possible(core))  # type: ignore[arg-type]

    await _beside_ticks(seen, run())
    slices = [i for i, e in enumerate(seen) if e.startswith("slice")]
    assert [seen[i] for i in slices] == ["slice of 3", "slice of 3", "slice of 1"]
    assert "tick" in seen[slices[0]:slices[1]] and "tick" in seen[slices[1]:slices[2]]
    assert got == [True]


async def test_cancel_orphans_still_cancels_an_orphan(tmp_path: Path) -> None:
    """Through the engine: a resting stop whose position left the book is cancelled."""
    h, rt = await one_long_open(tmp_path / "x.db")
    stops = [o for o in rt.resting() if o.role in PROTECTIVE]
    assert len(stops) == 2 and not await h.engine._orphans_possible()
    await h.engine._cancel_orphans()
    assert all(h.engine.ledger.get(o.client_id).status is OrderStatus.OPEN for o in stops)
    h.engine.book.remove(rt.id)  # as if its close was booked and its cancels failed
    assert await h.engine._orphans_possible()
    await h.engine._cancel_orphans()
    assert all(h.engine.ledger.get(o.client_id).status is OrderStatus.CANCELED
               for o in stops)
    await h.engine.shutdown()


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
odd = st.one_of(finite, st.floats(), st.integers(-5, 5), st.booleans(),
                st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e308, 5e-324]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(list(Side)),
                          st.one_of(finite, odd), st.one_of(finite, odd), st.one_of(finite, odd),
                          st.one_of(finite, odd), st.one_of(finite, odd)), max_size=12),
       st.dictionaries(st.sampled_from(["A", "B"]), st.one_of(finite, odd)))
def test_open_pnl_is_the_sum_of_position_pnl(rows: list, prices: dict[str, float]) -> None:
    runtimes = []
    for i, (symbol, side, entry, qty, cs, fee, _) in enumerate(rows):
        pos = Position(f"p{i}", symbol, side, qty, entry, 5.0, 0.0, 1.0, contract_size=cs,
                       fee_rate=fee)
        runtimes.append(PositionRuntime(pos, {}))
    last = {s: Tick(s, p, 0.0) for s, p in prices.items()}
    expected = 0.0
    for rt in runtimes:
        tick = last.get(rt.position.symbol)
        if tick is not None:
            expected += money.position_pnl(rt.position, tick.price)
    got = open_pnl(runtimes, last)
    assert got.__class__ is expected.__class__
    assert got == expected or (math.isnan(got) and math.isnan(expected))
    assert math.copysign(1.0, got) == math.copysign(1.0, expected)


def test_open_pnl_of_a_usual_book() -> None:
    """The usual book: plain floats, longs and shorts (the inline path), exactly."""
    runtimes = [PositionRuntime(Position(f"p{i}", "A" if i % 3 else "B",
                                         Side.LONG if i % 2 else Side.SHORT, 0.1 * (i + 1),
                                         100.0 + i / 7, 5.0, 0.0, 1.0), {})
                for i in range(50)]
    last = {"A": Tick("A", 101.37, 0.0), "B": Tick("B", 99.01, 0.0)}
    expected = 0.0
    for rt in runtimes:
        expected += money.position_pnl(rt.position, last[rt.position.symbol].price)
    assert open_pnl(runtimes, last) == expected


def test_open_pnl_odd_terms_as_position_pnl() -> None:
    """Terms that overflow or are not finite: 0.0 for that position, as `finite_or` says."""
    cases = [(100.0, 1.0, math.inf, 0.0005), (100.0, 1.0, 1.0, math.nan),
             (100.0, 1e300, 1e10, 0.0005), (1e-300, 1e300, 1.0, math.inf),
             (100.0, 1.0, 1.0, 0.0005)]
    runtimes = [PositionRuntime(Position(f"p{i}", "A", side, qty, entry, 5.0, 0.0, 1.0,
                                         contract_size=cs, fee_rate=fee), {})
                for i, (entry, qty, cs, fee) in enumerate(cases) for side in Side]
    last = {"A": Tick("A", 101.0, 0.0)}
    expected = 0.0
    for rt in runtimes:
        expected += money.position_pnl(rt.position, 101.0)
    assert math.isfinite(expected)
    assert open_pnl(runtimes, last) == expected


def test_open_pnl_position_by_position_over_many_values() -> None:
    """Each position alone (a sum would hide a last bit): random usual and odd terms."""
    rng = random.Random(5)
    pick = [lambda: rng.uniform(-10, 300), lambda: rng.uniform(0, 2), lambda: 0.0,
            lambda: rng.choice([math.inf, -math.inf, math.nan, -0.0, 1e308, 5e-324]),
            lambda: rng.randint(-2, 3), lambda: rng.choice([True, False])]
    weights = [40, 20, 3, 3, 3, 1]
    for i in range(20_000):
        entry, qty, cs, fee, price = (rng.choices(pick, weights)[0]() for _ in range(5))
        pos = Position(f"p{i}", "A", rng.choice(list(Side)), qty, entry, 5.0, 0.0, 1.0,
                       contract_size=cs, fee_rate=fee)
        got = open_pnl([PositionRuntime(pos, {})], {"A": Tick("A", price, 0.0)})
        want = 0.0 + money.position_pnl(pos, price)
        assert got.__class__ is want.__class__ and repr(got) == repr(want), (pos, price)


async def test_a_pass_over_the_book_reads_each_positions_own_params(tmp_path: Path) -> None:
    """`_params_of(rt)` (the housekeeping passes) is `params(rt.position)`: the runtime's
    resolved Params, or resolved now when it has none (a preset was changed)."""
    h, rt = await one_long_open(tmp_path / "x.db")
    resolved = h.engine.params(rt.position)
    assert h.engine._params_of(rt) is resolved is rt.params
    rt.params = None
    again = h.engine._params_of(rt)
    assert again is not None and again is rt.params
    assert again is h.engine.params(rt.position)
    before = [e for e in h.events if isinstance(e, ErrorEvent)]
    await h.engine._refresh_stale_prices()  # reads them (the price is fresh: nothing told)
    assert [e for e in h.events if isinstance(e, ErrorEvent)] == before
    await h.engine.shutdown()


async def test_stale_prices_are_checked_a_slice_at_a_time(monkeypatch) -> None:
    """`_refresh_stale_prices` asks about each symbol of the book once, `HOUSEKEEPING_SLICE`
    positions per step, the loop handed over in between."""
    import pmgui.engine.core as core_mod

    monkeypatch.setattr(core_mod, "HOUSEKEEPING_SLICE", 3)
    book = PositionBook()
    for i, symbol in enumerate("AABCDEA"):
        book.add(PositionRuntime(Position(f"p{i}", symbol, Side.LONG if i % 2 else Side.SHORT,
                                          1.0, 100.0, 5.0, 0.0, 1.0), {}))
    seen: list[str] = []

    async def refresh_stale(_exchange, wanted, _deliver) -> None:
        seen.append("asked " + "".join(w[0] for w in wanted))

    policy = SimpleNamespace(memo=lambda key, make: (5.0, 3, 0.5))
    core = SimpleNamespace(book=book, exchange=None, on_tick=None,
                           market=SimpleNamespace(refresh_stale=refresh_stale),
                           _params_of=lambda rt: policy)
    await _beside_ticks(seen, EngineCore._refresh_stale_prices(core))  # type: ignore[arg-type]
    asked = [i for i, e in enumerate(seen) if e.startswith("asked")]
    assert [seen[i] for i in asked] == ["asked AB", "asked CDE"]
    assert "tick" in seen[asked[0]:asked[1]]


async def test_a_stop_fills_close_and_its_log_line_are_one_commit(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The close booked from the venue's stop fill and its log line commit together: a log
    line that cannot be written leaves no closed position on disk without it (restart
    reconciles it from the venue). What was told is the venue's word: the close is told as
    soon as the venue reported its fill (before the engine's booking), once, at the price
    the venue holds."""
    from pmgui.domain.errors import StoreError
    from pmgui.engine.events import ActionTaken
    from pmgui.store.db import Store

    h, rt = await one_long_open(tmp_path / "x.db")
    pid = rt.id
    assert any(o.role is OrderRole.STOP_LOSS for o in h.engine.book.runtime(pid).resting())

    def refuse(*_a, **_k):
        raise StoreError("disk full (test)")

    monkeypatch.setattr(h.store, "record_action", refuse)
    told = len(h.of(ActionTaken))
    with pytest.raises(StoreError):
        await h.paper.deliver(Tick(SYMBOL, 58_000.0, T0 + 1), h.engine)
    with Store.open(tmp_path / "x.db", readonly=True) as reader:
        assert reader.load_position(pid).status is PositionStatus.OPEN  # not half-booked
    new = h.of(ActionTaken)[told:]
    assert [(e.action.type, e.action.position_id) for e in new] == [(ActionType.CLOSE, pid)]
    venue = [f for f in h.paper.fills() if f.order_client_id == new[0].action.inputs["order"]]
    assert [f.price for f in venue] == [new[0].action.price]  # the venue holds what was told
    await h.engine.shutdown()


async def _beside_ticks(seen: list[str], work: Awaitable[object]) -> None:
    """Await `work` while a task beside it marks "tick" in `seen` on each loop round."""
    done = asyncio.Event()

    async def ticks() -> None:
        while not done.is_set():
            seen.append("tick")
            await asyncio.sleep(0)

    stream = asyncio.create_task(ticks())
    try:
        await work
    finally:
        done.set()
        await stream


async def test_the_pass_lets_ticks_in_before_summing_the_account(tmp_path: Path) -> None:
    """Publishing the stale snapshots and re-summing the account are each a pass over the
    whole book: the ticks due after the first are taken before the second starts."""
    h, _ = await one_long_open(tmp_path / "x.db")
    seen: list[str] = []
    publish_all, refresh_account = h.engine.publish_all, h.engine.refresh_account

    async def logged_publish_all(*a, **k) -> None:
        await publish_all(*a, **k)
        seen.append("snapshots")

    async def logged_refresh_account(*a, **k) -> None:
        seen.append("account")
        await refresh_account(*a, **k)

    h.engine.publish_all = logged_publish_all  # type: ignore[method-assign]
    h.engine.refresh_account = logged_refresh_account  # type: ignore[method-assign]
    h.engine._account_due = True  # a close since the last refresh
    await _beside_ticks(seen, h.engine.periodic())
    first, then = seen.index("snapshots"), seen.index("account")
    assert "tick" in seen[first:then]
    await h.engine.shutdown()


async def test_publishing_everything_lets_ticks_in_between_its_scans(tmp_path: Path) -> None:
    """The positions, the working entries (a scan of the live orders) and the connection
    (a scan of every symbol's last tick) are each a step of their own."""
    h, _ = await one_long_open(tmp_path / "x.db")
    engine = h.engine
    seen: list[str] = []

    def logged(name: str, f):
        def call(*a, **k) -> None:
            seen.append(name)
            f(*a, **k)
        return call

    for obj, name in ((engine, "publish_position"), (engine.entries, "publish"),
                      (engine, "publish_connection")):
        setattr(obj, name, logged(name, getattr(obj, name)))
    await _beside_ticks(seen, engine.publish_all())
    steps = [e for e in seen if e != "tick"]
    assert steps == ["publish_position", "publish", "publish_connection"]
    at = [seen.index(e) for e in steps]
    assert "tick" in seen[at[0]:at[1]] and "tick" in seen[at[1]:at[2]]
    await engine.shutdown()


async def test_the_account_is_summed_a_slice_at_a_time(monkeypatch) -> None:
    """`_open_pnl` (an account refresh's pass over the book) hands the loop over between
    slices of `ACCOUNT_SLICE` positions, and its total is the float one pass gives."""
    import pmgui.engine.core as core_mod

    book = PositionBook()
    for i in range(7):
        book.add(PositionRuntime(Position(f"p{i}", "A" if i % 2 else "B",
                                          Side.LONG if i % 3 else Side.SHORT, 0.1 * (i + 1),
                                          100.0 + i / 7, 5.0, 0.0, 1.0), {}))
    last = {"A": Tick("A", 101.37, 0.0), "B": Tick("B", 99.01, 0.0)}
    seen: list[str] = []
    whole = open_pnl(book.runtimes(), last)

    def logged(runtimes, prices, total=0.0):
        seen.append(f"slice of {len(runtimes)}")
        return open_pnl(runtimes, prices, total)

    monkeypatch.setattr(core_mod, "ACCOUNT_SLICE", 3)
    monkeypatch.setattr(core_mod, "open_pnl", logged)
    fake = SimpleNamespace(book=book, market=SimpleNamespace(last=last))
    got: list[float] = []

    async def run() -> None:
        got.append(await EngineCore._open_pnl(fake))  # type: ignore[arg-type]

    await _beside_ticks(seen, run())
    slices = [i for i, e in enumerate(seen) if e.startswith("slice")]
    assert [seen[i] for i in slices] == ["slice of 3", "slice of 3", "slice of 1"]
    assert "tick" in seen[slices[0]:slices[1]] and "tick" in seen[slices[1]:slices[2]]
    assert got == [whole]


async def test_a_close_refreshes_the_account_beside_the_tick_that_booked_it(
        tmp_path: Path) -> None:
    """The stop's fill closes the position while its tick is delivered; the account (a sum
    over the whole book) is refreshed after that delivery returned, in a task of its own,
    not inside it: the ticks behind the close do not wait for the sum."""
    import time

    from pmgui.engine import commands as cmd
    from pmgui.engine.events import AccountEvent
    from pmgui.engine.settings import EngineSettings
    from pmgui.exchange.paper import PaperExchange
    from pmgui.store.db import Store
    from tests.engine_support import MARKET

    store = Store.open(tmp_path / "x.db")
    paper = PaperExchange({SYMBOL: MARKET}, None, realtime=True, db=store.db)
    events: list = []
    outbox = Outbox()
    outbox.add_listener(events.append)
    core = EngineCore(paper, store, outbox, EngineSettings(default_preset="manual",
                                                           protect_throttle=0.0))
    await core.start()
    await paper.deliver(Tick(SYMBOL, 60_000.0, time.time()), core)
    res = await core.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_500.0,
                                             tp=61_000.0))
    await core.warmed_up()
    core._account_at = float("-inf")  # a close now refreshes the account
    told = len([e for e in events if isinstance(e, AccountEvent)])
    await paper.deliver(Tick(SYMBOL, 58_000.0, time.time()), core)  # its stop fills
    assert res.position_id not in core.book
    assert len([e for e in events if isinstance(e, AccountEvent)]) == told  # not in line
    for _ in range(10):
        await asyncio.sleep(0)
    accounts = [e for e in events if isinstance(e, AccountEvent)]
    assert len(accounts) == told + 1
    balance = (await paper.fetch_balance()).total
    assert accounts[-1].balance == balance and accounts[-1].equity == balance  # book empty
    assert not core._account_due
    await core.shutdown()
