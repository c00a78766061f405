"""The paper exchange: a simulated USDT-margined futures venue (DESIGN §5).

It behaves like a real venue as far as the engine can tell: orders are accepted or refused
with the same typed errors, fills arrive as `OrderUpdate`s through the sink, positions live
on the venue (hedge mode, isolated margin) and, with a database, survive a crash of the app
exactly as a real exchange's would. Everything is deterministic given the same feed and the
same sequence of calls, so replays are reproducible.

Exact behaviour:

- Positions are keyed (symbol, side) — hedge mode. A BUY without reduce-only opens/increases
  the LONG, a SELL the SHORT; a reduce-only SELL reduces the LONG, a reduce-only BUY the
  SHORT. A reduce-only fill is clipped to the position size (never flips, never over-closes);
  a reduce-only order without a position is rejected at creation (`InvalidOrder`) and, should
  its position be gone when it triggers, ends EXPIRED. When a position closes completely, its
  remaining reduce-only orders are CANCELED. A clipped order ends FILLED with `filled` below
  `amount` and says so in `error`.
- MARKET: fills at once at the last price ± slippage (buy higher, sell lower), taker fee.
  LIMIT: rests; fills at the limit price, maker fee, on the first tick at or through it
  (buy: price ≤ limit; sell: price ≥ limit). A limit that is marketable on arrival fills at
  once as a taker at the last price ± slippage, never worse than its limit.
  STOP_MARKET / TAKE_PROFIT_MARKET: trigger on crossing (SELL stop p ≤ trigger, BUY stop
  p ≥ trigger, SELL TP p ≥ trigger, BUY TP p ≤ trigger), fill at the triggering tick's price
  ± slippage, taker fee — except on a `continuous` tick (inside a replayed candle's path),
  where the price passed through the trigger and the fill is at the trigger ± slippage.
  One that would trigger at creation raises `OrderWouldTriggerImmediately` (Binance -2021).
- Amounts are floored to the step, prices rounded to the tick. Below the minimum amount, or
  below the minimum notional for an order that is not reduce-only (as on Binance), raises
  `InvalidOrder`. Opening orders reserve margin (notional/leverage + taker fee) from the free
  wallet; not enough raises `InsufficientFunds` (and a resting one that cannot be paid for
  when it executes ends REJECTED). Leverage is per symbol (default 10x); lowering it also
  re-sizes the margin of that symbol's open positions at a higher one, raising it leaves
  their margin as it is (as on Binance); an add at another leverage than its position's
  makes the position's leverage its notional over the margin it holds.
- Isolated margin: a position holds notional/leverage of the wallet; fees and realized P/L
  settle into the wallet. `Balance.total` is the wallet (realized only), `used` the margin
  of positions and open opening orders, `free` the rest.
- Liquidation: when a tick crosses the isolated liquidation price
  (`money.liquidation_price` with the market's mmr) the position closes at that price (taker
  fee) through a synthetic market order (role REDUCE, reason "liquidation") whose fill has
  `liquidation=True`; its reduce-only orders are canceled. The liquidation check comes
  before order matching, so a gap through both a stop and the liquidation price liquidates:
  an isolated position never loses more than its margin (plus fees) — except on a
  `continuous` tick, where the orders the price reached on its way to the liquidation price
  (a stop between it and the entry) fill first, at their levels. Then resting orders are
  matched in the order they were created.
- `create_order` returns the resulting Order (FILLED for a market order) and queues the same
  `OrderUpdate` for the sink; `cancel_order` likewise. `run()` delivers queued updates before
  the next feed event, and while it sleeps in realtime mode it wakes up to deliver them at
  once — never from inside the caller's own `await`, so the engine is never re-entered.
  Fill ids (`paper-fill-N`) and exchange order ids (`paper-N`) are sequential and persisted.
- Per tick: liquidations and resting orders are matched first and each change is awaited
  through `sink.on_order_update`, then `sink.on_tick`. Completed candles go to
  `sink.on_candle(symbol, candle, True)`. Realtime mode sleeps `feed.tick_interval / speed`
  after each step (one tick per symbol); otherwise the feed runs as fast as it can and
  `now()` is the last tick's timestamp (simulated time).
- With `db`, the whole venue state (wallet, positions, orders with client ids, fills,
  leverage, last prices, id counters) lives in `paper_*` tables and every change is written
  in one transaction; `connect()` restores it. Prices are written at most every 5 s.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from pmgui.aio import wait_event
from pmgui.collection import collection_deferred
from pmgui.domain.candles import merge_buckets
from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, Side
from pmgui.domain.errors import (
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderWouldTriggerImmediately,
    RetryableExchangeError,
)
from pmgui.domain.models import Candle, Fill, Market, Order, OrderRequest, Tick
from pmgui.domain.money import average_entry, liquidation_price, valid_price
from pmgui.domain.slots import slot_copier
from pmgui.exchange.base import (
    Balance,
    Capabilities,
    ConnectionState,
    ExchangePosition,
    ExchangeSink,
    FundingPayment,
    OrderUpdate,
)
from pmgui.exchange.feeds import CandleClosed, Feed, FeedEvent, TickRun

log = logging.getLogger("pmgui.paper")

DEFAULT_LEVERAGE = 10.0
SCHEMA_VERSION = 1
_EPS = 1e-9
# seconds of wall time between price writes: market data, not venue state (a restart's marks
# until the stream's first ticks, the candles' history), so a crash costs seconds of it at
# most; every second, ~1,000 symbols' rows were ~2 µs of CPU per tick of a 2,000-tick/s storm
_PRICE_WRITE_INTERVAL = 5.0
# A price write over a large book (1,000 symbols: ~10 ms in one commit) is a stall of the
# tick path: it is written _PRICE_CHUNK rows per commit, the next chunk _PRICE_PACE times
# the last one's duration later (spread between the ticks, not on consecutive ones). A chunk
# is a stall of its own that a stop's crossing may wait out: 128 rows were ~0.55-0.8 ms
# (eight a second at 1,000 symbols), 32 are ~0.16-0.22 ms, for ~1 ms more CPU a second
# (commits of fewer rows).
_PRICE_CHUNK = 32
_PRICE_PACE = 4.0
_MAX_CANDLES = 5000
_NO_UPDATES: tuple[OrderUpdate, ...] = ()  # a calm tick's (not a new list per tick)
_INF = math.inf

# A fill's and a cancel's copy of the order, on the path from a stop's crossing to its report:
# straight-line slot copies, ~10x cheaper than `dataclasses.replace` (the same object)
_filled = slot_copier(Order, ("status", "filled", "average", "updated_at", "error"))
_ended = slot_copier(Order, ("status", "updated_at", "error"))

_TIMEFRAMES = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


FUNDING_PERIOD = 8 * 3600.0  # seconds between funding payments (00:00, 08:00, 16:00 UTC)


def timeframe_seconds(timeframe: str) -> float:
    """'1m' → 60, '4h' → 14400 (ccxt notation)."""
    tf = timeframe.strip()
    try:
        n, unit = int(tf[:-1]), tf[-1]
        return float(n * _TIMEFRAMES[unit])
    except (ValueError, KeyError, IndexError):
        raise ExchangeError(f"unknown timeframe {timeframe!r} (use e.g. 1m, 5m, 1h, 1d)") \
            from None


@dataclass(slots=True)
class _Pos:
    """A venue position (mutable, private; published as ExchangePosition)."""

    symbol: str
    side: Side
    qty: float
    entry: float
    leverage: float
    margin: float
    opened_at: float
    realized: float = 0.0
    fees: float = 0.0


@dataclass(slots=True)
class _Dirty:
    """What the current change touched: written together in one transaction."""

    state: bool = False
    positions: set[tuple[str, Side]] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    fills: list[Fill] = field(default_factory=list)
    leverage: set[str] = field(default_factory=set)
    funding: list[FundingPayment] = field(default_factory=list)

    def any(self) -> bool:
        return bool(self.state or self.positions or self.orders or self.fills or self.leverage
                    or self.funding)


_TABLES = (
    "CREATE TABLE IF NOT EXISTS paper_funding (ts REAL NOT NULL, symbol TEXT NOT NULL, "
    "side TEXT NOT NULL, amount REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS paper_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS paper_positions (symbol TEXT NOT NULL, side TEXT NOT NULL, "
    "qty REAL NOT NULL, entry REAL NOT NULL, leverage REAL NOT NULL, margin REAL NOT NULL, "
    "opened_at REAL NOT NULL, realized REAL NOT NULL, fees REAL NOT NULL, "
    "PRIMARY KEY (symbol, side))",
    "CREATE TABLE IF NOT EXISTS paper_orders (client_id TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
    " exchange_id TEXT, symbol TEXT NOT NULL, side TEXT NOT NULL, type TEXT NOT NULL, "
    "amount REAL NOT NULL, status TEXT NOT NULL, price REAL, trigger_price REAL, "
    "filled REAL NOT NULL, average REAL, reduce_only INTEGER NOT NULL, position_id TEXT, "
    "role TEXT NOT NULL, reason TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
    "error TEXT)",
    "CREATE TABLE IF NOT EXISTS paper_fills (id TEXT PRIMARY KEY, order_client_id TEXT, "
    "symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL, "
    "fee REAL NOT NULL, ts REAL NOT NULL, exchange_order_id TEXT, liquidation INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS paper_leverage (symbol TEXT PRIMARY KEY, leverage REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS paper_prices (symbol TEXT PRIMARY KEY, price REAL NOT NULL, "
    "ts REAL NOT NULL, volume REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS paper_candles (symbol TEXT NOT NULL, ts REAL NOT NULL, "
    "open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, "
    "volume REAL NOT NULL, PRIMARY KEY (symbol, ts))",
)

_ORDER_COLS = ("client_id", "seq", "exchange_id", "symbol", "side", "type", "amount", "status",
               "price", "trigger_price", "filled", "average", "reduce_only", "position_id",
               "role", "reason", "created_at", "updated_at", "error")


def _upsert_sql(table: str, cols: tuple[str, ...], key: tuple[str, ...]) -> str:
    """An insert that updates the row in place when its key is there. `INSERT OR REPLACE`
    deletes the old row and inserts a new one under a new rowid: the key's index entry and
    two table pages (the old row's and the table's last) are rewritten, in the commit that
    stands between a stop's fill and its report; an update in place rewrites one page."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {sets}")


