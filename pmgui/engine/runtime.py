"""One runtime object per managed position, and the book that indexes them by symbol.

`PositionRuntime` holds everything the engine keeps about one position while it is managed:
the position itself, its lock (one order decision at a time), its resolved rule parameters,
its protection state (dirty, last sync, failures told), its pending orders (the ledger's live
orders of this position) and when it was last saved. Nothing about a position lives in a
dict keyed by its id anywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pmgui.domain.enums import OrderRole, OrderStatus, PositionStatus, Side
from pmgui.domain.models import Order, Position, Tick
from pmgui.rules.bands import BandGate
from pmgui.rules.params import Params


@dataclass(eq=False, slots=True)
class PositionRuntime:
    position: Position
    orders: dict[str, Order]  # live orders of this position (owned and written by the ledger)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    params: Params | None = None  # resolved lazily; dropped when the preset changes
    protect_dirty: bool = False  # the exchange SL/TP orders must be re-synced
    protect_last: float = float("-inf")  # when they were last synced (throttle)
    protect_failing: dict[OrderRole, str] = field(default_factory=dict)  # last error told
    saved_at: float = 0.0
    saved: Position | None = None  # the position object last saved (at `saved_at`)
    published_at: float = float("-inf")  # when its last snapshot was published
    published_stale: bool | None = None  # whether that snapshot's price was stale
    closing: asyncio.Future | None = None  # the full close in flight (idempotent closes)
    # since when a stop/TP close is left to the exchange's own order at that level
    deferred_since: float | None = None
    deferred_seen: bool = False  # this evaluation deferred to the exchange's order
    indicator: object | None = None  # RuleIndicator: what its rules follow (for the chart)
    indicator_due: Tick | None = None  # a later tick `indicator` is to be recomputed for
    # `indicator`'s line between ticks (`indicator_line.prepare`) with the position's fields,
    # Params object and candle version it holds for (`EngineCore._rule_line`)
    line_memo: tuple | None = None
    # The quiet band and trend lane (`pmgui.rules.bands.BandGate`) of the last evaluation,
    # valid only for the position object, Params object and candle version it was settled
    # with: a tick inside the band skips observe/evaluate, one in the lane runs trailing
    # alone (decisions are the same, see the band's and the lane's contracts).
    gate: BandGate = field(default_factory=BandGate)
    band_pos: Position | None = None
    band_params: Params | None = None
    band_version: int = -1
    band_add_on: bool = False  # an add-on order rested then (its end is a change)
    # What the tick path derives from `params` (the engine's rule info), with the Params
    # object it was derived from: a tick reads it from here instead of the engine's table
    # keyed by id(params) (one dict lookup and tuple unpacking fewer per tick).
    info: object | None = None
    info_params: Params | None = None
    # `Protector._worth_replacing`'s last "no": (position, market, settings, the live orders,
    # the largest distance of an order's trigger from its level). It holds while those are
    # the same objects and that distance stays under the step, which grows with the price.
    not_worth: tuple | None = None

    @property
    def id(self) -> str:
        return self.position.id

    @property
    def symbol(self) -> str:
        return self.position.symbol

    @property
    def side(self) -> Side:
        return self.position.side

    @property
    def is_open(self) -> bool:
        return self.position.is_open

    def pending(self, role: OrderRole | None = None) -> list[Order]:
        """Live orders (resting or awaiting their answer), optionally of one role."""
        return [o for o in self.orders.values() if role is None or o.role is role]

    def resting(self, role: OrderRole | None = None) -> list[Order]:
        """Orders the venue acknowledged that are still open."""
        return [o for o in self.pending(role) if o.status is OrderStatus.OPEN]


class PositionBook(Mapping[str, Position]):
    """Runtimes by position id, indexed by symbol (a tick only concerns its symbol).

    As a Mapping it reads like `{position id: Position}` for callers outside the engine.
    """

    def __init__(self) -> None:
        self._rt: dict[str, PositionRuntime] = {}
        self._by_symbol: dict[str, dict[str, PositionRuntime]] = {}
        # `for_symbol`'s answers, each dropped when its symbol's positions change: every tick
        # asks, a position is added or removed rarely (a fresh list per tick was 3 % of a
        # replay). Only that symbol's: dropping them all at each open or close made nearly
        # every tick of a 1,000-symbol book build its tuple again (a storm's ten probe closes
        # and re-opens a second cleared them every ~100 ticks)
        self._of_symbol: dict[str, tuple[PositionRuntime, ...]] = {}

    def __getitem__(self, pid: str) -> Position:
        return self._rt[pid].position

    def __iter__(self) -> Iterator[str]:
        return iter(self._rt)

    def __len__(self) -> int:
        return len(self._rt)

    def runtime(self, pid: str | None) -> PositionRuntime | None:
        return self._rt.get(pid or "")

    def runtimes(self) -> list[PositionRuntime]:
        return list(self._rt.values())

    def add(self, rt: PositionRuntime) -> PositionRuntime:
        old = self._rt.get(rt.id)
        if old is not None and old.symbol != rt.symbol:  # (a position keeps its symbol)
            self.remove(rt.id)
        self._rt[rt.id] = rt
        self._by_symbol.setdefault(rt.symbol, {})[rt.id] = rt
        self._of_symbol.pop(rt.symbol, None)
        return rt

    def remove(self, pid: str) -> PositionRuntime | None:
        rt = self._rt.pop(pid, None)
        if rt is not None:
            self._of_symbol.pop(rt.symbol, None)
            group = self._by_symbol.get(rt.symbol, {})
            group.pop(pid, None)
            if not group:
                self._by_symbol.pop(rt.symbol, None)
        return rt

    def for_symbol(self, symbol: str) -> tuple[PositionRuntime, ...]:
        """The runtimes of `symbol`, as of now: a snapshot (a tuple), so a position added or
        removed while a caller walks it does not disturb the walk."""
        hit = self._of_symbol.get(symbol)
        if hit is None:
            hit = self._of_symbol[symbol] = tuple(self._by_symbol.get(symbol, {}).values())
        return hit

    def find(self, symbol: str, side: Side) -> PositionRuntime | None:
        """The open position of this symbol and side (one per symbol and side)."""
        for rt in self._by_symbol.get(symbol, {}).values():
            if rt.side is side and rt.is_open:
                return rt
        return None

    def all_open(self, ids: Iterable[str]) -> bool:
        """Whether every id names a position of the book that is open."""
        rts = self._rt
        for pid in ids:
            rt = rts.get(pid)
            if rt is None or rt.position.status is not PositionStatus.OPEN:
                return False
        return True

    def symbols(self) -> set[str]:
        return set(self._by_symbol)