_ORDER_UPSERT = _upsert_sql("paper_orders", _ORDER_COLS, ("client_id",))
_STATE_UPSERT = _upsert_sql("paper_state", ("key", "value"), ("key",))
_POSITION_UPSERT = _upsert_sql(
    "paper_positions", ("symbol", "side", "qty", "entry", "leverage", "margin", "opened_at",
                        "realized", "fees"), ("symbol", "side"))


def _triggered(otype: OrderType, side: OrderSide, trigger: float, price: float) -> bool:
    """Crossing rule for conditional orders (see module docstring)."""
    if otype is OrderType.STOP_MARKET:
        return price <= trigger if side is OrderSide.SELL else price >= trigger
    if otype is OrderType.TAKE_PROFIT_MARKET:
        return price >= trigger if side is OrderSide.SELL else price <= trigger
    return False


def _limit_crossed(side: OrderSide, limit: float, price: float) -> bool:
    return price <= limit if side is OrderSide.BUY else price >= limit


def _reduced_side(side: OrderSide) -> Side:
    """The position a reduce-only order of this side reduces."""
    return Side.LONG if side is OrderSide.SELL else Side.SHORT


def _opened_side(side: OrderSide) -> Side:
    return Side.LONG if side is OrderSide.BUY else Side.SHORT


def _money(v: float) -> str:
    return f"{v:,.2f}"


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN … COMMIT, rolled back when the body raises."""
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class PaperExchange:
    """A simulated futures exchange implementing `pmgui.exchange.base.Exchange`."""

    id = "paper"

    def __init__(self, markets: dict[str, Market], feed: Feed | None = None, *,
                 balance: float = 10_000.0, taker_fee: float = 0.0005,
                 maker_fee: float = 0.0002, slippage: float = 0.0002, realtime: bool = True,
                 db: Any = None, clock: Callable[[], float] | None = None,
                 currency: str = "USDT", default_leverage: float = DEFAULT_LEVERAGE,
                 speed: float = 1.0, funding_rate: float = 0.0,
                 relaxed: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        """`relaxed`: the owning store's `Store.relaxed` when `db` is its database — the
        venue's commits then take the store's word for the synchronous level instead of
        reading it back (a PRAGMA and a read transaction of its own per commit)."""
        if not markets:
            raise ExchangeError("the paper exchange needs at least one market")
        for name, value, hi in (("balance", balance, math.inf), ("taker fee", taker_fee, 0.1),
                                ("maker fee", maker_fee, 0.1), ("slippage", slippage, 0.1)):
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and 0 <= value < hi):
                raise ExchangeError(f"paper {name} must be a number from 0 to below {hi:g} "
                                    f"(got {value!r})")
        if not (isinstance(funding_rate, (int, float)) and math.isfinite(funding_rate)
                and abs(funding_rate) < 0.01):
            raise ExchangeError(f"paper funding rate must be a number between -1 % and 1 % "
                                f"per 8 h (got {funding_rate!r})")
        if not (math.isfinite(speed) and speed > 0):
            raise ExchangeError(f"paper speed must be positive (got {speed!r})")
        self._markets = dict(markets)
        self._relaxed = relaxed
        self.feed = feed
        self.taker_fee = float(taker_fee)
        self.maker_fee = float(maker_fee)
        self.slippage = float(slippage)
        self.realtime = realtime
        self.db = db
        self._clock = clock
        self.currency = currency
        self.default_leverage = float(default_leverage)
        self.speed = float(speed)
        # Funding every 8 h (00:00, 08:00, 16:00 UTC) at this rate of the position's value at
        # the mark: longs pay shorts when positive (as perpetual futures venues do).
        self.funding_rate = float(funding_rate)
        self.funding_paid = 0.0  # total paid (−: received) since the venue was created
        self._funding_log: list[FundingPayment] = []  # every settlement, per position
        self._funding_slot: int | None = None  # the last 8-hour period charged
        self._funding_due = -math.inf  # time the period after `_funding_slot` starts
        self.capabilities = Capabilities(
            stop_orders=True, take_profit_orders=True, edit_orders=False, watch_tickers=True,
            watch_orders=True, watch_positions=True, fetch_ohlcv=True)

        self._initial_balance = float(balance)
        self._balance = float(balance)
        self._positions: dict[tuple[str, Side], _Pos] = {}
        self._orders: dict[str, Order] = {}
        self._order_seq: dict[str, int] = {}
        self._open: dict[str, None] = {}  # insertion-ordered set of open client ids
        self._open_by_symbol: dict[str, dict[str, None]] = {}  # the same, per symbol
        self._by_exchange_id: dict[str, str] = {}
        self._fills: list[Fill] = []
        self._leverage: dict[str, float] = {}
        self._last: dict[str, Tick] = {}
        self._candles: dict[str, deque[Candle]] = {}
        self._history: dict[str, list[Candle]] = {}
        self._candle_rows: list[tuple[str, Candle]] = []  # completed candles not yet written
        self._stored_candles: set[str] = set()  # symbols whose history came from the database
        self._seq = 0
        self._fill_seq = 0
        self._sim_ts: float | None = None
        self._pending: list[OrderUpdate] = []
        self._subscribed: set[str] = set()
        self._dirty = _Dirty()
        # paper_state's rows as this venue's last own commit left them (`_write`)
        self._state_stored: dict[str, str] = {}
        self._loaded = False
        self._connected = False
        self._running = False
        self._wake: asyncio.Event | None = None
        self._last_price_write = -math.inf
        # symbols whose last price changed since all prices were last written: the
        # once-a-second write takes only these (a large book's other rows are unchanged)
        self._prices_dirty: set[str] = set()
        # the symbols of the write under way (taken from `_prices_dirty` when it was due),
        # written a chunk at a time; the next chunk not before `_price_resume` (monotonic)
        self._price_pass: list[str] = []
        self._price_resume = -math.inf
        # per symbol, the price interval (lo, hi) inside which no resting order triggers and
        # no position is liquidated: a tick strictly inside it matches nothing. Dropped when
        # the symbol's orders or positions change; rebuilt on its next tick.
        self._calm: dict[str, tuple[float, float]] = {}
        # margin in use per symbol (its positions' margin and its open orders' reserve),
        # recomputed for a symbol only after it changed: the free wallet is not a scan of
        # every position and order of the venue
        self._used: dict[str, float] = {}
        self._used_stale: set[str] = set()
        # simulated mode: ticks delivered between two yields to the event loop (1: after
        # every tick; more lets a replay run without one loop iteration per tick)
        self.yield_every = 1

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """Wall time (or `clock()`) in realtime mode; the last tick's timestamp otherwise."""
        if self.realtime:
            return float(self._clock()) if self._clock is not None else time.time()
        if self._sim_ts is not None:
            return self._sim_ts
        return float(self._clock()) if self._clock is not None else 0.0

    # --- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Restore the venue from the database (or initialise it there). A random-walk feed
        then resumes from the restored last prices, so positions carried over a restart do
        not see a jump back to the feed's start prices."""
        self._ensure_loaded()
        self._connected = True
        resume = getattr(self.feed, "resume_from", None)
        if resume is not None and self._last and not self._running:
            resume({s: t.price for s, t in self._last.items()})
            self._history.clear()

    async def close(self) -> None:
        if self._loaded:
            self._write_prices(force=True)
        self._connected = False

    def markets(self) -> dict[str, Market]:
        return dict(self._markets)

    def subscribe(self, symbols: Sequence[str]) -> None:
        unknown = [s for s in symbols if s not in self._markets]
        if unknown:
            raise ExchangeError(f"the paper exchange has no market {', '.join(unknown)} "
                                f"(markets: {', '.join(sorted(self._markets))})")
        self._subscribed.update(symbols)

    # --- queries ---------------------------------------------------------------------------

    async def fetch_positions(self) -> list[ExchangePosition]:
        self._ensure_loaded()
        return [self._export_position(p) for p in self._positions.values()]

    async def fetch_funding_history(self, since: float = 0.0) -> list[FundingPayment]:
        """Every funding settlement since `since`, per position (symbol, side), oldest first."""
        self._ensure_loaded()
        return [f for f in self._funding_log if f.ts >= since]

    async def fetch_balance(self) -> Balance:
        self._ensure_loaded()
        free = self._free()
        return Balance(self.currency, total=self._balance, free=free,
                       used=self._balance - free, funding=-self.funding_paid)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._ensure_loaded()
        return [self._orders[c] for c in self._open
                if symbol is None or self._orders[c].symbol == symbol]

    async def fetch_order_by_client_id(self, client_id: str, symbol: str) -> Order | None:
        self._ensure_loaded()
        o = self._orders.get(client_id)
        return o if o is not None and o.symbol == symbol else None

    async def fetch_price(self, symbol: str) -> Tick | None:
        self._ensure_loaded()
        return self._last.get(symbol)

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m",
                          limit: int = 200) -> list[Candle]:
        """Completed candles seen by the venue, preceded by the feed's warm-up history when
        there are fewer than `limit` (the forming candle is not included). Coarser timeframes
        are aggregated from the stored candles. With a database the candles (warm-up included)
        are kept in `paper_candles`, so the history survives a restart."""
        self._market(symbol)
        tf = timeframe_seconds(timeframe)
        if limit <= 0:
            return []
        self._ensure_loaded()
        seen = list(self._candles.get(symbol, ()))
        base = seen[1].ts - seen[0].ts if len(seen) > 1 else 60.0
        want = limit * max(1, round(tf / base)) if tf > base else limit
        if tf > base + _EPS and len(seen) < want:
            # a coarse timeframe's warm-up walked at that timeframe (not minute by minute),
            # then what the venue has seen, aggregated
            own = merge_buckets(seen, tf) if seen else []
            first = own[0].ts if own else math.inf
            hist = [c for c in self._warmup(symbol, limit, tf) if c.ts < first]
            if hist and own:
                hist = self._joined(symbol, hist, own[0].open)
            return (hist + own)[-limit:]
        candles = seen
        if len(seen) < want and symbol not in self._stored_candles:
            # The warm-up history becomes the venue's own: kept and stored, so the chart
            # shows the same past after a restart (a resumed walk would invent another).
            first = seen[0].ts if seen else math.inf
            older = [c for c in self._warmup(symbol, want) if c.ts < first]
            if older:
                candles = older + seen
                self._candles[symbol] = deque(candles, maxlen=_MAX_CANDLES)
                if self.db is not None:
                    self._candle_rows.extend((symbol, c) for c in older)
                    self._write_prices(force=True)
        if tf > base + _EPS:
            candles = merge_buckets(candles, tf)
        return candles[-limit:]

    def _joined(self, symbol: str, hist: list[Candle], to: float) -> list[Candle]:
        """A coarse timeframe's warm-up `hist` scaled to close where the venue's own candles
        open (`to`). The coarse walk ends at the start price at the start time, but the own
        candles it precedes begin earlier (the finer warm-up already kept) and elsewhere:
        unscaled, the seam was a jump that never traded (10 % on the demo's BTC hours) — a
        false candle on the chart and a true range that inflated ATR and the chandelier
        stop of every rule reading that timeframe."""
        last = hist[-1].close
        if not (last > 0 and to > 0) or last == to:
            return hist
        k = to / last
        m = self._markets[symbol]

        def px(v: float) -> float:
            return max(m.round_price(v * k), m.tick_size) if m.tick_size > 0 else v * k

        return [Candle(c.ts, px(c.open), px(c.high), px(c.low), px(c.close), c.volume)
                for c in hist]

    def fills(self) -> list[Fill]:
        """Every fill so far, oldest first (the venue's trade history)."""
        self._ensure_loaded()
        return list(self._fills)

    def leverage(self, symbol: str) -> float:
        self._market(symbol)
        return self._leverage.get(symbol, self.default_leverage)

    # --- orders ----------------------------------------------------------------------------

    async def set_leverage(self, symbol: str, leverage: float) -> None:
        """Leverage of the symbol for new fills. An open position at a higher leverage is
        re-sized to the new one (its isolated margin grows from the free wallet: safer); one
        at or below it keeps its margin and leverage. Raising the leverage never takes margin
        away from an open isolated position, as on Binance: that would move its liquidation
        price towards the market by itself (past it for a losing one, liquidated on the next
        tick at a price the market had already left) behind the trader's back."""
        self._ensure_loaded()
        m = self._market(symbol)
        if (isinstance(leverage, bool) or not isinstance(leverage, (int, float))
                or not math.isfinite(leverage) or not 1 <= leverage <= m.max_leverage):
            raise InvalidOrder(f"leverage for {symbol} must be between 1x and "
                               f"{m.max_leverage}x (got {leverage!r})")
        lev = float(leverage)
        if self._leverage.get(symbol) == lev and (symbol, Side.LONG) not in self._positions \
                and (symbol, Side.SHORT) not in self._positions:
            # what it is already, with no margin to re-size (resting orders reserve at the
            # same leverage): nothing changes, nothing is written. Every market open sets
            # the leverage first; its commit was a part of the loop step the open runs in.
            return
        changes = []
        delta = 0.0
        for side in (Side.LONG, Side.SHORT):  # the symbol's positions (a sum of two: exact
            p = self._positions.get((symbol, side))  # in either order)
            if p is not None and lev < p.leverage:
                new_margin = p.entry * p.qty * m.contract_size / lev
                changes.append((p, new_margin))
                delta += new_margin - p.margin
        old_lev = self.leverage(symbol)
        for c in self._open_by_symbol.get(symbol, ()):  # resting opening orders reserve
            o = self._orders[c]                           # margin at the leverage too
            if not o.reduce_only:
                ref = o.price if o.price is not None else (o.trigger_price or 0.0)
                notional = ref * o.remaining * m.contract_size
                delta += notional / lev - notional / old_lev
        if delta > self._free() + _EPS:
            raise InsufficientFunds(
                f"lowering {symbol} leverage to {lev:g}x needs {_money(delta)} {self.currency} "
                f"more margin; {_money(self._free())} {self.currency} available")
        for p, new_margin in changes:
            p.leverage, p.margin = lev, new_margin
            self._dirty.positions.add((p.symbol, p.side))
        self._calm.pop(symbol, None)
        self._used_stale.add(symbol)
        self._leverage[symbol] = lev
        self._dirty.leverage.add(symbol)
        self._commit()

    def seed_position(self, symbol: str, side: Side, qty: float, entry: float,
                      leverage: float, *, ts: float | None = None) -> ExchangePosition:
        """Place a position on the venue as if it had been opened at `entry` (no fee, no
        order): `pmgui replay` starts from the trader's recorded entry this way. Sets the
        symbol's leverage and reserves the isolated margin; an existing position on that
        side, bad numbers or too little free margin raise and change nothing."""
        self._ensure_loaded()
        m = self._market(symbol)
        side = Side(side)
        if (symbol, side) in self._positions:
            raise InvalidOrder(f"there is already a {side.value} position on {symbol}")
        if not valid_price(entry):
            raise InvalidOrder(f"entry price must be a positive number (got {entry!r})")
        if not (isinstance(qty, (int, float)) and math.isfinite(qty) and qty > 0):
            raise InvalidOrder(f"position size must be a positive number (got {qty!r})")
        if (isinstance(leverage, bool) or not isinstance(leverage, (int, float))
                or not math.isfinite(leverage) or not 1 <= leverage <= m.max_leverage):
            raise InvalidOrder(f"leverage for {symbol} must be between 1x and "
                               f"{m.max_leverage}x (got {leverage!r})")
        lev = float(leverage)
        margin = entry * qty * m.contract_size / lev
        if margin > self._free() + _EPS:
            raise InsufficientFunds(f"a {side.value} of {qty:g} {symbol} at {entry:g} needs "
                                    f"{_money(margin)} {m.quote} margin; "
                                    f"{_money(self._free())} {m.quote} available")
        for p in self._positions.values():
            if p.symbol == symbol and p.leverage != lev:
                raise InvalidOrder(f"{symbol} already has a position at {p.leverage:g}x")
        self._leverage[symbol] = lev
        self._dirty.leverage.add(symbol)
        pos = _Pos(symbol, side, float(qty), float(entry), lev, margin,
                   self.now() if ts is None else float(ts))
        self._positions[(symbol, side)] = pos
        self._dirty.positions.add((symbol, side))
        self._calm.pop(symbol, None)
        self._used_stale.add(symbol)
        self._commit()
        return self._export_position(pos)

    async def create_order(self, req: OrderRequest) -> Order:
        self._ensure_loaded()
        updates = self._create(req)
        self._commit()
        self._queue(updates)
        return updates[0].order

    async def cancel_order(self, order: Order) -> Order:
        """Cancel by client id (or exchange id). An order that is already final is returned
        unchanged (a race with its fill is not an error); an unknown one raises."""
        self._ensure_loaded()
        cid = order.client_id if order.client_id in self._orders else \
            self._by_exchange_id.get(order.exchange_id or "")
        if cid is None:
            raise InvalidOrder(f"unknown order {order.client_id} on the paper exchange")
        current = self._orders[cid]
        if current.status.is_final:
            return current
        upd = self._cancel(cid, None)
        self._commit()
        self._queue([upd])
        return upd.order

    # --- streaming -------------------------------------------------------------------------

    async def run(self, sink: ExchangeSink) -> None:
        """Consume the feed until it ends (replay) or the task is cancelled (random walk)."""
        self._ensure_loaded()
        self._running = True
        self._wake = asyncio.Event()
        try:
            await sink.on_connection(ConnectionState(True, True, "paper exchange"))
            await self._flush(sink)
            if self.feed is None:
                while True:
                    await self._pause(3600.0, sink)
            runs = getattr(self.feed, "runs", None)
            take = getattr(sink, "on_tick_run", None)
            items = runs() if runs is not None and take is not None and not self.realtime \
                else None
            if items is not None:
                await self._run_runs(items, sink, take)
                await self._flush(sink)
                return
            step = max(1, len(self.feed.symbols()))
            interval = (getattr(self.feed, "tick_interval", None) or 1.0) / self.speed
            n_ticks = 0
            # the tick count at which the loop next pauses (realtime: a time step of `step`
            # ticks) or yields (simulated: every `yield_every` ticks, as read at the last)
            due = step if self.realtime else self.yield_every
            for ev in self.feed.events():
                await self.deliver(ev, sink)
                if ev.__class__ is Tick:  # (a feed's events are exactly these two classes)
                    n_ticks += 1
                    if n_ticks == due:
                        if self.realtime:
                            due += step
                            await self._pause(interval, sink)
                        else:
                            due += self.yield_every
                            await asyncio.sleep(0)  # let commands in between simulated ticks
            await self._flush(sink)
        finally:
            self._running = False
            self._wake = None
            if self._loaded:
                self._write_prices(force=True)

    async def _run_runs(self, items: Iterator[TickRun | CandleClosed], sink: ExchangeSink,
                        take: Callable[[Sequence[Tick], float, float, Sequence[float] | None],
                                       bool]) -> None:
        """`run`'s loop, simulated, over a feed's runs (`ReplayFeed.runs`) for a sink that
        takes runs (`EngineCore.on_tick_run`): each run's first tick as any tick (it opens
        the engine's forming candle, settles a band after the candle close before it), the
        rest at once where nothing can happen in its price range (`_take_run`), else tick by
        tick. The loop yields every `yield_every` ticks, as `run` does: a run is cut there."""
        n_ticks = 0
        due = self.yield_every
        for item in items:
            if item.__class__ is not TickRun:
                await self.deliver(item, sink)  # type: ignore[arg-type]
                continue
            ticks, prices, volumes = item.ticks, item.prices, item.volumes  # type: ignore[union-attr]
            i, m = 0, len(ticks)
            while i < m:
                j = min(m, i + due - n_ticks)  # the ticks up to the next yield
                await self.deliver(ticks[i], sink)
                if j - i > 1:
                    await self._take_run(ticks[i + 1:j], prices[i + 1:j],
                                         volumes[i + 1:j] if volumes is not None else None,
                                         sink, take)
                n_ticks += j - i
                i = j
                if n_ticks == due:
                    due += self.yield_every
                    await asyncio.sleep(0)  # let commands in between simulated ticks

    async def _take_run(self, ticks: Sequence[Tick], prices: Sequence[float],
                        volumes: Sequence[float] | None, sink: ExchangeSink,
                        take: Callable[[Sequence[Tick], float, float, Sequence[float] | None],
                                       bool]) -> None:
        """Ticks of one symbol (strictly increasing times, valid float prices: a run of a
        recorded file) delivered as `deliver` would one by one, at once when the venue's
        part of each is its calm case and the sink takes them all (`take` returns False
        when it would not, having changed nothing): no order triggers and no position
        liquidates strictly inside the symbol's calm band, no funding falls due before the
        last tick, and nothing is queued or stored (`_on_tick`'s other work). Else — or
        when the sink declines, the venue's part undone — tick by tick."""
        sym = ticks[0].symbol
        last = ticks[-1]
        low, high = min(prices), max(prices)
        if not self._pending and self._loaded and self.db is None and sym in self._markets \
                and low > 0.0 and high < _INF and last.ts < self._funding_due \
                and not (self._subscribed and not self._wants(sym)):
            calm = self._calm.get(sym)
            if calm is None:
                calm = self._calm[sym] = self._calm_band(sym)
            prev_last, prev_sim = self._last.get(sym), self._sim_ts
            # (each tick's clock its own time: none before the newest tick delivered)
            if calm[0] < low and high < calm[1] and (prev_sim is None
                                                      or prev_sim <= ticks[0].ts):
                self._last[sym] = last
                if prev_sim is None or last.ts > prev_sim:
                    self._sim_ts = last.ts
                if take(ticks, low, high, volumes):
                    return
                self._sim_ts = prev_sim  # declined: the ticks one by one, as they came
                if prev_last is None:
                    del self._last[sym]
                else:
                    self._last[sym] = prev_last
        for t in ticks:
            await self.deliver(t, sink)

    def deliver(self, event: FeedEvent, sink: ExchangeSink) -> Coroutine[Any, Any, None]:
        """Process one feed event as `run` does (also for driving the venue by hand):
        first the updates queued by commands since the last event, then the event.

        Not a coroutine function but one's twin: a calm tick — nothing queued, a known
        symbol and a valid price, no order matched, the symbol wanted — is taken by the venue
        here, and the sink's own `on_tick(tick)` is returned for the caller to await: one
        coroutine per tick instead of two (`pmgui replay` delivers every row of a file).
        Any other event is `_deliver`'s coroutine. The venue's part of a calm tick is done
        when `deliver` is called rather than when its result is awaited: callers await it
        at once (a task made of it sees the venue's part done already)."""
        if self._pending or not self._loaded or event.__class__ is not Tick:
            return self._deliver(event, sink)
        price = event.price
        if event.symbol not in self._markets or not (
                0.0 < price < _INF if price.__class__ is float else valid_price(price)):
            return self._deliver(event, sink)  # (which drops it)
        updates = self._on_tick(event)
        if updates is None:
            return self._matched(event, sink)
        if updates or (self._subscribed and not self._wants(event.symbol)):
            return self._after_tick(event, updates, sink)
        return sink.on_tick(event)

    async def _deliver(self, event: FeedEvent, sink: ExchangeSink) -> None:
        """`deliver` of any event: the queued updates first, then the event."""
        if not self._loaded:
            self._ensure_loaded()
        if self._pending:
            await self._flush(sink)
        if event.__class__ is CandleClosed:
            self._record_candle(event.symbol, event.candle)
            if self._wants(event.symbol):
                await sink.on_candle(event.symbol, event.candle, True)
            return
        if event.symbol not in self._markets or not valid_price(event.price):
            return
        updates = self._on_tick(event)
        if updates is None:
            await self._matched(event, sink)
        else:
            await self._after_tick(event, updates, sink)

    async def _after_tick(self, tick: Tick, updates: Sequence[OrderUpdate],
                          sink: ExchangeSink) -> None:
        """The sink's part of a tick the venue took: its order updates, then the tick."""
        for u in updates:
            await sink.on_order_update(u)
        if not self._subscribed or self._wants(tick.symbol):  # `_wants`' common case first
            await sink.on_tick(tick)

    async def flush(self, sink: ExchangeSink) -> None:
        """Deliver the updates queued by commands now (`deliver` and `run` do it first)."""
        await self._flush(sink)

    async def _flush(self, sink: ExchangeSink) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            for u in batch:
                await sink.on_order_update(u)

    async def _pause(self, seconds: float, sink: ExchangeSink) -> None:
        """Sleep `seconds`, waking to deliver updates queued by commands meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        assert self._wake is not None
        while True:
            await self._flush(sink)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            await wait_event(self._wake, remaining)

    def _queue(self, updates: Iterable[OrderUpdate]) -> None:
        self._pending.extend(updates)
        if self._wake is not None:
            self._wake.set()

    def _wants(self, symbol: str) -> bool:
        if not self._subscribed or symbol in self._subscribed:
            return True
        return any(p.symbol == symbol for p in self._positions.values()) or any(
            self._orders[c].symbol == symbol for c in self._open)

    # --- matching --------------------------------------------------------------------------

    def _on_tick(self, tick: Tick) -> Sequence[OrderUpdate] | None:
        self._last[tick.symbol] = tick
        if self.db is not None:  # for `_write_prices` (none without a database)
            self._prices_dirty.add(tick.symbol)
        if not self.realtime:  # the clock is the newest tick's time (`max`: ~10x the cost)
            sim = self._sim_ts
            if sim is None or tick.ts > sim:
                self._sim_ts = tick.ts
        price = tick.price
        calm = self._calm.get(tick.symbol)
        if calm is None:
            calm = self._calm[tick.symbol] = self._calm_band(tick.symbol)
        if calm[0] < price < calm[1]:  # nothing can trigger: no matching
            # most ticks: no funding boundary and nothing to commit, tested here rather
            # than by calls that return at once
            now = tick.ts if not self.realtime else self.now()
            if not now < self._funding_due:  # (a NaN clock charges as `_charge_funding` does)
                self._charge_funding(now)
            if self.db is not None:  # without one (a replay) a commit only forgets what
                # changed, which the next command's commit does as well
                if self._dirty.any():
                    self._commit(raise_errors=False)
                self._write_prices()
            return _NO_UPDATES
        return None  # not calm: `_matched` matches it

    async def _matched(self, tick: Tick, sink: ExchangeSink) -> None:
        """The sink's part of a tick that was not calm (`_on_tick` took it): the matching,
        its commit and the reports of what it changed run in one `collection_deferred()`
        block, then the tick as `_after_tick` gives it.

        Why one block: the engine books a report with collection deferred, and a block of
        the venue's own would end with the due collection at the next allocation (the
        report's coroutine), still before the close is acknowledged: ~1 stop crossing in 4
        held a young or a middle collection (0.2-1 ms) in the venue's matching and commit.
        The reports await the engine, which in the common case (a stop's fill and its
        close) does not suspend; when it does (a resting entry's fill places its
        protection), the collection is put off for as long, not dropped.

        The once-a-second price write (market data, not venue state) comes after the
        reports: a due chunk (~0.5-1 ms of upserts and a commit) between a stop's fill
        and its report was part of tick → close acknowledged."""
        with collection_deferred():
            for u in self._match(tick):
                await sink.on_order_update(u)
        self._write_prices()
        if not self._subscribed or self._wants(tick.symbol):  # `_wants`' common case first
            await sink.on_tick(tick)

    def _match(self, tick: Tick) -> list[OrderUpdate]:
        """What a tick outside the calm band fills, cancels or liquidates, committed."""
        price = tick.price
        updates: list[OrderUpdate] = []
        # Funding first: a boundary this tick passes was before its price, so it is paid by
        # the positions held then (not one the tick opens, and also one it closes)
        self._charge_funding(tick.ts if not self.realtime else self.now())
        # Liquidation next: a gap through both a stop and the liquidation price liquidates
        # (the loss of an isolated position never exceeds its margin); its stops are canceled.
        for side in (Side.LONG, Side.SHORT):  # one tick concerns only its own symbol
            p = self._positions.get((tick.symbol, side))
            if p is None:
                continue
            liq = self._liq_price(p)
            if liq is not None and (price <= liq if p.side is Side.LONG else price >= liq):
                if tick.continuous:
                    # No gap: the price moved here through every level on the way (inside a
                    # replayed candle), so what it reached before the liquidation price — a
                    # stop between the entry and it — filled first, at its own level.
                    updates.extend(self._match_orders(tick.symbol, liq, True))
                    p = self._positions.get((tick.symbol, side))
                    liq = self._liq_price(p) if p is not None else None
                    if p is None or liq is None or not (
                            price <= liq if p.side is Side.LONG else price >= liq):
                        continue
                updates.extend(self._liquidate(p, liq))
        updates.extend(self._match_orders(tick.symbol, price, tick.continuous))
        self._commit(raise_errors=False)
        return updates  # the price write is the caller's, after the reports (`_matched`)

    def _match_orders(self, symbol: str, price: float, continuous: bool) -> list[OrderUpdate]:
        """The fills of `symbol`'s resting orders that the price `price` reaches."""
        updates: list[OrderUpdate] = []
        for cid in list(self._open_by_symbol.get(symbol, ())):
            if cid not in self._open:  # canceled by an earlier fill in this tick
                continue
            o = self._orders[cid]
            if o.type is OrderType.LIMIT:
                assert o.price is not None
                if _limit_crossed(o.side, o.price, price):
                    updates.extend(self._execute(cid, o.price, self.maker_fee))
            elif o.trigger_price is not None and _triggered(o.type, o.side, o.trigger_price,
                                                            price):
                # A continuous move crossed the trigger: the market order fills there; a gap
                # (a real next tick, a candle's open) fills at the price after the gap.
                at = o.trigger_price if continuous else price
                updates.extend(self._execute(cid, self._slipped(o.symbol, o.side, at),
                                             self.taker_fee))
        return updates

    def _calm_band(self, symbol: str) -> tuple[float, float]:
        """(lo, hi): no liquidation of the symbol's positions and no trigger of its resting
        orders for a price strictly between them (the crossing rules of `_on_tick`)."""
        lo, hi = -math.inf, math.inf
        for side in (Side.LONG, Side.SHORT):
            p = self._positions.get((symbol, side))
            liq = self._liq_price(p) if p is not None else None
            if liq is None:
                continue
            if side is Side.LONG:
                lo = max(lo, liq)
            else:
                hi = min(hi, liq)
        for cid in self._open_by_symbol.get(symbol, ()):
            o = self._orders[cid]
            level = o.price if o.type is OrderType.LIMIT else o.trigger_price
            if level is None:
                continue
            if o.type is OrderType.LIMIT:
                below = o.side is OrderSide.BUY  # fills at or below the limit
            elif o.type is OrderType.STOP_MARKET:
                below = o.side is OrderSide.SELL
            elif o.type is OrderType.TAKE_PROFIT_MARKET:
                below = o.side is OrderSide.BUY
            else:
                continue
            if below:
                lo = max(lo, level)
            else:
                hi = min(hi, level)
        return lo, hi

    def _charge_funding(self, now: float) -> None:
        """At each 8-hour boundary, move rate × value at the mark between wallet and venue
        (once per boundary crossed; none before the first tick sets the clock)."""
        if now < self._funding_due:
            return  # still in the period last charged
        slot = int(now // FUNDING_PERIOD)
        if self._funding_slot is None:
            self._funding_slot = slot
            self._funding_due = (slot + 1) * FUNDING_PERIOD
            self._dirty.state = True
            return
        periods = slot - self._funding_slot
        if periods <= 0:
            return
        self._funding_slot = slot
        self._funding_due = (slot + 1) * FUNDING_PERIOD
        self._dirty.state = True
        if self.funding_rate == 0:
            return
        for p in self._positions.values():
            last = self._last.get(p.symbol)
            if last is None:
                continue
            cs = self._markets[p.symbol].contract_size
            fee = periods * self.funding_rate * p.qty * last.price * cs * p.side.dir
            self._balance -= fee
            self.funding_paid += fee
            pay = FundingPayment(slot * FUNDING_PERIOD, p.symbol, p.side, -fee)
            self._funding_log.append(pay)  # attributed to this position (symbol, side)
            self._dirty.funding.append(pay)

    def _slipped(self, symbol: str, side: OrderSide, price: float) -> float:
        m = self._markets[symbol]
        raw = price * (1 + self.slippage) if side is OrderSide.BUY else \
            price * (1 - self.slippage)
        return max(m.round_price(raw), m.tick_size if m.tick_size > 0 else raw)

    def _liq_price(self, p: _Pos) -> float | None:
        m = self._markets.get(p.symbol)
        if m is None:
            return None
        liq = liquidation_price(p.side, p.entry, p.leverage, m.mmr)
        return m.round_price(liq) if liq is not None else None

    # --- order creation --------------------------------------------------------------------

    def _market(self, symbol: str) -> Market:
        m = self._markets.get(symbol)
        if m is None:
            raise InvalidOrder(f"unknown symbol {symbol!r} on the paper exchange "
                               f"(markets: {', '.join(sorted(self._markets))})")
        return m

    def _create(self, req: OrderRequest) -> list[OrderUpdate]:
        """Validate, then accept (and possibly fill) an order. Raises before any change."""
        m = self._market(req.symbol)
        if not isinstance(req.client_id, str) or not req.client_id.strip():
            raise InvalidOrder("an order needs a client order id")
        if req.client_id in self._orders:
            raise InvalidOrder(f"client order id {req.client_id} is already used "
                               f"(order {self._orders[req.client_id].status})")
        try:
            side, otype = OrderSide(req.side), OrderType(req.type)
        except ValueError as e:
            raise InvalidOrder(f"invalid order: {e}") from None
        amount = req.amount
        if (isinstance(amount, bool) or not isinstance(amount, (int, float))
                or not math.isfinite(amount) or amount <= 0):
            raise InvalidOrder(f"order amount must be a positive number (got {amount!r})")
        base = m.base or m.symbol.split("/")[0]
        amount = m.floor_amount(float(amount))
        if amount <= 0 or amount < m.min_amount - _EPS:
            raise InvalidOrder(f"order amount {req.amount:g} {base} is below the minimum "
                               f"{max(m.min_amount, m.amount_step):g} {base} for {m.symbol}")
        last = self._last.get(m.symbol)
        price = trigger = None
        if otype is OrderType.LIMIT:
            if not valid_price(req.price):
                raise InvalidOrder(f"a limit order needs a positive price (got {req.price!r})")
            price = m.round_price(float(req.price))  # type: ignore[arg-type]
            if price <= 0:
                raise InvalidOrder(f"limit price {req.price!r} rounds to zero for {m.symbol}")
            ref = price
        elif otype is OrderType.MARKET:
            if last is None:
                raise InvalidOrder(f"no price for {m.symbol} yet: a market order needs one")
            ref = self._slipped(m.symbol, side, last.price)
        else:
            if not valid_price(req.trigger_price):
                raise InvalidOrder(f"a {otype.value.replace('_', '-')} order needs a positive "
                                   f"trigger price (got {req.trigger_price!r})")
            trigger = m.round_price(float(req.trigger_price))  # type: ignore[arg-type]
            if trigger <= 0:
                raise InvalidOrder(f"trigger price {req.trigger_price!r} rounds to zero")
            ref = trigger
        if req.reduce_only:
            pside = _reduced_side(side)
            if (m.symbol, pside) not in self._positions:
                raise InvalidOrder(f"reduce-only {side.value} order rejected: there is no "
                                   f"{pside.value} position on {m.symbol}")
        notional = amount * ref * m.contract_size
        if not req.reduce_only and notional < m.min_notional - _EPS:
            raise InvalidOrder(f"order value {notional:.2f} {m.quote} is below the minimum "
                               f"{m.min_notional:g} {m.quote} for {m.symbol}")
        if trigger is not None and last is not None and _triggered(otype, side, trigger,
                                                                   last.price):
            kind = "stop" if otype is OrderType.STOP_MARKET else "take-profit"
            where = ("below" if side is OrderSide.SELL else "above") if kind == "stop" else \
                ("above" if side is OrderSide.SELL else "below")
            raise OrderWouldTriggerImmediately(
                f"{side.value} {kind} at {trigger:g} would trigger immediately: the last "
                f"price of {m.symbol} is {last.price:g} (it must be {where} the price)")
        if not req.reduce_only:
            lev = self.leverage(m.symbol)
            need = notional / lev + notional * self.taker_fee
            free = self._free()
            if need > free + _EPS:
                raise InsufficientFunds(
                    f"insufficient margin: this order needs {_money(need)} {m.quote} "
                    f"({_money(notional)} at {lev:g}x plus fee), {_money(free)} {m.quote} "
                    f"available")

        now = self.now()
        self._seq += 1
        self._dirty.state = True
        order = Order(
            client_id=req.client_id, symbol=m.symbol, side=side, type=otype, amount=amount,
            status=OrderStatus.OPEN, exchange_id=f"paper-{self._seq}", price=price,
            trigger_price=trigger, reduce_only=req.reduce_only, position_id=req.position_id,
            role=req.role, reason=req.reason, created_at=now, updated_at=now)
        self._store_order(order)
        self._open[order.client_id] = None
        self._open_by_symbol.setdefault(order.symbol, {})[order.client_id] = None

        if otype is OrderType.MARKET:
            return self._execute(order.client_id, ref, self.taker_fee)
        if otype is OrderType.LIMIT and last is not None and _limit_crossed(side, price,
                                                                            last.price):
            fill_at = self._slipped(m.symbol, side, last.price)
            fill_at = min(fill_at, price) if side is OrderSide.BUY else max(fill_at, price)
            return self._execute(order.client_id, fill_at, self.taker_fee)
        return [OrderUpdate(order)]

    def _store_order(self, order: Order) -> None:
        self._calm.pop(order.symbol, None)
        self._used_stale.add(order.symbol)
        if order.client_id not in self._order_seq:
            self._order_seq[order.client_id] = self._seq
        self._orders[order.client_id] = order
        if order.exchange_id:
            self._by_exchange_id[order.exchange_id] = order.client_id
        if order.status.is_final:
            self._open.pop(order.client_id, None)
            group = self._open_by_symbol.get(order.symbol)
            if group is not None:
                group.pop(order.client_id, None)
        self._dirty.orders.add(order.client_id)

    # --- fills -----------------------------------------------------------------------------

    def _execute(self, cid: str, price: float, fee_rate: float) -> list[OrderUpdate]:
        """Fill the open order `cid` completely at `price` (clipped if reduce-only)."""
        o = self._orders[cid]
        m = self._markets[o.symbol]
        now = self.now()
        if o.reduce_only:
            key = (o.symbol, _reduced_side(o.side))
            pos = self._positions.get(key)
            if pos is None:
                return [self._cancel(cid, "reduce-only order canceled: the position it would "
                                          "reduce no longer exists", OrderStatus.EXPIRED)]
            qty = min(o.remaining, pos.qty)
        else:
            key = (o.symbol, _opened_side(o.side))
            qty = o.remaining
            notional = price * qty * m.contract_size
            need = notional / self.leverage(o.symbol) + notional * fee_rate
            free = self._free(exclude=cid)
            if need > free + _EPS:
                return [self._cancel(
                    cid, f"insufficient margin at execution: needs {_money(need)} {m.quote}, "
                         f"{_money(free)} {m.quote} available", OrderStatus.REJECTED)]
        fill = self._make_fill(o, qty, price, fee_rate, now)
        closed = self._apply(key, o.reduce_only, qty, price, fill.fee, now)
        error = None
        if o.reduce_only and qty < o.remaining - _EPS:
            error = f"reduce-only: filled {qty:g} of {o.amount:g}, the whole position"
        done = _filled(o, OrderStatus.FILLED, m.round_amount(o.filled + qty), price, now, error)
        self._store_order(done)
        updates = [OrderUpdate(done, (fill,))]
        if closed:
            updates.extend(self._cancel_reducers(key, "position closed"))
        elif o.reduce_only and " tranches=" in (o.reason or ""):
            # a per-tranche TP/SL pair is a bracket (Bybit's Partial TP/SL mode): when one
            # side fills, the other is cancelled, so it cannot close another tranche
            tag = (o.reason or "").split(" tranches=", 1)[1]
            for other in list(self._open):
                x = self._orders[other]
                if x.symbol == o.symbol and x.reduce_only and x.side is o.side and \
                        (x.reason or "").endswith(" tranches=" + tag):
                    updates.append(self._cancel(other, "canceled: its tranche was closed"))
        return updates

    def _make_fill(self, o: Order, qty: float, price: float, fee_rate: float, now: float,
                   *, liquidation: bool = False) -> Fill:
        m = self._markets[o.symbol]
        self._fill_seq += 1
        self._dirty.state = True
        fee = round(price * qty * m.contract_size * fee_rate, 10)
        fill = Fill(id=f"paper-fill-{self._fill_seq}", order_client_id=o.client_id,
                    symbol=o.symbol, side=o.side, qty=qty, price=price, fee=fee, ts=now,
                    exchange_order_id=o.exchange_id, liquidation=liquidation)
        self._fills.append(fill)
        self._dirty.fills.append(fill)
        return fill

    def _apply(self, key: tuple[str, Side], reduce: bool, qty: float, price: float,
               fee: float, now: float) -> bool:
        """Book a fill on the position and the wallet; True when the position closed."""
        m = self._markets[key[0]]
        cs = m.contract_size
        self._balance -= fee
        self._dirty.state = True
        self._dirty.positions.add(key)
        self._calm.pop(key[0], None)
        self._used_stale.add(key[0])
        pos = self._positions.get(key)
        if not reduce:
            lev = self.leverage(key[0])
            if pos is None:
                self._positions[key] = _Pos(key[0], key[1], qty, price, lev,
                                            price * qty * cs / lev, now, 0.0, fee)
            else:
                pos.entry = average_entry(pos.qty, pos.entry, qty, price)
                pos.qty = m.round_amount(pos.qty + qty)
                pos.margin += price * qty * cs / lev
                pos.fees += fee
                if lev != pos.leverage:
                    # an add at another leverage than the position's (raised since it
                    # opened): isolated, the position is liquidated by the margin it holds,
                    # so its leverage is what that margin is of its notional
                    pos.leverage = pos.entry * pos.qty * cs / pos.margin
            return False
        assert pos is not None
        pnl = key[1].dir * (price - pos.entry) * qty * cs
        self._balance += pnl
        remaining = m.round_amount(pos.qty - qty)
        if remaining <= _EPS:
            del self._positions[key]
            return True
        pos.margin *= remaining / pos.qty
        pos.qty = remaining
        pos.realized += pnl
        pos.fees += fee
        return False

    def _liquidate(self, p: _Pos, liq: float) -> list[OrderUpdate]:
        now = self.now()
        self._seq += 1
        self._dirty.state = True
        key = (p.symbol, p.side)
        o = Order(client_id=f"paper-liq-{self._seq}", symbol=p.symbol,
                  side=p.side.close_side, type=OrderType.MARKET, amount=p.qty,
                  status=OrderStatus.OPEN, exchange_id=f"paper-{self._seq}",
                  reduce_only=True, role=OrderRole.REDUCE, reason="liquidation",
                  created_at=now, updated_at=now)
        fill = self._make_fill(o, p.qty, liq, self.taker_fee, now, liquidation=True)
        self._apply(key, True, p.qty, liq, fill.fee, now)
        done = replace(o, status=OrderStatus.FILLED, filled=p.qty, average=liq,
                       error=f"liquidated at {liq:g}")
        self._store_order(done)
        return [OrderUpdate(done, (fill,)), *self._cancel_reducers(key, "position liquidated")]

    def _cancel_reducers(self, key: tuple[str, Side], why: str) -> list[OrderUpdate]:
        close_side = key[1].close_side
        out = []
        for cid in list(self._open_by_symbol.get(key[0], ())):
            o = self._orders[cid]
            if o.symbol == key[0] and o.reduce_only and o.side is close_side:
                out.append(self._cancel(cid, f"canceled: {why}"))
        return out

    def _cancel(self, cid: str, error: str | None,
                status: OrderStatus = OrderStatus.CANCELED) -> OrderUpdate:
        o = _ended(self._orders[cid], status, self.now(), error)
        self._store_order(o)
        return OrderUpdate(o)

    # --- wallet ----------------------------------------------------------------------------

    def _reserve(self, o: Order) -> float:
        if o.reduce_only:
            return 0.0
        m = self._markets[o.symbol]
        ref = o.price if o.price is not None else (o.trigger_price or 0.0)
        notional = ref * o.remaining * m.contract_size
        return notional / self.leverage(o.symbol) + notional * self.taker_fee

    def _free(self, exclude: str | None = None) -> float:
        used = self._used
        for symbol in self._used_stale:
            u = math.fsum((*(p.margin for p in (self._positions.get((symbol, Side.LONG)),
                                                self._positions.get((symbol, Side.SHORT)))
                             if p is not None),
                           *(self._reserve(self._orders[c])
                             for c in self._open_by_symbol.get(symbol, ()))))
            if u or (symbol, Side.LONG) in self._positions \
                    or (symbol, Side.SHORT) in self._positions:
                used[symbol] = u
            else:
                used.pop(symbol, None)
        self._used_stale.clear()
        total = math.fsum(used.values())
        if exclude is not None and exclude in self._open:
            total -= self._reserve(self._orders[exclude])
        return self._balance - total

    def _export_position(self, p: _Pos) -> ExchangePosition:
        m = self._markets.get(p.symbol)
        last = self._last.get(p.symbol)
        mark = last.price if last is not None else None
        cs = m.contract_size if m is not None else 1.0
        upnl = p.side.dir * (mark - p.entry) * p.qty * cs if mark is not None else None
        return ExchangePosition(symbol=p.symbol, side=p.side, qty=p.qty, entry=p.entry,
                                leverage=p.leverage, liquidation=self._liq_price(p), mark=mark,
                                unrealized_pnl=upnl, opened_at=p.opened_at)

    # --- candles ---------------------------------------------------------------------------

    def _record_candle(self, symbol: str, candle: Candle) -> None:
        dq = self._candles.setdefault(symbol, deque(maxlen=_MAX_CANDLES))
        if dq and candle.ts <= dq[-1].ts:
            return
        dq.append(candle)
        if self.db is not None:
            self._candle_rows.append((symbol, candle))
            self._write_prices()

    def _warmup(self, symbol: str, n: int, timeframe: float | None = None) -> list[Candle]:
        history = getattr(self.feed, "history", None)
        if history is None or symbol not in getattr(self.feed, "start_prices", {symbol: 0}):
            return []
        key = symbol if timeframe is None else f"{symbol}@{timeframe:g}"
        cached = self._history.get(key)
        if cached is None or len(cached) < n:
            if timeframe is None:
                fresh = list(history(symbol, max(n, 500)))
            else:
                try:
                    fresh = list(history(symbol, max(n, 100), timeframe=timeframe))
                except TypeError:  # a feed without per-timeframe history
                    return []
            if cached:
                # A longer walk is another path, not this one further back: the past already
                # served (the rules' indicators were built on it, the chart shows it) stays,
                # and the new walk only lengthens it, joined where it begins.
                older = [c for c in fresh if c.ts < cached[0].ts]
                fresh = (self._joined(symbol, older, cached[0].open) if older else []) + cached
            cached = fresh
            self._history[key] = cached
        return cached[-n:]

    # --- persistence -----------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.db is None:
            return
        with self._tx() as conn:
            for sql in _TABLES:
                conn.execute(sql)
        rows = dict(self.db.execute("SELECT key, value FROM paper_state").fetchall())
        self._state_stored = rows
        if "balance" not in rows:
            self._dirty.state = True
            self._commit()
            return
        self._restore(rows)

    def _restore(self, state: dict[str, str]) -> None:
        ex = self.db.execute
        self._balance = float(state["balance"])
        self.funding_paid = float(state.get("funding_paid", "0") or 0)
        slot = state.get("funding_slot", "")
        self._funding_slot = int(slot) if slot else None
        self._funding_due = (self._funding_slot + 1) * FUNDING_PERIOD \
            if self._funding_slot is not None else -math.inf
        self._calm.clear()
        self._seq = int(state.get("order_seq", "0"))
        self._fill_seq = int(state.get("fill_seq", "0"))
        self._funding_log = [FundingPayment(float(r[0]), r[1], Side(r[2]), float(r[3]))
                             for r in ex("SELECT ts, symbol, side, amount FROM paper_funding "
                                         "ORDER BY ts, rowid").fetchall()]
        for sym, lev in ex("SELECT symbol, leverage FROM paper_leverage").fetchall():
            self._leverage[sym] = float(lev)
        for r in ex("SELECT symbol, side, qty, entry, leverage, margin, opened_at, realized, "
                    "fees FROM paper_positions").fetchall():
            p = _Pos(r[0], Side(r[1]), *map(float, r[2:]))
            self._positions[(p.symbol, p.side)] = p
        for r in ex(f"SELECT {', '.join(_ORDER_COLS)} FROM paper_orders ORDER BY seq").fetchall():
            d = dict(zip(_ORDER_COLS, r, strict=True))
            seq = d.pop("seq")
            o = Order(client_id=d["client_id"], symbol=d["symbol"], side=OrderSide(d["side"]),
                      type=OrderType(d["type"]), amount=d["amount"],
                      status=OrderStatus(d["status"]), exchange_id=d["exchange_id"],
                      price=d["price"], trigger_price=d["trigger_price"], filled=d["filled"],
                      average=d["average"], reduce_only=bool(d["reduce_only"]),
                      position_id=d["position_id"], role=OrderRole(d["role"]),
                      reason=d["reason"], created_at=d["created_at"],
                      updated_at=d["updated_at"], error=d["error"])
            self._order_seq[o.client_id] = int(seq)
            self._orders[o.client_id] = o
            if o.exchange_id:
                self._by_exchange_id[o.exchange_id] = o.client_id
            if not o.status.is_final:
                self._open[o.client_id] = None
                self._open_by_symbol.setdefault(o.symbol, {})[o.client_id] = None
        for r in ex("SELECT id, order_client_id, symbol, side, qty, price, fee, ts, "
                    "exchange_order_id, liquidation FROM paper_fills ORDER BY rowid").fetchall():
            self._fills.append(Fill(r[0], r[1], r[2], OrderSide(r[3]), r[4], r[5], r[6], r[7],
                                    r[8], bool(r[9])))
        for sym, *row in ex("SELECT symbol, ts, open, high, low, close, volume FROM "
                            "paper_candles ORDER BY symbol, ts"):
            self._candles.setdefault(sym, deque(maxlen=_MAX_CANDLES)).append(
                Candle(*map(float, row)))
            self._stored_candles.add(sym)
        for sym, price, ts, vol in ex("SELECT symbol, price, ts, volume FROM paper_prices"):
            self._last[sym] = Tick(sym, float(price), float(ts), float(vol))
            if not self.realtime:
                self._sim_ts = max(self._sim_ts or ts, ts)
        self._dirty = _Dirty()
        self._calm.clear()
        self._used.clear()
        self._used_stale = {s for s, _ in self._positions} | set(self._open_by_symbol)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction on the shared connection (a savepoint inside someone else's)."""
        conn = self.db.conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT paper_tx")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO SAVEPOINT paper_tx")
                conn.execute("RELEASE SAVEPOINT paper_tx")
                raise
            conn.execute("RELEASE SAVEPOINT paper_tx")
            return
        # The simulated venue's own writes are committed without an fsync of their own
        # (synchronous=NORMAL in WAL: a killed app loses none of them); the engine's journal
        # of intended orders is still synced before anything is sent.
        if self._relaxed is not None:
            with self._relaxed(), _transaction(conn):
                yield conn
            return
        mode = conn.execute("PRAGMA synchronous").fetchone()[0]
        if mode > 1:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with _transaction(conn):
                yield conn
        finally:
            if mode > 1:
                conn.execute(f"PRAGMA synchronous = {int(mode)}")

    def _commit(self, *, raise_errors: bool = True) -> None:
        """Write everything the current change touched, atomically.

        If the write fails, the change stays pending (the next commit retries it) and a
        retryable error is raised: like a real venue timing out, the change may have
        happened, and the caller resolves it with `fetch_order_by_client_id`.
        """
        if not self._dirty.any():
            return
        d, self._dirty = self._dirty, _Dirty()
        if self.db is None:
            return
        try:
            self._write(d)
        except sqlite3.Error as e:
            self._dirty = _merge(d, self._dirty)
            if raise_errors:
                raise RetryableExchangeError(
                    f"the paper exchange could not save its state ({e}); the order may "
                    f"have been executed — look it up by its client id") from e
            log.warning("paper exchange: saving state failed, will retry: %s", e)

    def _write(self, d: _Dirty) -> None:
        """The changed state in one transaction. Of `paper_state` only the rows whose value
        differs from the one this venue committed last (`_state_stored`): a fill changes the
        balance and the fill counter, not the other four (each REPLACE a delete and an insert
        in two b-trees, ~10 µs, in the commit between a stop's fill and its report). Known
        only after a commit of its own: written inside someone else's transaction (which may
        still roll back), the next write writes every row again."""
        state: dict[str, str] | None = None
        own = not self.db.conn.in_transaction
        with self._tx() as conn:
            if d.state:
                state = {"balance": repr(self._balance), "order_seq": str(self._seq),
                         "fill_seq": str(self._fill_seq),
                         "funding_paid": repr(self.funding_paid),
                         "funding_slot": str(self._funding_slot
                                             if self._funding_slot is not None else ""),
                         "schema_version": str(SCHEMA_VERSION)}
                stored = self._state_stored
                conn.executemany(_STATE_UPSERT,
                                 [(k, v) for k, v in state.items() if stored.get(k) != v])
            if d.funding:
                conn.executemany(
                    "INSERT INTO paper_funding (ts, symbol, side, amount) VALUES (?, ?, ?, ?)",
                    [(f.ts, f.symbol, f.side.value, f.amount) for f in d.funding])
            for key in d.positions:
                p = self._positions.get(key)
                if p is None:
                    conn.execute("DELETE FROM paper_positions WHERE symbol = ? AND side = ?",
                                 (key[0], key[1].value))
                else:
                    conn.execute(
                        _POSITION_UPSERT,
                        (p.symbol, p.side.value, p.qty, p.entry, p.leverage, p.margin,
                         p.opened_at, p.realized, p.fees))
            for cid in d.orders:
                o = self._orders[cid]
                conn.execute(
                    _ORDER_UPSERT,
                    (o.client_id, self._order_seq.get(cid, 0), o.exchange_id, o.symbol,
                     o.side.value, o.type.value, o.amount, o.status.value, o.price,
                     o.trigger_price, o.filled, o.average, int(o.reduce_only), o.position_id,
                     o.role.value, o.reason, o.created_at, o.updated_at, o.error))
            if d.fills:
                conn.executemany(
                    "INSERT INTO paper_fills (id, order_client_id, symbol, side, qty, price, "
                    "fee, ts, exchange_order_id, liquidation) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(f.id, f.order_client_id, f.symbol, f.side.value, f.qty, f.price, f.fee,
                      f.ts, f.exchange_order_id, int(f.liquidation)) for f in d.fills])
                # prices that produced fills are part of the state they explain
                self._write_prices_into(conn, {f.symbol for f in d.fills})
            if d.leverage:
                conn.executemany(
                    "INSERT OR REPLACE INTO paper_leverage (symbol, leverage) VALUES (?, ?)",
                    [(s, self._leverage[s]) for s in d.leverage])
        if not own:
            self._state_stored = {}
        elif state is not None:
            self._state_stored = state

    def _write_prices(self, force: bool = False) -> None:
        """Last prices of the symbols that ticked, at most every `_PRICE_WRITE_INTERVAL` s and
        `_PRICE_CHUNK` rows per commit (`force`: every symbol at once): market data, not venue
        state, so a failed write is only logged."""
        if self.db is None or not (self._last or self._candle_rows):
            return
        now = time.monotonic()
        if force:
            self._price_pass, self._prices_dirty = [], set()
            self._last_price_write = now
            chunk: list[str] | None = None
        else:
            if not self._price_pass:  # a new write: what ticked since the last
                if now - self._last_price_write < _PRICE_WRITE_INTERVAL:
                    return
                # in key order, so each chunk's rows sit on a few neighbouring pages of
                # the table and its key index instead of all over them (a commit writes
                # each page it touched once: ~20 pages per chunk at 1,000 symbols unsorted)
                self._price_pass = sorted(self._prices_dirty, reverse=True)
                self._prices_dirty = set()
                self._last_price_write = now
            elif now < self._price_resume:
                return  # the rest of the write under way: paced
            chunk = self._price_pass[-_PRICE_CHUNK:]
            del self._price_pass[-_PRICE_CHUNK:]
        rows, self._candle_rows = self._candle_rows, []
        try:
            with self._tx() as conn:
                self._write_prices_into(conn, None if chunk is None else set(chunk))
                self._write_candles_into(conn, rows)
        except sqlite3.Error as e:
            self._candle_rows = rows + self._candle_rows  # retried with the next write
            self._prices_dirty.update(chunk or ())
            log.warning("paper exchange: saving prices failed: %s", e)
        end = time.monotonic()
        self._price_resume = end + _PRICE_PACE * (end - now)

    def _write_candles_into(self, conn: Any, rows: list[tuple[str, Candle]]) -> None:
        """Completed candles, keeping the newest `_MAX_CANDLES` of each symbol."""
        if not rows:
            return
        conn.executemany(
            "INSERT OR REPLACE INTO paper_candles (symbol, ts, open, high, low, close, volume) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(sym, c.ts, c.open, c.high, c.low, c.close, c.volume) for sym, c in rows])
        for sym in {sym for sym, _c in rows}:
            dq = self._candles.get(sym)
            if dq:
                conn.execute("DELETE FROM paper_candles WHERE symbol = ? AND ts < ?",
                             (sym, dq[0].ts))

    def _write_prices_into(self, conn: Any, symbols: set[str] | None = None) -> None:
        """The last prices of `symbols` (default: all of them); each row updated in place."""
        if symbols is None:
            ticks = list(self._last.values())
        else:
            ticks = [self._last[s] for s in symbols if s in self._last]
        if ticks:
            conn.executemany(
                "INSERT INTO paper_prices (symbol, price, ts, volume) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(symbol) DO UPDATE SET price = excluded.price, ts = excluded.ts, "
                "volume = excluded.volume",
                [(t.symbol, t.price, t.ts, t.volume) for t in ticks])


def _merge(a: _Dirty, b: _Dirty) -> _Dirty:
    return _Dirty(state=a.state or b.state, positions=a.positions | b.positions,
                  orders=a.orders | b.orders, fills=a.fills + b.fills,
                  leverage=a.leverage | b.leverage, funding=a.funding + b.funding)


