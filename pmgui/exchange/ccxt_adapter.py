"""Live exchanges through ccxt.pro (REST + websockets), behind the `Exchange` protocol.

Why it is shaped like this:

- The ccxt instance is created in `connect()`, i.e. inside the manager thread's running loop
  (ccxt binds its aiohttp session and websocket clients to the loop that first uses them),
  and closed in `close()` on that same loop.
- Market data never lies: `watch_*` does not reconnect by itself, so every stream runs in a
  loop with backoff; a stream that errors is re-subscribed, one that stays silent has the
  connection carrying it re-dialled (that one only: ccxt.pro spreads a large book over
  several), and while a symbol has no fresh price its REST price is polled, the stale
  symbols together in one batch. Staleness is tracked per symbol and reported through
  `ConnectionState`.
- Orders are never duplicated: every order carries the client id the engine journaled
  before sending. A create that times out is resolved by looking that client id up; it is
  re-sent only when the lookup proves the order does not exist.
- Errors reach the trader as `pmgui.domain.errors` types (see `retry.map_error`); only the
  NetworkError family is retried.
- Venue health (DESIGN §5): the ccxt client is a thin subclass (`_health_class`) whose
  `fetch2` sees every REST call. It syncs the clock offset at connect and again on a timestamp
  refusal (Binance -1021 / ccxt InvalidNonce), then retries that request exactly once; it
  reads the rate-limit headers for the headroom. Its `handle_message` sees the private
  stream's `listenKeyExpired`. The private (order) stream is recreated with a fresh listen key
  when the key expires, a keep-alive finds it gone, or the stream stays silent about an order
  it must have seen (a stall). Clock offset, stream states and headroom travel in
  `ConnectionState`.
- Nothing secret is logged: listen keys (they grant the account's order stream) are masked
  in this module's and ccxt's log output through `build.protect_logs`.

Why over 400 lines: one venue connection is one cohesive state machine (REST calls,
streams, order diffing and their health share the client and its caches); splitting it
would spread that shared state over modules that all reach into each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import ccxt.pro as ccxtpro
from ccxt.base import errors as cx
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from pmgui.domain import errors as pe
from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, Side
from pmgui.domain.models import Candle, Fill, Market, Order, OrderRequest, Tick
from pmgui.exchange.base import (
    Balance,
    Capabilities,
    ConnectionState,
    ExchangePosition,
    ExchangeSink,
    FundingPayment,
    OrderUpdate,
)
from pmgui.exchange.credentials import Credentials, load_credentials
from pmgui.exchange.retry import (
    Backoff,
    OrderStatusUnknown,
    exchange_codes,
    is_ambiguous,
    is_rate_limit,
    is_timestamp_error,
    map_error,
    retry_call,
)
from pmgui.exchange.venues import mapping as vm
from pmgui.redact import REDACTOR, protect_logs

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_TRIGGER_TYPES = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
_EPS = 1e-12


_ESTIMATES_KEPT = 512  # fills told with an estimated fee, waiting for the venue's


@dataclass(slots=True)
class _Estimate:
    """A fill told with an estimated fee (`fill`), of the order's quantity after `before`;
    the venue's trades of it seen since, by trade id: (quantity, fee)."""

    fill: Fill
    before: float
    trades: dict[str, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class AdapterSettings:
    """Timings of the stream supervision. Defaults suit live trading; tests shrink them."""

    stale_after: float = 5.0  # no price for this long → REST polling (DESIGN max_price_age)
    poll_interval: float = 1.0  # REST ticker polling period while a symbol is stale
    resubscribe_after: float = 20.0  # a stream silent this long is torn down and re-made
    order_poll_interval: float = 5.0  # REST order polling while the order stream is down
    supervisor_interval: float = 0.25
    order_stream_check: float = 1.0  # how often a quiet order stream is checked and diffed
    rest_attempts: int = 4
    create_attempts: int = 3  # sends of one client id, only after proving it is absent
    lookup_grace: float = 1.0  # wait before looking up a timed-out create (let it land)
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, max_delay=30.0))
    price_source: str = "auto"  # auto | ticker | bids_asks | trades
    # keep-alive probe of the listen key (weight 1): a key that expired without a word is
    # found within this, so the order stream is back well inside 10 s
    listen_key_check: float = 5.0
    stream_ack_timeout: float = 10.0  # an acknowledged order unseen by the stream → stalled
    # looks at the market order of a conditional order that fired (its fill) before it is
    # reported unseen (backoff between them: ~3.5 s at the default backoff)
    fired_lookups: int = 4
    # looks at the trades of an order booked at a reference after that bounded lookup found
    # none, further apart (the backoff goes on: ~4.5 min at the default), before it is left
    # booked at its reference
    price_relooks: int = 10
    # after a restart, looks at the trades of each fill the journal holds with an estimated
    # fee (`recall_fee_estimates`), beside the stream (~2.5 min at the default backoff),
    # before its fee is left an estimate until the next start
    fee_lookups: int = 10


_HEALTH_CLASSES: dict[type, type] = {}
_verbose_log = logging.getLogger("ccxt.verbose")


def _health_class(base: type) -> type:
    """`base` (a ccxt.pro exchange class) with two hooks for `CcxtExchange`: every REST call
    (`fetch2`) and every websocket message (`handle_message`) pass by the owner first."""
    cls = _HEALTH_CLASSES.get(base)
    if cls is not None:
        return cls

    async def fetch2(self: Any, path: Any, api: Any = "public", method: str = "GET",
                     params: Any = None, config: Any = None) -> Any:
        parent = super(cls, self).fetch2  # type: ignore[arg-type]
        params = {} if params is None else params
        config = {} if config is None else config
        owner = self.pm_owner
        if owner is None:
            return await parent(path, api, method, params, config)
        return await owner._rest_call(parent, path, api, method, params, config)

    def handle_message(self: Any, client: Any, message: Any) -> Any:
        owner = self.pm_owner
        if owner is not None and owner._on_ws_message(client, message):
            return None  # a price the adapter took itself (`CcxtExchange._fast_tick`)
        return super(cls, self).handle_message(client, message)  # type: ignore[arg-type]

    def log_(self: Any, *args: Any) -> None:
        # ccxt's `verbose` output (REST and websocket dumps) goes to the log, where secrets
        # are masked, instead of print()ing keys to stdout
        _verbose_log.debug(" ".join(str(a) for a in args))

    cls = type(f"Pmgui{base.__name__}", (base,), {
        "pm_owner": None, "fetch2": fetch2, "handle_message": handle_message, "log": log_,
        "__module__": __name__})
    _HEALTH_CLASSES[base] = cls
    return cls


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_FAST_SLICE = 32  # prices delivered between two looks at the other websocket messages
_POLL_CONCURRENCY = 8  # REST tickers in flight at once where the venue has no batch call
_RAW_SEEN_MAX = 50_000  # marks of cached order rows kept (then forgotten: diffed again)


def _raw_sig(o: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a cached ccxt order row is now: its `info` (the venue's message, replaced on
    every update) first, then the state fields a diff reads."""
    return (o.get("info"), o.get("status"), o.get("filled"), o.get("amount"),
            o.get("lastUpdateTimestamp"), o.get("triggerPrice"), o.get("price"),
            o.get("average"), o.get("cost"), o.get("clientOrderId"), o.get("type"))


# ccxt's numbers through the pure mapping module's one definition (finite floats or None)
_f = vm.num
_pos = vm.pos_num


class CcxtExchange:
    """A ccxt.pro exchange implementing `pmgui.exchange.base.Exchange`: the generic base
    every venue shares (pmgui.exchange.venues holds the per-venue classes)."""

    closed_page = 100  # orders asked per closed-order page (the venue's maximum)

    def __new__(cls, exchange_id: str, *args: Any, **kwargs: Any) -> CcxtExchange:
        """`CcxtExchange("bybit", ...)` is the Bybit adapter: the base dispatches to the
        venue's own class (pmgui.exchange.venues.factory)."""
        if cls is CcxtExchange:
            from pmgui.exchange.venues.factory import venue_class

            cls = venue_class(exchange_id)
        return super().__new__(cls)
    algo_orders = False  # conditional orders live in their own (algo) book with own ids

    def __init__(
        self,
        exchange_id: str,
        *,
        demo: bool = False,
        options: Mapping[str, Any] = _EMPTY,
        credentials: Credentials | None = None,
        clock: Callable[[], float] = time.time,
        settings: AdapterSettings | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if exchange_id not in ccxtpro.exchanges:
            raise pe.ValidationError(
                f"Unknown or non-streaming exchange '{exchange_id}': ccxt.pro supports "
                f"{', '.join(sorted(ccxtpro.exchanges)[:12])}, …", field="exchange.id")
        self.id = exchange_id
        self.demo = demo
        self.capabilities = Capabilities()
        self._options = copy.deepcopy(dict(options))
        self._credentials = credentials
        self._clock = clock
        self._settings = settings or AdapterSettings()
        self._sleep = sleep
        self._ex: Any = None
        self._markets: dict[str, Market] = {}
        self._raw_markets: dict[str, dict[str, Any]] = {}
        self._settle = "USDT"
        self._symbols: set[str] = set()  # only ever grows (`subscribe`)
        self._symbols_sorted: tuple[str, ...] | None = None
        # market data
        self._last_price_at: dict[str, float] = {}  # receipt time (clock) of the last price
        self._last_stream_at: dict[str, float] = {}
        self._last_poll_at: dict[str, float] = {}
        self._polled_price_at: dict[str, float] = {}  # receipt time of a REST poll's price
        self._stream_up: dict[str, bool] = {}
        self._stream_started_at: dict[str, float] = {}
        self._candles: dict[str, Candle] = {}
        self._last_price: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        # prices read straight off the websocket message (`_fast_tick`), newest per symbol,
        # until the price task takes them; `_fast_ids`: venue market id → subscribed symbol
        self._fast_ids: dict[str, str] = {}
        self._fast_pending: dict[str, Tick] = {}
        self._fast_wake: asyncio.Event | None = None
        # orders
        self._requests: dict[str, OrderRequest] = {}  # client id → what pmgui asked for
        self._emitted: dict[str, tuple[Any, ...]] = {}  # order key → last emitted signature
        self._fill_progress: dict[str, tuple[float, float]] = {}  # key → (filled, cost)
        self._fee_progress: dict[str, float] = {}  # key → the venue's cumulative fee booked
        # key → the fill told with an estimated fee, until the venue's fee of it shows
        # (`_fee_fix`: told again under its id with that fee, the ledger corrects the booking)
        self._fee_estimates: dict[str, _Estimate] = {}
        # the tasks looking up, after a restart, the venue's fees of the journal's fills
        # booked with an estimate (`recall_fee_estimates`): stopped with the stream or close
        self._fee_lookups: set[asyncio.Task[None]] = set()
        # told the id of a fill told with an estimated fee that needs no correction after
        # all (`_fee_settled`): the ledger's record of the estimate is done with
        self.on_fee_settled: Callable[[str], None] | None = None
        # order id → the quantity whose price a bounded lookup of its trades did not find
        # (not looked up again for as much: the ledger books it at its reference)
        self._unpriced_seen: dict[str, float] = {}
        # order id → the task looking up the price of its priceless final report, beside the
        # stream (`_price_beside`): one per order, however often the venue tells it
        self._pricing: dict[str, asyncio.Task[None]] = {}
        # client id → the journal's conditional order of that id (`recall_orders`): what a
        # lookup after a restart finds under it may be the market order it created
        self._recalled_triggers: dict[str, Order] = {}
        self._algo_by_child: dict[str, str] = {}  # child exchange id → algo exchange id
        self._algo_raw: dict[str, dict[str, Any]] = {}
        self._algo_cids: dict[str, str] = {}  # client id → first algo kept with it
        self._algo_seq: dict[str, int] = {}  # algo id → when first kept (emission order)
        self._tracked_open: dict[str, tuple[str, str, bool]] = {}  # key → (ex id, sym, trig)
        self._orders_up = False
        self._orders_error = ""
        self._last_order_poll = 0.0
        self._sink: ExchangeSink | None = None
        self._connection: ConnectionState | None = None
        self._process_lock = asyncio.Lock()
        # venue health
        self._clock_lock = asyncio.Lock()
        self._clock_syncs = 0
        self._clock_offset: float | None = None  # exchange clock minus ours, seconds
        self._weight_limit: float | None = None  # request weight per minute (Binance)
        self._headroom: float | None = None  # share of the rate limit still free, 0..1
        self._renew_reason = ""  # set → the order loop recreates the private stream
        self._awaiting_stream: dict[str, tuple[float, str]] = {}  # ex id → (deadline, cid)
        self._stream_renewals = 0
        self._stream_renewals_public = 0  # public connections re-dialled for silence
        self._outages: dict[str, tuple[float, int]] = {}  # what → (since, failures)
        # account modes (detected at connect and from every position listing, never guessed)
        self.hedged: bool | None = None  # the account's position mode (None: unknown yet)
        self._hedged_symbols: dict[str, bool] = {}  # per-symbol mode where the venue has one
        self.account_margin_mode: str | None = None  # account-wide margin mode (Bybit UTA)
        self._margin_modes: dict[tuple[str, Side], str] = {}  # (symbol, side) → cross|isolated
        self._algo_by_client_child: dict[str, str] = {}  # algo client id → algo exchange id
        # (symbol, id) of each cached order row → what it was when last diffed (_raw_sig)
        self._raw_seen: dict[tuple[Any, Any], tuple[Any, ...]] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_binance(self) -> bool:
        return self.id.startswith("binance")

    def _default_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"enableRateLimit": True, "newUpdates": True, "options": {}}
        if self.is_binance:
            # sapi currencies are a spot-wallet call a futures key may not reach; and
            # open orders without a symbol are wanted (reconciliation needs all of them)
            cfg["options"].update({"fetchCurrencies": False,
                                   "warnOnFetchOpenOrdersWithoutSymbol": False,
                                   "defaultType": "swap"})
        elif self.id == "bybit":
            cfg["options"].update({"defaultType": "swap",
                                   "fetchMarkets": {"types": ["linear"]}})
        elif self.id == "okx":
            cfg["options"].update({"defaultType": "swap",
                                   "fetchMarkets": {"types": ["swap"]}})
        return cfg

    async def connect(self) -> None:
        """Create the ccxt.pro client in this loop, load markets, verify the credentials."""
        await self._close_client()  # a reconnect must not leak the previous client
        creds = self._credentials if self._credentials is not None else \
            load_credentials(self.id)
        if creds is None:
            raise pe.AuthenticationError(
                f"No API credentials for {self.id}: store them in the OS keyring (service "
                f"'pmgui', user '{self.id}', JSON with apiKey/secret/password) or set "
                "PMGUI_API_KEY and PMGUI_API_SECRET")
        config = _deep_merge(self._default_config(), self._options)
        config.update(creds.ccxt_config())
        protect_logs(*(v for v in creds.ccxt_config().values() if isinstance(v, str)))
        ex = _health_class(getattr(ccxtpro, self.id))(config)
        ex.pm_owner = self
        self._ex = ex
        try:
            if self.demo:
                self._enable_demo(ex)
            try:
                ex.check_required_credentials()
            except cx.AuthenticationError as e:
                raise pe.AuthenticationError(
                    f"{self.id} needs more credentials: {', '.join(self._required(ex))} "
                    f"({e})") from None
            await retry_call(lambda: ex.load_markets(True), exchange_id=self.id,
                             attempts=self._settings.rest_attempts,
                             backoff=self._settings.backoff, sleep=self._sleep,
                             what="load_markets")
            self._load_markets(ex)
            await self._sync_clock_at_start(ex)
            self.capabilities = self._capabilities(ex)
            await self._detect_account_mode(ex)
            try:
                await retry_call(ex.fetch_balance, exchange_id=self.id,
                                 attempts=self._settings.rest_attempts,
                                 backoff=self._settings.backoff, sleep=self._sleep,
                                 what="credential check")
            except pe.ExchangeError as e:
                if isinstance(e, pe.AuthenticationError) or e.retryable:
                    raise  # a bad key, or the venue is unreachable: say exactly that
                raise pe.AuthenticationError(
                    f"{self.id}: could not verify the API key ({e})") from e
        except BaseException:
            await self._close_client()
            raise
        log.info("connected to %s%s: %d markets; clock offset %s; missing: %s", self.id,
                 " (demo)" if self.demo else "", len(self._markets),
                 "unknown" if self._clock_offset is None else f"{self._clock_offset:+.3f} s",
                 ", ".join(self.capabilities.missing) or "nothing")

    # ------------------------------------------------------------------ venue health
    @property
    def clock_offset(self) -> float | None:
        """The exchange's clock minus ours in seconds (None: never measured)."""
        return self._clock_offset

    @property
    def rate_limit_headroom(self) -> float | None:
        """Share of the venue's request budget still free (0..1; None: the venue does not
        say)."""
        return self._headroom

    @property
    def public_redials(self) -> int:
        """Public websocket connections torn down and re-dialled because a price stream on
        them fell silent (the bench and the tests read it)."""
        return self._stream_renewals_public

    @property
    def stream_renewals(self) -> int:
        return self._stream_renewals

    async def _sync_clock_at_start(self, ex: Any) -> None:
        if not ex.has.get("fetchTime"):
            return
        try:
            await self._rest(lambda: self._sync_clock(ex), "clock sync")
        except pe.ExchangeError as e:
            if e.retryable:
                raise
            log.warning("%s: clock offset unknown (%s)", self.id, e)

    async def _sync_clock(self, ex: Any, seen: int | None = None) -> None:
        """Measure the exchange's clock (ccxt `load_time_difference`: `timeDifference` in
        ms, which every signed request subtracts from its timestamp). `seen` is the sync
        count the caller saw fail: a sync done meanwhile by a concurrent request counts."""
        async with self._clock_lock:
            if seen is not None and self._clock_syncs != seen:
                return
            diff = await ex.load_time_difference()
            self._clock_syncs += 1
            self._clock_offset = -float(diff) / 1000.0
        log.info("%s: clock offset %+.3f s (exchange minus local)", self.id,
                 self._clock_offset)

    async def _rest_call(self, parent: Callable[..., Awaitable[Any]], path: Any, api: Any,
                         method: str, params: Any, config: Any) -> Any:
        """One ccxt REST call: a timestamp refusal resyncs the clock and retries once."""
        snapshot = copy.deepcopy(params)
        seen = self._clock_syncs
        try:
            result = await parent(path, api, method, params, config)
        except Exception as exc:
            self._note_rate_limit(exc)
            if not is_timestamp_error(exc) or self._ex is None:
                raise
            log.warning("%s: request timestamp refused (%s); syncing the clock and retrying "
                        "once", self.id, type(exc).__name__)
            try:
                await self._sync_clock(self._ex, seen)
            except Exception as sync_exc:
                raise map_error(sync_exc, self.id) from exc
            try:
                result = await parent(path, api, method, snapshot, config)
            except Exception as exc2:
                self._note_rate_limit(exc2)
                if is_timestamp_error(exc2):
                    off = self._clock_offset or 0.0
                    raise pe.ExchangeError(
                        f"{self.id}: the exchange refused the request time even after syncing "
                        f"the clock (offset {off:+.1f} s); check this computer's clock") \
                        from exc2
                raise
        self._note_rate_limit(None)
        if isinstance(result, dict) and isinstance(result.get("listenKey"), str):
            REDACTOR.add(result["listenKey"])
        if isinstance(result, dict) and isinstance(result.get("rateLimits"), list):
            for lim in result["rateLimits"]:
                if isinstance(lim, dict) and lim.get("rateLimitType") == "REQUEST_WEIGHT":
                    per = {"SECOND": 1 / 60, "MINUTE": 1.0, "HOUR": 60.0}.get(
                        str(lim.get("interval")), 0.0) * (_pos(lim.get("intervalNum")) or 1.0)
                    if per == 1.0 and _pos(lim.get("limit")):
                        self._weight_limit = _pos(lim.get("limit"))
        return result

    def _note_rate_limit(self, exc: BaseException | None) -> None:
        if exc is not None and is_rate_limit(exc):
            self._headroom = 0.0
            return
        ex = self._ex
        headers = getattr(ex, "last_response_headers", None) if ex is not None else None
        if not headers:
            return
        h = {str(k).lower(): v for k, v in dict(headers).items()}
        used = _f(h.get("x-mbx-used-weight-1m"))
        if used is not None:
            limit = self._weight_limit or 2400.0
            self._headroom = max(0.0, min(1.0, 1.0 - used / limit))
            return
        left, limit = _f(h.get("x-bapi-limit-status")), _pos(h.get("x-bapi-limit"))
        if left is not None and limit:
            self._headroom = max(0.0, min(1.0, left / limit))

    def _failing(self, what: str, err: object) -> None:
        """A repeated failure is said once (then at debug level) until `_working(what)`."""
        since, n = self._outages.get(what, (self._clock(), 0))
        self._outages[what] = (since, n + 1)
        if n == 0:
            log.warning("%s %s: %s (said once, until it recovers)", self.id, what, err)
        else:
            log.debug("%s %s: %s (failure %d)", self.id, what, err, n + 1)

    def _working(self, what: str) -> None:
        outage = self._outages.pop(what, None)
        if outage is not None:
            since, n = outage
            log.info("%s %s works again after %.1f s (%d failures)", self.id, what,
                     max(0.0, self._clock() - since), n)

    def _on_ws_message(self, client: Any, message: Any) -> bool:
        """Every websocket message, before ccxt sees it. True: a price taken here (ccxt's
        own ticker parsing and its per-symbol futures are skipped for it)."""
        wake = self._fast_wake
        if wake is not None:
            tick = self._fast_tick(message)
            if tick is not None:
                self._fast_pending[tick.symbol] = tick
                wake.set()
                return True
        if isinstance(message, dict) and message.get("e") == "listenKeyExpired":
            self._renew_reason = "listen key expired"
        return False

    def _fast_tick(self, message: Any) -> Tick | None:
        """The venue's ticker message as a Tick, read without ccxt (None: not one, or not
        a subscribed symbol's; ccxt handles it as usual). The generic base has no reader:
        every message goes through ccxt's `watch_*`."""
        return None

    def _fast_reader(self) -> bool:
        """Whether this venue reads its price messages itself (`_fast_tick`) for the
        configured price source."""
        return False

    async def _detect_account_mode(self, ex: Any) -> None:
        """Learn the account's position mode (one-way / hedge) where ccxt can tell; each
        venue adds what it knows (margin mode, per-symbol modes)."""
        if not ex.has.get("fetchPositionMode"):
            return
        try:
            mode = await self._rest(lambda: ex.fetch_position_mode(None), "position mode")
        except pe.ExchangeError as e:
            if e.retryable:
                raise
            log.warning("%s: position mode unknown (%s)", self.id, e)
            return
        self.hedged = bool((mode or {}).get("hedged"))
        log.info("%s: %s position mode", self.id, "hedge" if self.hedged else "one-way")

    def is_hedged(self, symbol: str) -> bool:
        """Whether orders on `symbol` must name their position side (hedge mode)."""
        return self._hedged_symbols.get(symbol, bool(self.hedged))

    def margin_mode(self, symbol: str, side: Side) -> str | None:
        """The margin mode of the (symbol, side) position as last reported by the venue."""
        return self._margin_modes.get((symbol, side)) or self.account_margin_mode

    def _required(self, ex: Any) -> list[str]:
        req = getattr(ex, "requiredCredentials", {}) or {}
        return [k for k, v in req.items() if v]

    def _enable_demo(self, ex: Any) -> None:
        if self.is_binance and hasattr(ex, "enable_demo_trading"):
            ex.enable_demo_trading(True)  # binanceusdm has no sandbox any more
            return
        if ex.urls.get("test"):
            ex.set_sandbox_mode(True)
            return
        if hasattr(ex, "enable_demo_trading") and ex.urls.get("demo"):
            ex.enable_demo_trading(True)
            return
        raise pe.ExchangeError(f"{self.id} has no demo or testnet mode in ccxt; "
                               "set exchange.demo = false or choose another exchange")

    async def close(self) -> None:
        # the price lookups beside the stream (`_price_beside`): `run` stops them as it ends,
        # but a sink attached without it (`attach`) leaves them to this
        pricing = list(self._pricing.values()) + list(self._fee_lookups)
        for task in pricing:
            task.cancel()
        await asyncio.gather(*pricing, return_exceptions=True)
        await self._close_client()

    async def _close_client(self) -> None:
        ex, self._ex = self._ex, None
        if ex is not None:
            with contextlib.suppress(Exception):
                await ex.close()

    def _client(self) -> Any:
        if self._ex is None:
            raise pe.ExchangeError(f"{self.id}: not connected")
        return self._ex

    # ------------------------------------------------------------------ markets
    def _step(self, ex: Any, value: Any) -> float:
        v = _pos(value)
        if v is None:
            return 0.0
        mode = getattr(ex, "precisionMode", TICK_SIZE)
        if mode == DECIMAL_PLACES:
            return 10.0 ** -int(v)
        if mode == SIGNIFICANT_DIGITS:
            return 0.0  # no fixed step; ccxt's *_to_precision still applies on send
        return v

    def _load_markets(self, ex: Any) -> None:
        markets: dict[str, Market] = {}
        raw: dict[str, dict[str, Any]] = {}
        settles: dict[str, int] = {}
        for symbol, m in (ex.markets or {}).items():
            if not m.get("contract") or m.get("linear") is False or m.get("active") is False:
                continue
            limits = m.get("limits") or {}
            prec = m.get("precision") or {}
            max_lev = _pos((limits.get("leverage") or {}).get("max"))
            markets[symbol] = Market(
                symbol=symbol,
                tick_size=self._step(ex, prec.get("price")),
                amount_step=self._step(ex, prec.get("amount")),
                min_amount=_pos((limits.get("amount") or {}).get("min")) or 0.0,
                min_notional=_pos((limits.get("cost") or {}).get("min")) or 0.0,
                contract_size=_pos(m.get("contractSize")) or 1.0,
                max_leverage=max(1, min(125, int(max_lev))) if max_lev else 125,
                base=str(m.get("base") or ""),
                quote=str(m.get("quote") or "USDT"),
            )
            raw[symbol] = m
            settle = str(m.get("settle") or m.get("quote") or "USDT")
            settles[settle] = settles.get(settle, 0) + 1
        if not markets:
            raise pe.ExchangeError(f"{self.id}: no linear futures/swap markets found")
        self._markets = markets
        self._raw_markets = raw
        self._settle = max(settles, key=lambda k: settles[k])

    def markets(self) -> dict[str, Market]:
        return dict(self._markets)

    def _market(self, symbol: str) -> Market:
        m = self._markets.get(symbol)
        if m is None:
            raise pe.InvalidOrder(f"{self.id}: unknown symbol '{symbol}'")
        return m

    def _capabilities(self, ex: Any) -> Capabilities:
        h = ex.has
        stop = bool(h.get("createStopMarketOrder") or h.get("createStopLossOrder")
                    or h.get("createStopOrder") or h.get("createTriggerOrder"))
        tp = bool(h.get("createTakeProfitOrder") or h.get("createTriggerOrder"))
        watch_t = bool(h.get("watchTicker") or h.get("watchBidsAsks") or h.get("watchTrades"))
        caps = Capabilities(
            stop_orders=stop,
            take_profit_orders=tp,
            # Binance TP/SL (algo) orders cannot be edited: always cancel and replace
            edit_orders=bool(h.get("editOrder")) and not self.is_binance,
            watch_tickers=watch_t,
            watch_orders=bool(h.get("watchOrders")),
            # the ExchangeSink has no position callback: positions are reconciled by REST,
            # so the adapter does not claim a position stream even where ccxt has one
            watch_positions=False,
            fetch_ohlcv=bool(h.get("fetchOHLCV")),
        )
        missing = []
        labels = [
            (caps.stop_orders, "stop-loss orders on the exchange (SL stays local only)"),
            (caps.take_profit_orders, "take-profit orders on the exchange (TP stays local)"),
            (caps.watch_tickers, "live price stream (REST polling instead)"),
            (caps.watch_orders, "live order stream (REST polling instead)"),
            (caps.watch_positions, "live position stream (REST reconciliation instead)"),
            (caps.fetch_ohlcv, "candle history for the chart"),
            (bool(h.get("fetchPositions")), "fetching positions"),
            (bool(h.get("fetchOpenOrders")), "fetching open orders"),
            (bool(h.get("setLeverage")), "setting leverage"),
            (bool(h.get("fetchTicker")), "REST price fallback"),
            (bool(h.get("fetchOrder") or h.get("fetchOpenOrders")),
             "looking up orders by client id"),
        ]
        caps = replace(caps, **self.venue_capabilities(ex))
        labels += [
            (caps.hedge_mode, "hedge-mode orders (one-way positions only)"),
            (caps.mark_trigger, "mark-price triggers (stops trigger on the last price)"),
        ]
        for ok, label in labels:
            if not ok:
                missing.append(label)
        return replace(caps, missing=tuple(missing))

    def venue_capabilities(self, ex: Any) -> dict[str, Any]:
        """The venue's entries of the capability table (the generic base knows none)."""
        return {}

    # ------------------------------------------------------------------ REST: account
    async def _rest(self, fn: Callable[[], Awaitable[Any]], what: str,
                    attempts: int | None = None) -> Any:
        return await retry_call(fn, exchange_id=self.id,
                                attempts=attempts or self._settings.rest_attempts,
                                backoff=self._settings.backoff, sleep=self._sleep, what=what)

    async def fetch_positions(self) -> list[ExchangePosition]:
        ex = self._client()
        if not ex.has.get("fetchPositions"):
            raise pe.ExchangeError(f"{self.id} cannot report positions through ccxt")
        raw = await self._fetch_positions_raw(ex)
        out = []
        for p in raw or []:
            pos = vm.position_from(self.id, p, self.account_margin_mode)
            if pos is None:
                continue
            self._note_position(pos)
            out.append(pos)
        return out

    async def _fetch_positions_raw(self, ex: Any) -> list[Any]:
        return list(await self._rest(lambda: ex.fetch_positions(), "fetch_positions") or [])

    def _note_position(self, pos: ExchangePosition) -> None:
        """Remember what the venue said about this position's modes (orders follow it)."""
        if pos.margin_mode:
            self._margin_modes[(pos.symbol, pos.side)] = pos.margin_mode
        if pos.hedged:
            self._hedged_symbols[pos.symbol] = True
        elif self.hedged is None:
            self._hedged_symbols.setdefault(pos.symbol, False)

    @staticmethod
    def _leverage_of(p: Mapping[str, Any]) -> float:
        return vm.leverage_of(p)

    async def fetch_balance(self) -> Balance:
        """`Balance.total` is the wallet: realized P/L only (the engine adds the positions'
        open P/L for the equity, as the paper venue's wallet is)."""
        ex = self._client()
        raw = await self._rest(lambda: ex.fetch_balance(), "fetch_balance")
        entry = raw.get(self._settle) or {}
        total = vm.wallet_of(self.id, raw, self._settle)
        if total is None:
            total = _f(entry.get("total")) or 0.0
        free = _f(entry.get("free")) or 0.0
        used = _f(entry.get("used"))
        return Balance(self._settle, total, free, used if used is not None else total - free)

    async def fetch_funding_history(self, since: float = 0.0) -> list[FundingPayment] | None:
        """Funding settlements since `since` (None: the venue has no funding history in
        ccxt). ccxt's entries name the symbol, not the side: `side` stays None."""
        ex = self._client()
        if not ex.has.get("fetchFundingHistory"):
            return None
        rows = await self._rest(
            lambda: ex.fetch_funding_history(None, int(since * 1000), 1000),
            "fetch_funding_history")
        out = []
        for r in rows or []:
            amount, ts, symbol = _f(r.get("amount")), _f(r.get("timestamp")), r.get("symbol")
            if amount is not None and ts is not None and symbol:
                out.append(FundingPayment(ts / 1000, symbol, None, amount))
        return out

    async def set_leverage(self, symbol: str, leverage: float) -> None:
        ex = self._client()
        market = self._market(symbol)
        lev = _f(leverage)
        if lev is None or lev < 1 or lev > market.max_leverage:
            raise pe.ValidationError(
                f"Leverage must be between 1 and {market.max_leverage} for {symbol}",
                field="leverage")
        if not ex.has.get("setLeverage"):
            raise pe.ExchangeError(f"{self.id} cannot set leverage through ccxt; set it on "
                                   "the exchange")
        try:
            for params in self._leverage_params(symbol):
                await self._rest(lambda p=params: ex.set_leverage(round(lev), symbol, dict(p)),
                                 "set_leverage")
        except pe.ExchangeError as e:
            if "not modified" in str(e).lower() or "110043" in str(e):
                return  # bybit: already at that leverage
            raise

    def _leverage_params(self, symbol: str) -> list[dict[str, Any]]:
        """The venue params of each call a leverage change takes (OKX: per margin mode,
        and per leg for isolated hedge positions)."""
        return [{}]

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m",
                          limit: int = 200) -> list[Candle]:
        ex = self._client()
        self._market(symbol)
        if not ex.has.get("fetchOHLCV"):
            raise pe.ExchangeError(f"{self.id} does not provide candle history")
        if timeframe not in (ex.timeframes or {}):
            raise pe.ValidationError(f"{self.id} has no '{timeframe}' candles",
                                     field="timeframe")
        rows = await self._rest(lambda: ex.fetch_ohlcv(symbol, timeframe, None, int(limit)),
                                "fetch_ohlcv")
        out = []
        for r in rows or []:
            vals = [_f(v) for v in r[:6]]
            if len(vals) < 5 or any(v is None for v in vals[:5]):
                continue
            ts, o, h, lo, c = (float(v) for v in vals[:5])  # type: ignore[arg-type]
            if min(o, h, lo, c) <= 0:
                continue
            out.append(Candle(ts / 1000.0, o, h, lo, c, vals[5] or 0.0 if len(vals) > 5
                              else 0.0))
        return out

    async def fetch_price(self, symbol: str) -> Tick | None:
        ex = self._client()
        self._market(symbol)
        if not ex.has.get("fetchTicker"):
            return None
        t = await self._rest(lambda: ex.fetch_ticker(symbol), "fetch_ticker", attempts=3)
        return self._tick_from(symbol, t)

    def _tick_from(self, symbol: str, t: Mapping[str, Any] | None) -> Tick | None:
        if not t:
            return None
        price = _pos(t.get("last")) or _pos(t.get("close"))
        if price is None:
            bid, ask = _pos(t.get("bid")), _pos(t.get("ask"))
            price = (bid + ask) / 2 if bid and ask else _pos(t.get("markPrice"))
        if price is None:
            return None
        ts = _pos(t.get("timestamp"))
        return Tick(symbol, price, ts / 1000.0 if ts else self._clock(),
                    _f(t.get("baseVolume")) or 0.0)

    # ------------------------------------------------------------------ orders: mapping
    def _order_type_of(self, o: Mapping[str, Any]) -> OrderType:
        return vm.order_type_of(self.id, o)

    def _status_of(self, o: Mapping[str, Any], default: OrderStatus) -> OrderStatus:
        return vm.status_of(self.id, o, default)

    def _to_order(self, o: Mapping[str, Any], *, filled: float | None = None,
                  average: float | None = None, status: OrderStatus | None = None) -> Order:
        oid = vm.order_id_of(self.id, o)
        client_id = vm.client_id_of(self.id, o) or f"ext-{oid}"
        req = self._requests.get(client_id)
        otype = self._order_type_of(o)
        side_raw = str(o.get("side") or (req.side if req else "")).lower()
        side = OrderSide(side_raw) if side_raw in ("buy", "sell") else \
            (req.side if req else OrderSide.SELL)
        amount = _pos(o.get("amount")) or (req.amount if req else 0.0)
        trig = _pos(o.get("triggerPrice")) or _pos(o.get("stopPrice")) or \
            _pos(o.get("takeProfitPrice")) or _pos(o.get("stopLossPrice"))
        ts = _pos(o.get("timestamp"))
        upd = _pos(o.get("lastUpdateTimestamp")) or ts
        now = self._clock()
        st = status or self._status_of(o, OrderStatus.OPEN)
        fl = filled if filled is not None else (_f(o.get("filled")) or 0.0)
        if st is OrderStatus.OPEN and otype in _TRIGGER_TYPES and filled is None and not (
                vm.algo_id_of(self.id, o) is None
                and (_pos(o.get("average")) or _venue_cost(o))):
            # an untriggered conditional order has filled nothing yet, and an algo record's
            # quantity is not an execution (its market order's is); a conditional order that
            # executes as itself (Bybit) and says at what price did fill what it says
            fl = 0.0
        return Order(
            client_id=client_id,
            symbol=str(o.get("symbol") or (req.symbol if req else "")),
            side=side, type=otype, amount=amount, status=st,
            exchange_id=oid,
            price=_pos(o.get("price")) if otype is OrderType.LIMIT else None,
            trigger_price=trig if otype in _TRIGGER_TYPES else None,
            filled=min(max(0.0, fl), amount) if amount else max(0.0, fl),
            average=average if average is not None else _pos(o.get("average")),
            reduce_only=ro if (ro := vm.reduce_only_of(self.id, o)) is not None
            else bool(req and req.reduce_only),
            position_id=req.position_id if req else None,
            role=req.role if req else OrderRole.REDUCE,
            reason=req.reason if req else None,
            created_at=ts / 1000.0 if ts else now,
            updated_at=upd / 1000.0 if upd else now,
            trigger_ref=None if otype not in _TRIGGER_TYPES else
            (req.trigger_ref if req else vm.trigger_ref_of(self.id, o)),
        )

    # ------------------------------------------------------------------ orders: REST
    def _params(self, **kw: Any) -> dict[str, Any]:
        """A fresh params dict for every call: ccxt mutates what it is given."""
        return {k: v for k, v in kw.items() if v is not None}

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        ex = self._client()
        if symbol is not None:
            self._market(symbol)
        if not ex.has.get("fetchOpenOrders"):
            raise pe.ExchangeError(f"{self.id} cannot list open orders through ccxt")
        rows: list[Any] = []
        for i, query in enumerate(self._open_order_queries(symbol)):
            try:
                rows += await self._open_order_rows(ex, symbol, query)
            except pe.ExchangeError as e:
                if e.retryable or i == 0:
                    raise
                log.info("%s: no separate listing %s (%s)", self.id, query, e)
        seen: set[str] = set()
        out = []
        for o in rows:
            is_algo = vm.algo_id_of(self.id, o) is not None
            key = f"{'a' if is_algo else 'o'}:{vm.order_id_of(self.id, o)}"
            if key in seen:
                continue
            seen.add(key)
            order = self._to_order(o)
            if order.symbol in self._markets or symbol is None:
                out.append(order)
                # watched from now on: missed stream events get resynced by REST
                self._track(order, order.type in _TRIGGER_TYPES)
        return out

    async def _open_order_rows(self, ex: Any, symbol: str | None,
                               query: Mapping[str, Any]) -> list[Any]:
        """Every row of one open-order listing (`_open_order_queries`): ccxt's answer as is
        (a venue whose listing is paged and not followed by ccxt follows it itself)."""
        return list(await self._rest(
            lambda: ex.fetch_open_orders(symbol, None, None, dict(query)),
            f"fetch_open_orders{dict(query) or ''}") or [])

    def _open_order_queries(self, symbol: str | None) -> list[dict[str, Any]]:
        """The params of each open-order listing that together cover the whole book
        (regular and conditional orders; every page)."""
        return [{}, {"trigger": True}]

    async def fetch_order_by_client_id(self, client_id: str, symbol: str) -> Order | None:
        """Find an order by the client id pmgui gave it (regular or conditional).

        None means the exchange answered and the order is not there; a network failure
        raises (RetryableExchangeError), because "unknown" must never be read as "absent".
        """
        ex = self._client()
        self._market(symbol)
        cond = self._conditional(client_id)
        trigger_first = cond is not None
        if self.is_binance or ex.has.get("fetchOrder"):
            variants = [True, False] if trigger_first else [False, True]
            for trig in variants:
                try:
                    o = await self._rest(
                        lambda trig=trig: ex.fetch_order(
                            None, symbol, self._params(clientOrderId=client_id,
                                                       trigger=True if trig else None)),
                        "fetch_order")
                except pe.ExchangeError as e:
                    if e.retryable:
                        raise
                    continue  # not found there (or this variant unsupported)
                if o and self._has_client_id(o, client_id):
                    return await self._looked_up(ex, o, symbol, cond)
            if self.is_binance:
                return None
        for order in await self.fetch_open_orders(symbol):
            if order.client_id == client_id:
                return order
        for name in ("fetchClosedOrders", "fetchCanceledAndClosedOrders", "fetchOrders"):
            if ex.has.get(name):
                fn = getattr(ex, _snake(name))
                for trig in (False, True):
                    try:
                        rows = await self._rest(
                            lambda fn=fn, trig=trig: fn(symbol, None, self.closed_page,
                                                        self._params(trigger=trig or None)),
                            name)
                    except pe.ExchangeError as e:
                        if e.retryable:
                            raise
                        continue
                    for o in rows or []:
                        if self._has_client_id(o, client_id):
                            return await self._looked_up(ex, o, symbol, cond)
                break
        return None

    def _has_client_id(self, o: Mapping[str, Any], client_id: str) -> bool:
        """`o` is the order pmgui gave `client_id`: its own client id, or a conditional
        order's (ccxt reads OKX's `clOrdId` only: an algo order's is its `algoClOrdId`; the
        order an algo created carries its algo's too, and is not that order)."""
        return str(o.get("clientOrderId") or "") == client_id or (
            vm.algo_id_of(self.id, o) is not None and vm.client_id_of(self.id, o) == client_id)

    def _conditional(self, client_id: str) -> OrderRequest | Order | None:
        """What pmgui asked for under `client_id` when it is a conditional order (this
        session's request, else the journal's order recalled at the start); None: not one,
        or not known to be one."""
        req = self._requests.get(client_id)
        if req is not None:
            return req if req.type in _TRIGGER_TYPES else None
        return self._recalled_triggers.get(client_id)

    async def _looked_up(self, ex: Any, o: Mapping[str, Any], symbol: str,
                         cond: OrderRequest | Order | None = None) -> Order:
        """The order a lookup found, as far as the venue can tell: a conditional order that
        fired is followed to the market order it created, whose fill is the stop's.

        A regular order found under the client id of a conditional one (`cond`) is that
        market order (Binance gives it the stop's client id): the stop fired. It is the
        stop's state — its type and trigger kept — never a market order taking the stop's
        place in the ledger (a resting order without a trigger, which the protection would
        "move": cancel the working close and place another stop)."""
        if self.algo_orders and vm.algo_fired(self.id, o):
            return await self._follow_fired(ex, o, symbol)
        priced = await self._priced(ex, o, symbol)
        await self._tell_fill(ex, priced, symbol)
        order = self._to_order(priced)
        if cond is not None and vm.algo_id_of(self.id, o) is None \
                and order.type not in _TRIGGER_TYPES:
            order = replace(order, type=cond.type, trigger_price=cond.trigger_price,
                            reduce_only=cond.reduce_only)
        return order

    async def _tell_fill(self, ex: Any, o: Mapping[str, Any], symbol: str) -> None:
        """A regular order a lookup found executed beyond what the stream told (it filled
        while pmgui was down, or while the stream was away): its fill record — the venue's
        price and fee (the order's own record, else its trades), under the fill id the
        stream's report of it has — is delivered first, so it is booked with the venue's
        fee, once, instead of an estimate."""
        if self._sink is None or vm.algo_id_of(self.id, o) is not None:
            return
        filled = _f(o.get("filled")) or 0.0
        oid = str(vm.order_id_of(self.id, o) or "")
        if filled <= _EPS or not oid or \
                self._fill_progress.get(f"o:{oid}", (0.0, 0.0))[0] >= filled - _EPS:
            return
        if _pos(o.get("average")) is None and _venue_cost(o) is None:
            return  # no price to tell (the ledger waits for it)
        row = dict(o)
        if _f(row.get("pmgui_fee")) is None:
            fee = self._own_fee(o)
            if fee is None:
                fee = await self._fee_of(ex, oid, symbol, filled)
            if fee is not None:
                row["pmgui_fee"] = fee
        await self._process_orders([row])

    async def _follow_fired(self, ex: Any, a: Mapping[str, Any], symbol: str) -> Order:
        """A conditional order that fired (Binance TRIGGERING/TRIGGERED/FINISHED, OKX
        effective): its fill is the market order it created (`algo_child_of`), looked up by
        id — the algo record never says what was executed, nor at what price. That order may
        not be visible for a moment: looked at again, boundedly (`fired_lookups`).

        Returns the conditional order with its market order's status, quantity and average
        price; with the order stream running, its fill (the venue's price and fee, under the
        fill id the stream's own report of it has) is delivered first, so it is booked once.
        If no fill of it shows within the bounded look, the order is returned FILLED with
        nothing filled: "fired, its fill not seen" (never "still resting", which would let a
        flat position read as closed outside pmgui; never a price of our own guessing)."""
        aid = str(vm.algo_id_of(self.id, a))
        attempts = max(1, self._settings.fired_lookups)
        child: Any = None
        for attempt in range(attempts):
            child_id = vm.algo_child_of(a)
            if child_id:
                child = await self._order_now(ex, child_id, symbol, False)
                if child is not None and self._status_of(child, OrderStatus.OPEN).is_final:
                    break
            if attempt == attempts - 1:
                break
            await self._sleep(self._settings.backoff.delay(attempt))
            # read again: it may name its market order only now (TRIGGERING)
            a = await self._order_now(ex, aid, symbol, True) or a
        if child is not None:
            child = await self._priced(ex, child, symbol)
        filled = (_f(child.get("filled")) or 0.0) if child is not None else 0.0
        cstatus = self._status_of(child, OrderStatus.OPEN) if child is not None else None
        if child is None or (filled <= _EPS and not (cstatus and cstatus.is_final)):
            log.warning("%s: conditional order %s fired; no fill of its market order %s is "
                        "visible after %d lookups", self.id, vm.client_id_of(self.id, a),
                        vm.algo_child_of(a) or "(not named yet)", attempts)
            return self._to_order(a, filled=0.0, status=OrderStatus.FILLED)
        status = OrderStatus.FILLED if cstatus is OrderStatus.FILLED else \
            (cstatus if cstatus is not None and cstatus.is_final else OrderStatus.OPEN)
        average = _pos(child.get("average"))
        cost = _venue_cost(child)
        if average is None and cost is not None and filled > _EPS:
            average = cost / (filled * (self._markets.get(
                symbol, Market(symbol, 0, 0)).contract_size or 1.0))  # cost: quote value
        order = self._to_order(a, filled=filled, average=average, status=status)
        if filled > _EPS and self._sink is not None:
            row = dict(child)
            fee = self._own_fee(child)  # OKX's order says it; Binance's: its trades
            if fee is None:
                fee = await self._fee_of(ex, str(vm.order_id_of(self.id, child)), symbol,
                                         filled)
            if fee is not None:
                row["pmgui_fee"] = fee
            self._algo_by_child[str(vm.order_id_of(self.id, child))] = aid
            await self._process_orders([dict(a), row])
        return order

    async def _order_now(self, ex: Any, oid: str, symbol: str, trigger: bool) -> Any:
        """Order `oid` (a conditional one, by its algo id: `trigger`) as the venue shows it
        now — a fired stop read again, the market order it created; None while the venue
        does not show it (a network failure raises: unknown is not absent)."""
        try:
            return await self._rest(
                lambda: self._fetch_order_by_id(ex, oid, symbol, trigger), "fetch_order")
        except pe.ExchangeError as e:
            if e.retryable:
                raise
            return None

    def _own_fee(self, o: Mapping[str, Any]) -> float | None:
        """The fee an order's own record gives for all it executed (settlement currency;
        negative: a rebate)."""
        return vm.order_fee_of(self.id, o, self._settle)

    async def _fee_of(self, ex: Any, order_id: str, symbol: str, filled: float
                      ) -> float | None:
        """The venue's fee for the executions of order `order_id` (in the settlement
        currency), when its trades account for `filled`; None: estimated instead."""
        found = await self._trades_of(ex, order_id, symbol, filled)
        return None if found is None else found[1]

    async def _order_trades(self, ex: Any, order_id: str, symbol: str) -> list | None:
        """The venue's trades of order `order_id` (Binance: its account trades filtered by
        order id; elsewhere ccxt's `fetchOrderTrades`). None: the venue cannot list them, or
        the lookup failed (logged)."""
        try:
            if self.is_binance:
                trades = await ex.fetch_my_trades(symbol, None, None, {"orderId": order_id})
            elif ex.has.get("fetchOrderTrades"):
                trades = await ex.fetch_order_trades(order_id, symbol)
            else:
                return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("%s: trades of %s not read (%s)", self.id, order_id,
                     map_error(exc, self.id))
            return None
        return list(trades or [])

    async def _trades_of(self, ex: Any, order_id: str, symbol: str, filled: float
                         ) -> tuple[float, float | None] | None:
        """What the trades of order `order_id` say when they account for `filled`: their
        average price and their fee (settlement currency; None when paid in another asset).
        None: not read, or they do not account for it (yet)."""
        trades = await self._order_trades(ex, order_id, symbol)
        if trades is None:
            return None
        qty = value = fee = 0.0
        foreign = False
        for t in trades:
            if str(t.get("order") or "") != order_id:
                continue
            amount = _f(t.get("amount")) or 0.0
            price = _pos(t.get("price"))
            if price is None:
                return None
            qty += amount
            value += amount * price
            f = t.get("fee") or {}
            if f.get("cost") is None:
                continue
            if f.get("currency") not in (None, self._settle):
                foreign = True  # paid in another asset (BNB): not a settlement amount
            fee += _f(f.get("cost")) or 0.0  # (negative: a rebate)
        if qty <= _EPS or abs(qty - filled) > 1e-9 * max(1.0, filled):
            return None
        return value / qty, None if foreign else fee

    def _to_look_up(self, o: Mapping[str, Any]) -> bool:
        """A priceless final record whose trades were not looked up for as much yet (nor
        priced since: the stream's report with a price booked it)."""
        if not self._unpriced(o):
            return False
        oid = str(vm.order_id_of(self.id, o) or "")
        filled = _f(o.get("filled")) or 0.0
        return bool(oid) and \
            self._fill_progress.get(f"o:{oid}", (0.0, 0.0))[0] < filled - _EPS and \
            self._unpriced_seen.get(oid, -1.0) < filled - _EPS

    def _price_beside(self, o: Mapping[str, Any]) -> None:
        """Look up the price of a priceless final record off the order stream's path (the
        bounded lookup takes seconds: other orders' updates — a close's acknowledgement, a
        fill on another symbol — must not wait behind it). One task per order: a record
        told again meanwhile is left to it. Once priced the record is processed like any
        (under the processing lock; a priced report that came first booked it, and the
        record then adds nothing)."""
        oid = str(vm.order_id_of(self.id, o) or "")
        if oid in self._pricing:
            return
        task = asyncio.get_running_loop().create_task(self._price_then_process(o),
                                                      name=f"ccxt-price-{oid}")
        self._pricing[oid] = task
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if self._pricing.get(oid) is t:
                del self._pricing[oid]

        task.add_done_callback(done)

    async def _price_then_process(self, o: Mapping[str, Any]) -> None:
        symbol = str(o.get("symbol") or "")
        try:
            row = await self._priced(self._ex, o, symbol)
            await self._process_orders([row])  # priced, or looked up in vain: not again
            if self._unpriced(row):
                await self._relook(row, symbol)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: the price of order %s was not looked up", self.id,
                          o.get("clientOrderId") or o.get("id"))

    async def _relook(self, o: Mapping[str, Any], symbol: str) -> None:
        """After a bounded lookup found no trade of a priceless record (the ledger booked it
        at its reference, and said so), its trades looked at again further apart
        (`price_relooks`): once they show, the record with their price and fee is processed
        and the ledger corrects the booking (once). None found: it stays booked at its
        reference, and the ledger names it among the orders to look up by client id
        (`OrderLedger.referenced`)."""
        oid = str(vm.order_id_of(self.id, o) or "")
        filled = _f(o.get("filled")) or 0.0
        first = max(1, self._settings.fired_lookups)
        for attempt in range(self._settings.price_relooks):
            await self._sleep(self._settings.backoff.delay(first + attempt))
            if self._fill_progress.get(f"o:{oid}", (0.0, 0.0))[0] >= filled - _EPS:
                return  # the venue's priced report came meanwhile
            found = await self._trades_of(self._ex, oid, symbol, filled)
            if found is not None:
                log.info("%s: order %s (%s): its trades show now; its report is told "
                         "again with their price", self.id, o.get("clientOrderId") or oid,
                         symbol)
                await self._process_orders([self._with_trades(o, symbol, filled, found)])
                return
        if self._settings.price_relooks > 0:
            log.warning("%s: order %s (%s): still no trade of it visible after %d more "
                        "lookups; its fill stays booked at its reference", self.id,
                        o.get("clientOrderId") or oid, symbol, self._settings.price_relooks)

    def _with_trades(self, o: Mapping[str, Any], symbol: str, filled: float,
                     found: tuple[float, float | None]) -> dict[str, Any]:
        """The record `o` with the price its trades say (and their fee, when it is paid in
        the settlement currency)."""
        average, fee = found
        cs = self._markets.get(symbol, Market(symbol, 0, 0)).contract_size or 1.0
        row = {**o, "average": average, "cost": average * filled * cs}
        if fee is not None:
            row["pmgui_fee"] = fee
        return row

    def _unpriced(self, o: Mapping[str, Any]) -> bool:
        """A final record of a regular order that says it executed something but not at
        what price (no average, no cost)."""
        return ((_f(o.get("filled")) or 0.0) > _EPS
                and _pos(o.get("average")) is None and _venue_cost(o) is None
                and vm.algo_id_of(self.id, o) is None
                and self._status_of(o, OrderStatus.OPEN).is_final)

    async def _priced(self, ex: Any, o: Mapping[str, Any], symbol: str) -> Mapping[str, Any]:
        """An order's final record that says no price, with the price its trades say (and
        their fee), looked at boundedly (`fired_lookups`: the trades may not be visible
        for a moment). Never a price of our own guessing: when no trade shows, the record
        is returned as it is (the ledger books it at its reference and says so)."""
        if ex is None or not self._unpriced(o):
            return o
        oid = str(vm.order_id_of(self.id, o) or "")
        filled = _f(o.get("filled")) or 0.0
        progress = self._fill_progress.get(f"o:{oid}", (0.0, 0.0))[0]
        if not oid or progress >= filled - _EPS or \
                self._unpriced_seen.get(oid, -1.0) >= filled - _EPS:
            return o  # priced already (booked), or looked up for as much in vain
        attempts = max(1, self._settings.fired_lookups)
        for attempt in range(attempts):
            found = await self._trades_of(ex, oid, symbol, filled)
            if found is not None:
                return self._with_trades(o, symbol, filled, found)
            if attempt < attempts - 1:
                await self._sleep(self._settings.backoff.delay(attempt))
        self._unpriced_seen[oid] = filled
        log.warning("%s: order %s (%s) executed %s, its record says at no price, and no "
                    "trade of it was visible after %d lookups", self.id,
                    o.get("clientOrderId") or oid, symbol, filled, attempts)
        return o

    def _prepare(self, req: OrderRequest) -> tuple[str, float, float | None, dict[str, Any]]:
        """Validate against the market and build (type, amount, price, params)."""
        ex = self._client()
        market = self._market(req.symbol)
        amount = _pos(req.amount)
        if amount is None:
            raise pe.InvalidOrder(f"Order amount must be a positive number, got {req.amount!r}")
        try:
            amount = float(ex.amount_to_precision(req.symbol, amount))
        except cx.BaseError:
            amount = 0.0
        if amount <= 0 or (market.min_amount and amount < market.min_amount - _EPS):
            raise pe.InvalidOrder(
                f"{req.symbol}: amount {req.amount} is below the minimum {market.min_amount}")
        params: dict[str, Any] = {"clientOrderId": req.client_id}
        if req.reduce_only:
            params["reduceOnly"] = True
        price: float | None = None
        ref: float | None = None
        if req.type is OrderType.LIMIT:
            p = _pos(req.price)
            if p is None:
                raise pe.InvalidOrder("A limit order needs a positive price")
            price = self._price_precise(req.symbol, p)
            ref = price
            ccxt_type = "limit"
        elif req.type in _TRIGGER_TYPES:
            trig = _pos(req.trigger_price)
            if trig is None:
                raise pe.InvalidOrder("A stop/take-profit order needs a positive trigger price")
            trig = self._price_precise(req.symbol, trig)
            if req.type is OrderType.STOP_MARKET:
                if not self.capabilities.stop_orders:
                    raise pe.InvalidOrder(f"{self.id} does not support stop orders")
                params["stopLossPrice"] = trig
            else:
                if not self.capabilities.take_profit_orders:
                    raise pe.InvalidOrder(f"{self.id} does not support take-profit orders")
                params["takeProfitPrice"] = trig
            ref = trig
            ccxt_type = "market"
        else:
            ccxt_type = "market"
            ref = self._last_price.get(req.symbol)
        if not req.reduce_only and market.min_notional and ref is not None:
            notional = amount * ref * market.contract_size
            if notional < market.min_notional - _EPS:
                raise pe.InvalidOrder(
                    f"{req.symbol}: order value {notional:.2f} is below the exchange minimum "
                    f"of {market.min_notional:g} {market.quote}")
        self._venue_order_params(req, params)
        return ccxt_type, amount, price, params

    def recall_orders(self, orders: Sequence[Order]) -> None:
        """The journal's open orders after a restart: what of each regular order was booked
        already (its fill progress), so the first report of it after the restart tells the
        fill since then — its quantity, price and share of the fee — not all it ever
        executed. (Venues whose orders cannot carry pmgui's client id name them here too.)"""
        for o in orders:
            if o.type in _TRIGGER_TYPES:
                self._recalled_triggers[o.client_id] = o
            if o.exchange_id and o.type not in _TRIGGER_TYPES and o.filled > _EPS \
                    and o.average is not None and math.isfinite(o.average) and o.average > 0:
                cs = self._markets.get(o.symbol, Market(o.symbol, 0, 0)).contract_size or 1.0
                self._fill_progress.setdefault(f"o:{o.exchange_id}",
                                               (o.filled, o.average * o.filled * cs))

    def _venue_order_params(self, req: OrderRequest, params: dict[str, Any]) -> None:
        """Add the venue's own order parameters (position side in hedge mode, margin mode,
        trigger price type). The generic base has none."""

    def _position_side(self, req: OrderRequest) -> Side:
        """The leg `req` belongs to: a buy opens a long and closes a short."""
        return vm.position_side_for(req.side.value, req.reduce_only)

    def _price_precise(self, symbol: str, price: float) -> float:
        try:
            out = _pos(self._client().price_to_precision(symbol, price))
        except cx.BaseError as e:
            raise pe.InvalidOrder(f"{symbol}: price {price} is not valid ({e})") from None
        if out is None:
            raise pe.InvalidOrder(f"{symbol}: price {price} rounds to nothing at this tick size")
        return out

    async def create_order(self, req: OrderRequest) -> Order:
        """Send one order. Never sends the same client id twice unless proven absent."""
        ex = self._client()
        if req.type is OrderType.MARKET and not req.reduce_only and \
                req.symbol in self._markets and req.symbol not in self._last_price:
            # an entry needs a reference price for the minimum-notional check
            with contextlib.suppress(pe.ExchangeError):
                tick = await self.fetch_price(req.symbol)
                if tick is not None:
                    self._last_price[req.symbol] = tick.price
        ccxt_type, amount, price, params = self._prepare(req)
        self._requests[req.client_id] = req
        trigger = req.type in _TRIGGER_TYPES
        attempts = max(1, self._settings.create_attempts)
        rate_limited = 0
        attempt = 0
        while True:
            try:
                raw = await ex.create_order(req.symbol, ccxt_type, req.side.value, amount,
                                            price, dict(params))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_rate_limit(exc) and rate_limited < self._settings.rest_attempts - 1:
                    # a 429 is refused before processing: waiting and sending again is safe
                    await self._sleep(self._settings.backoff.delay(rate_limited) * 2)
                    rate_limited += 1
                    continue
                duplicate = attempt > 0 and (
                    isinstance(exc, cx.DuplicateOrderId)
                    or bool(_DUPLICATE_CLIENT_ID.intersection(exchange_codes(str(exc)))))
                if not is_ambiguous(exc) and not duplicate:
                    raise map_error(exc, self.id, trigger=trigger) from exc
                log.warning("%s create %s: %s; looking it up by client id", self.id,
                            req.client_id, "duplicate on resend" if duplicate
                            else f"no answer ({type(exc).__name__})")
                await self._sleep(self._settings.lookup_grace)
                try:
                    found = await self.fetch_order_by_client_id(req.client_id, req.symbol)
                except pe.ExchangeError as e:
                    raise OrderStatusUnknown(
                        f"{self.id}: the order {req.client_id} may or may not have been "
                        f"placed (create timed out, lookup failed: {e}); it will be "
                        "reconciled, not re-sent", req.client_id) from exc
                if found is not None:
                    self._track(found, trigger)
                    return found
                attempt += 1
                if attempt >= attempts:
                    raise pe.RetryableExchangeError(
                        f"{self.id}: the exchange did not answer; order {req.client_id} was "
                        f"verified absent and not placed after {attempts} tries") from exc
                await self._sleep(self._settings.backoff.delay(attempt - 1))
                continue
            if req.type is OrderType.MARKET and raw.get("status") is None and raw.get("id"):
                # an acknowledgement without the order's state (Bybit, OKX): a market
                # order's fill is asked for by its id, so the caller sees what happened
                raw = await self._fetch_after_ack(ex, raw, req)
            raw = await self._priced(ex, raw, req.symbol)  # a fill it says at no price
            order = self._to_order(raw)
            if not order.symbol:
                order = replace(order, symbol=req.symbol)
            if order.exchange_id and self._orders_up and self._sink is not None:
                # the order stream must mention it soon; silence means a stalled stream
                self._awaiting_stream[order.exchange_id] = (
                    self._clock() + self._settings.stream_ack_timeout, req.client_id)
            # the exchange executes the type that was asked for; an acknowledgement may
            # lack the order's shape (bybit, okx) or blur stop vs take-profit
            sent_trigger = params.get("stopLossPrice") or params.get("takeProfitPrice")
            order = replace(order, type=req.type,
                            amount=order.amount or amount,
                            price=(order.price or price) if req.type is OrderType.LIMIT
                            else None,
                            trigger_price=(order.trigger_price or sent_trigger)
                            if trigger else None,
                            reduce_only=order.reduce_only or req.reduce_only)
            if order.client_id != req.client_id and not raw.get("clientOrderId"):
                order = replace(order, client_id=req.client_id)
            self._track(order, trigger)
            if order.filled > 0 and self._sink is not None:
                await self._process_orders([raw])  # fills now, even without an order stream
            return order

    async def _fetch_after_ack(self, ex: Any, raw: Any, req: OrderRequest) -> Any:
        oid = str(vm.order_id_of(self.id, raw) or raw.get("id"))
        for attempt in range(self._settings.rest_attempts):
            try:
                found = await self._fetch_order_by_id(ex, oid, req.symbol, False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: state of %s not read yet (%s)", self.id, req.client_id,
                         map_error(exc, self.id))
                found = None
            if found and found.get("status") not in (None, "open"):
                return found
            if found and attempt == self._settings.rest_attempts - 1:
                return found
            await self._sleep(self._settings.backoff.delay(attempt) / 4)
        return raw

    def _track(self, order: Order, trigger: bool) -> None:
        if order.exchange_id and not order.status.is_final:
            key = f"{'a' if trigger and self.algo_orders else 'o'}:{order.exchange_id}"
            self._tracked_open[key] = (order.exchange_id, order.symbol, trigger)

    async def cancel_order(self, order: Order) -> Order:
        ex = self._client()
        trigger = order.type in _TRIGGER_TYPES
        params = self._params(trigger=True if trigger else None)
        if not order.exchange_id:
            params["clientOrderId"] = order.client_id
        try:
            raw = await self._rest(lambda: ex.cancel_order(order.exchange_id, order.symbol,
                                                           dict(params)), "cancel_order")
        except pe.ExchangeError as e:
            if e.retryable:
                raise
            # gone already? then report what it became instead of failing the caller
            found = await self.fetch_order_by_client_id(order.client_id, order.symbol)
            if found is not None and found.status.is_final:
                return found
            raise
        now = self._clock()
        result = replace(order, status=OrderStatus.CANCELED, updated_at=now)
        status = self._status_of(raw or {}, OrderStatus.CANCELED)
        if status.is_final:
            result = replace(result, status=status)
        raw_filled = _f((raw or {}).get("filled")) if not trigger else None
        if raw_filled is not None and raw_filled > order.filled + _EPS:
            # a fill reached it before the cancel did: the venue's answer says what was
            # executed and at what price (the order is final now: nothing resyncs it later)
            raw = await self._priced(ex, raw, order.symbol)  # … or its trades say the price
            average = _pos(raw.get("average"))
            cost = _venue_cost(raw)
            if average is None and cost is not None:
                average = cost / (raw_filled * (self._markets.get(
                    order.symbol, Market(order.symbol, 0, 0)).contract_size or 1.0))
            result = replace(result, filled=raw_filled, average=average or order.average)
            if self._sink is not None and raw.get("clientOrderId"):
                # its fill records (the venue's price and fee) under the ids the stream's
                # own report of them has: booked once, whichever comes first
                row = dict(raw)
                fee = self._own_fee(raw)
                if fee is None and order.exchange_id:
                    fee = await self._fee_of(ex, order.exchange_id, order.symbol, raw_filled)
                if fee is not None:
                    row["pmgui_fee"] = fee
                await self._process_orders([row])
        self._untrack(order.exchange_id)
        return result

    def _untrack(self, exchange_id: str | None) -> None:
        """Forget the tracked open order `exchange_id`: its key is the id under its kind
        (`a:` an algo order, `o:` a plain one; `_track`, `_emit_order`), so two lookups,
        not a pass over every open order of the book (4,000 protective orders at 2,000
        positions, on every cancel of a re-placement)."""
        if not exchange_id:
            return
        for key in (f"a:{exchange_id}", f"o:{exchange_id}"):
            tracked = self._tracked_open.get(key)
            if tracked is not None and tracked[0] == exchange_id:
                del self._tracked_open[key]

    async def replace_order(self, old: Order, new: OrderRequest) -> Order:
        """Move a protective order: cancel then create (Binance TP/SL cannot be edited).

        If the cancel finds the old order already filled, the new one is not sent.
        """
        cancelled = await self.cancel_order(old)
        if cancelled.status is OrderStatus.FILLED:
            return cancelled
        return await self.create_order(new)

    # ------------------------------------------------------------------ streams
    def subscribe(self, symbols: Sequence[str]) -> None:
        for s in symbols:
            if s not in self._markets and self._markets:
                raise pe.ValidationError(f"{self.id}: unknown symbol '{s}'", field="symbol")
            self._symbols.add(s)
            mid = (self._raw_markets.get(s) or {}).get("id")
            if mid:
                self._fast_ids[str(mid)] = s

    def attach(self, sink: ExchangeSink) -> None:
        """Deliver to `sink` what lookups find while no stream runs (`run` sets it too): a
        fill a lookup by client id finds (reconciliation's, after a restart) reaches it as
        its fill record, with the venue's price and fee (the order's own record, else its
        trades), before the order the lookup returns — without one the engine booked that
        order's fill with an estimated fee."""
        if self._sink is None:
            self._sink = sink

    async def run(self, sink: ExchangeSink) -> None:
        """Stream until cancelled: prices per symbol, orders, connection state."""
        self._client()
        self._sink = sink
        md_tasks: dict[str, asyncio.Task[None]] = {}
        orders_task: asyncio.Task[None] | None = None
        last_resub: dict[str, float] = {}
        fast_task: asyncio.Task[None] | None = None
        poll_task: asyncio.Task[None] | None = None
        try:
            if self.capabilities.watch_orders:
                orders_task = asyncio.create_task(self._orders_loop(), name="ccxt-orders")
            if self.capabilities.watch_tickers and self._fast_reader():
                self._fast_wake = asyncio.Event()
                fast_task = asyncio.create_task(self._fast_loop(self._fast_wake),
                                                name="ccxt-prices")
            await self._publish_connection(force=True)
            while True:
                now = self._clock()
                due: list[str] = []
                silent: list[str] = []
                for sym in self._sorted_symbols():
                    task = md_tasks.get(sym)
                    if self.capabilities.watch_tickers and (task is None or task.done()):
                        if task is not None and task.done() and not task.cancelled() \
                                and task.exception():
                            log.error("%s price stream for %s died: %r", self.id, sym,
                                      task.exception())
                        md_tasks[sym] = asyncio.create_task(self._md_loop(sym),
                                                            name=f"ccxt-md-{sym}")
                        self._stream_started_at[sym] = now
                    if self._poll_due(sym, now):
                        due.append(sym)
                    silent_since = max(self._last_stream_at.get(sym, 0.0),
                                       self._stream_started_at.get(sym, now))
                    if (self.capabilities.watch_tickers
                            and now - silent_since > self._settings.resubscribe_after
                            and now - last_resub.get(sym, 0.0) > self._settings.resubscribe_after):
                        log.warning("%s price stream for %s silent for %.1fs; resubscribing",
                                    self.id, sym, now - silent_since)
                        last_resub[sym] = now
                        silent.append(sym)
                if due and (poll_task is None or poll_task.done()):
                    # off the supervisor's path: its other duties never wait for REST
                    for sym in due:
                        self._last_poll_at[sym] = now
                    poll_task = asyncio.create_task(self._poll_prices(due),
                                                    name="ccxt-price-poll")
                if silent:
                    await self._resubscribe(md_tasks, silent)
                if orders_task is not None and orders_task.done():
                    if not orders_task.cancelled() and orders_task.exception():
                        log.error("%s order stream task died: %r", self.id,
                                  orders_task.exception())
                    self._orders_up = False
                    orders_task = asyncio.create_task(self._orders_loop(), name="ccxt-orders")
                if not self.capabilities.watch_orders or not self._orders_up:
                    await self._poll_orders_if_due(now)
                await self._publish_connection()
                await self._sleep(self._settings.supervisor_interval)
        finally:
            self._fast_wake = None
            self._fast_pending.clear()
            tasks = [*md_tasks.values(), *self._background] + \
                ([orders_task] if orders_task else []) + ([fast_task] if fast_task else []) + \
                ([poll_task] if poll_task else [])
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            self._sink = None

    async def _resubscribe(self, md_tasks: dict[str, asyncio.Task[None]],
                           silent: Sequence[str]) -> None:
        """Re-dial only the public connection(s) carrying the `silent` symbols, and restart
        only the watches of the symbols on them (the supervisor re-creates the tasks).

        A large book on Binance spreads its streams over many connections (ccxt.pro's
        `streamLimits`); tearing every one down for one silent symbol cut hundreds of healthy
        streams in exactly the fast market where prices matter. Where the connection of a
        silent symbol cannot be told, every public connection is re-dialled (the old way)."""
        ex = self._client()
        clients = self._public_clients(ex)
        carried = _symbols_by_client(clients, self._symbols)
        urls = {url for url, syms in carried.items() if not syms.isdisjoint(silent)}
        if not any(carried.values()):
            log.warning("%s: no public websocket client names a subscribed symbol (%d "
                        "client(s)), so the connection of %s cannot be told; re-dialling "
                        "every public connection", self.id, len(clients),
                        ", ".join(sorted(silent)[:5]))
            urls = set(clients)
            affected = set(self._symbols)
        else:
            # a silent symbol on no connection now (its watch failed and waits out its
            # backoff) needs its own watch restarted, not anybody else's connection
            affected = set(silent).union(*(carried[u] for u in urls))
            log.info("%s: re-dialling %d of %d public connection(s) (%d symbols)", self.id,
                     len(urls), len(clients), len(affected))
        tasks = [t for s, t in md_tasks.items() if s in affected]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for sym in affected:
            md_tasks.pop(sym, None)
        for url in urls:
            client = clients[url]
            with contextlib.suppress(Exception):
                await client.close()
            if ex.clients.get(url) is client:
                ex.clients.pop(url, None)
        self._stream_renewals_public += len(urls)
        for sym in affected:
            self._stream_up[sym] = False

    @staticmethod
    def _public_clients(ex: Any) -> dict[str, Any]:
        """The public (market data) websocket clients by URL: not the private order stream."""
        return {url: client for url, client in list((getattr(ex, "clients", None) or {}).items())
                if "listenKey" not in url and "/private" not in url}

    async def _watch_price(self, symbol: str) -> Tick | None:
        ex = self._client()
        h = ex.has
        src = self._settings.price_source
        if src == "auto":
            src = "ticker" if h.get("watchTicker") else \
                "bids_asks" if h.get("watchBidsAsks") else "trades"
        if src == "bids_asks":
            res = await ex.watch_bids_asks([symbol])
            return self._tick_from(symbol, (res or {}).get(symbol))
        if src == "trades":
            trades = await ex.watch_trades(symbol)
            if not trades:
                return None
            t = trades[-1]
            price = _pos(t.get("price"))
            if price is None:
                return None
            ts = _pos(t.get("timestamp"))
            return Tick(symbol, price, ts / 1000.0 if ts else self._clock(),
                        _f(t.get("amount")) or 0.0)
        return self._tick_from(symbol, await ex.watch_ticker(symbol))

    async def _md_loop(self, symbol: str) -> None:
        attempt = 0
        while True:
            try:
                tick = await self._watch_price(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = map_error(exc, self.id)
                self._stream_up[symbol] = False
                self._failing(f"price stream {symbol}", err)
                await self._publish_connection(detail=str(err))
                await self._sleep(self._settings.backoff.delay(attempt))
                attempt += 1
                self._stream_started_at[symbol] = self._clock()
                continue
            attempt = 0
            self._working(f"price stream {symbol}")
            now = self._clock()
            self._last_stream_at[symbol] = now
            if not self._stream_up.get(symbol):
                # shown by the supervisor's next cycle (`run`): building the state goes over
                # every symbol, and after a (re)subscribe every symbol comes back one by one
                self._stream_up[symbol] = True
            if tick is not None:
                await self._emit_tick(tick)

    async def _fast_loop(self, wake: asyncio.Event) -> None:
        """Deliver the prices `_on_ws_message` took, oldest symbol first, the newest price
        of each. One task for every symbol: a message costs no future and no task switch
        of its own, and a backlog keeps only the newest price per symbol (as ccxt's
        `watch_ticker` does). The per-symbol `_md_loop`s still hold the subscriptions:
        their watch fails when the connection does, and they re-dial with backoff."""
        pending = self._fast_pending
        while True:
            await wake.wait()
            wake.clear()
            while pending:
                batch = list(pending.values())
                pending.clear()
                now = self._clock()
                for tick in batch:
                    symbol = tick.symbol
                    self._last_stream_at[symbol] = now
                    if not self._stream_up.get(symbol):
                        # shown by the supervisor's next cycle (`run`), as in `_md_loop`
                        self._stream_up[symbol] = True
                        self._working(f"price stream {symbol}")
                for i, tick in enumerate(batch):
                    if i and not i % _FAST_SLICE:
                        await asyncio.sleep(0)  # order events are not held up by a backlog
                    await self._emit_tick(tick)

    async def _deliver(self, what: str, coro_fn: Callable[[], Awaitable[None]]) -> None:
        """Call into the engine; its failure is logged, never allowed to kill a stream."""
        try:
            await coro_fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: the engine failed handling %s", self.id, what)

    async def _emit_tick(self, tick: Tick, polled: bool = False) -> None:
        if not (math.isfinite(tick.price) and tick.price > 0):
            return
        now = self._clock()
        self._last_price_at[tick.symbol] = now
        if polled:
            self._polled_price_at[tick.symbol] = now
        self._last_price[tick.symbol] = tick.price
        sink = self._sink
        if sink is None:
            return
        await self._deliver("a tick", lambda: sink.on_tick(tick))
        await self._update_candle(sink, tick)

    async def _update_candle(self, sink: ExchangeSink, tick: Tick) -> None:
        """1-minute candles built from the ticks, closed when a new minute starts."""
        start = math.floor(tick.ts / 60.0) * 60.0
        cur = self._candles.get(tick.symbol)
        if cur is not None and start > cur.ts:
            task = asyncio.create_task(self._emit_closed_candle(sink, tick.symbol, cur))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            cur = None
        if cur is not None and start < cur.ts:
            return  # a late tick of a finished minute: the candle is already closed
        if cur is None:
            cur = Candle(start, tick.price, tick.price, tick.price, tick.price, tick.volume)
        else:
            cur = Candle(cur.ts, cur.open, max(cur.high, tick.price), min(cur.low, tick.price),
                         tick.price, cur.volume)
        self._candles[tick.symbol] = cur
        live = cur
        await self._deliver("a candle", lambda: sink.on_candle(tick.symbol, live, False))

    async def _emit_closed_candle(self, sink: ExchangeSink, symbol: str,
                                  built: Candle) -> None:
        """Deliver a finished minute, preferring the exchange's own candle.

        Ticks sampled from a ticker stream miss intrabar extremes, which would understate
        ATR and volatility; the venue's kline has the true high/low. The tick-built candle
        is the fallback when the venue has no candles or cannot be reached.
        """
        candle = built
        ex = self._ex
        if ex is not None and self.capabilities.fetch_ohlcv:
            try:
                rows = await ex.fetch_ohlcv(symbol, "1m", None, 3)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: candle %s from ticks (%s)", self.id, symbol,
                         map_error(exc, self.id))
                rows = []
            for r in rows or []:
                vals = [_f(v) for v in r[:6]]
                if len(vals) >= 5 and vals[0] is not None and \
                        abs(vals[0] / 1000.0 - built.ts) < 1e-6 and \
                        all(v is not None and v > 0 for v in vals[1:5]):
                    o, h, lo, c = (float(v) for v in vals[1:5])  # type: ignore[arg-type]
                    vol = vals[5] if len(vals) > 5 and vals[5] is not None else built.volume
                    candle = Candle(built.ts, o, max(h, o, c), min(lo, o, c), c, vol)
                    break
        await self._deliver("a candle", lambda: sink.on_candle(symbol, candle, True))

    def _poll_due(self, symbol: str, now: float) -> bool:
        """Whether `symbol` needs a REST price now: stale or its stream down, and neither a
        price from elsewhere (a stream) nor a poll within `poll_interval`.

        A poll's own price is not "a price from elsewhere": its symbols' prices are received
        one after another, so counting them made the first symbols of a batch due a round
        before the last ones — one batch split in two (or a lone symbol fetched by itself),
        for good, each part a request of its own (Binance's batch call returns every
        symbol whatever it was asked for). The poll's time alone paces its symbols, together."""
        last = self._last_price_at.get(symbol)
        stale = last is None or now - last > self._settings.stale_after
        if not stale and self._stream_up.get(symbol, False):
            return False
        if last is not None and now - last <= self._settings.poll_interval \
                and last != self._polled_price_at.get(symbol):
            return False
        if now - self._last_poll_at.get(symbol, 0.0) < self._settings.poll_interval:
            return False
        return bool(self._client().has.get("fetchTicker"))

    async def _poll_prices(self, symbols: Sequence[str]) -> None:
        """REST prices for the stale `symbols` together: one batch call where the venue has
        one (`_fetch_prices_batch`), else at most `_POLL_CONCURRENCY` tickers in flight.

        With a public stream down, hundreds of symbols go stale at once; one round trip per
        symbol in turn made a poll cycle hundreds of round trips long (and it held up the
        supervisor's other duties). Prices are stamped as received: a REST ticker's
        timestamp may be the 24 h window's close."""
        ex = self._client()
        tickers: Mapping[str, Any] | None = None
        if len(symbols) > 1:
            try:
                tickers = await self._fetch_prices_batch(ex, symbols)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = map_error(exc, self.id)
                self._failing("REST price poll", err)
                if err.retryable:
                    return  # down or rate-limited: one symbol at a time would only add load
                # the batch call itself is refused (not offered here, a proxy without it):
                # the prices are still wanted, per symbol
            else:
                if tickers is not None:
                    self._working("REST price poll")
        if tickers is None:
            gate = asyncio.Semaphore(_POLL_CONCURRENCY)

            async def one(symbol: str) -> tuple[str, Any]:
                async with gate:
                    try:
                        t = await ex.fetch_ticker(symbol)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        self._failing(f"REST price poll {symbol}", map_error(exc, self.id))
                        return symbol, None
                self._working(f"REST price poll {symbol}")
                return symbol, t

            tickers = dict(await asyncio.gather(*(one(s) for s in symbols)))
        for symbol in symbols:
            tick = self._tick_from(symbol, tickers.get(symbol))
            if tick is not None:
                await self._emit_tick(replace(tick, ts=self._clock()), polled=True)

    async def _fetch_prices_batch(self, ex: Any, symbols: Sequence[str]
                                  ) -> Mapping[str, Any] | None:
        """Tickers of `symbols` in one REST call, by unified symbol (None: the venue has no
        such call, the caller asks per symbol)."""
        if not ex.has.get("fetchTickers"):
            return None
        return await ex.fetch_tickers(list(symbols))

    def price_age(self, symbol: str) -> float | None:
        """Seconds since the last valid price for `symbol` (None: never had one)."""
        last = self._last_price_at.get(symbol)
        return None if last is None else max(0.0, self._clock() - last)

    def _sorted_symbols(self) -> tuple[str, ...]:
        """The subscribed symbols in order, sorted once per change of the set (the connection
        state is built over every symbol several times a second)."""
        if self._symbols_sorted is None or len(self._symbols_sorted) != len(self._symbols):
            self._symbols_sorted = tuple(sorted(self._symbols))
        return self._symbols_sorted

    async def _publish_connection(self, detail: str = "", force: bool = False) -> None:
        now = self._clock()
        symbols = self._sorted_symbols()
        stale = []
        for sym in symbols:
            last = self._last_price_at.get(sym)
            if last is None or now - last > self._settings.stale_after:
                stale.append(sym)
        md_ok = not stale
        orders_ok = self._orders_up or (not self.capabilities.watch_orders
                                        and self._last_order_poll > 0)
        parts = []
        if stale:
            parts.append("no fresh price: " + ", ".join(stale))
        polled = [s for s in symbols if not self._stream_up.get(s)
                  or now - self._last_stream_at.get(s, 0.0) > self._settings.stale_after]
        if polled:
            parts.append("price stream down or silent (REST polling): " + ", ".join(polled))
        if not self._orders_up and self.capabilities.watch_orders:
            parts.append("order stream down" + (f": {self._orders_error}"
                                                if self._orders_error else ""))
        if detail and not parts:
            parts.append(detail)
        streams: list[tuple[str, str]] = []
        polled_set, stale_set = set(polled), set(stale)
        for sym in symbols:
            if sym in polled_set:
                streams.append((f"price {sym}", "stale" if sym in stale_set else "REST polling"))
            else:
                streams.append((f"price {sym}", "up"))
        if self.capabilities.watch_orders:
            streams.append(("orders", "up" if self._orders_up else
                            ("down: " + self._orders_error if self._orders_error else "down")))
        else:
            streams.append(("orders", "REST polling"))
        headroom = None if self._headroom is None else round(self._headroom, 2)
        offset = None if self._clock_offset is None else round(self._clock_offset, 1)
        state = ConnectionState(market_data=md_ok, orders=orders_ok, detail="; ".join(parts),
                                clock_offset=offset, streams=tuple(streams),
                                rate_limit_headroom=headroom)
        prev = self._connection
        if not force and prev == state:
            return
        self._connection = state
        sink = self._sink
        if sink is not None:
            await self._deliver("a connection change", lambda: sink.on_connection(state))

    # ------------------------------------------------------------------ order stream
    async def _orders_loop(self) -> None:
        extra = [asyncio.create_task(self._extra_order_stream(name, watch),
                                     name=f"ccxt-orders-{name}")
                 for name, watch in self._extra_order_watches()]
        try:
            await self._main_orders_loop()
        finally:
            for t in extra:
                t.cancel()
            for t in extra:
                with contextlib.suppress(BaseException):
                    await t

    def _extra_order_watches(self) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        """Order streams besides ccxt's `watch_orders()` (OKX algo orders)."""
        return []

    async def _extra_order_stream(self, name: str,
                                  watch: Callable[[], Awaitable[Any]]) -> None:
        attempt = 0
        while True:
            try:
                await watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s %s stream: %s", self.id, name, map_error(exc, self.id))
                await self._sleep(self._settings.backoff.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            await self._process_cache()

    async def _main_orders_loop(self) -> None:
        ex = self._client()
        attempt = 0
        pending: asyncio.Task[Any] | None = None
        resync = True
        last_key_check = self._clock()
        last_full = float("-inf")
        try:
            while True:
                if self._renew_reason:
                    reason, self._renew_reason = self._renew_reason, ""
                    if pending is not None:
                        pending.cancel()
                        with contextlib.suppress(BaseException):
                            await pending
                        pending = None
                    log.warning("%s order stream: %s; recreating it", self.id, reason)
                    self._orders_up = False
                    self._orders_error = f"{reason}, recreating"
                    await self._publish_connection()
                    await self._reset_private_stream(ex)
                    self._stream_renewals += 1
                    resync = True
                    last_key_check = self._clock()
                if pending is None:
                    pending = asyncio.ensure_future(ex.watch_orders())
                done, _ = await asyncio.wait({pending},
                                             timeout=self._settings.order_stream_check)
                if not done:
                    if not self._orders_up and self._private_connected():
                        self._working("order stream")
                        self._orders_up = True
                        self._orders_error = ""
                        await self._publish_connection()
                    if self._orders_up and resync:
                        resync = False
                        await self._resync_tracked()
                    await self._process_cache()
                    self._check_stall()
                    now = self._clock()
                    if self._orders_up and now - last_key_check >= \
                            self._settings.listen_key_check:
                        last_key_check = now
                        await self._check_listen_key(ex)
                    continue
                task, pending = pending, None
                try:
                    updates = task.result()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    err = map_error(exc, self.id)
                    self._orders_up = False
                    self._orders_error = str(err)
                    self._failing("order stream", err)
                    await self._publish_connection()
                    # the next dial must not reuse a listen key that may be dead
                    self._forget_listen_key(ex)
                    await self._sleep(self._settings.backoff.delay(attempt))
                    attempt += 1
                    resync = True
                    continue
                attempt = 0
                self._working("order stream")
                if not self._orders_up:
                    self._orders_up = True
                    self._orders_error = ""
                    await self._publish_connection()
                self._heard(updates)
                now = self._clock()
                if now - last_full >= self._settings.order_stream_check:
                    last_full = now  # the whole cache now and then, busy or not
                    await self._process_cache()
                else:
                    await self._process_updates(updates)
                # events cached while these were delivered: a watch armed after them would
                # wait for the next event (or the quiet check) to return them
                for _ in range(16):
                    more = self._new_order_rows(ex)
                    if not more:
                        break
                    self._heard(more)
                    await self._process_updates(more)
        finally:
            if pending is not None:
                pending.cancel()

    @staticmethod
    def _new_order_rows(ex: Any) -> list[Mapping[str, Any]]:
        """The rows ccxt's order cache updated since `watch_orders` last returned (what
        its next return would start with), taken now; [] when there are none or the client
        does not count them (no `newUpdates`)."""
        cache = getattr(ex, "orders", None)
        get_limit = getattr(cache, "getLimit", None)
        if get_limit is None or not getattr(ex, "newUpdates", False) \
                or getattr(cache, "_clear_all_updates", False):
            return []  # (ccxt's flag: nothing appended since its count was last taken)
        n = get_limit(None, None)
        if not n:
            return []
        return list(ex.filter_by_symbol_since_limit(cache, None, None, n, True))

    def _forget_listen_key(self, ex: Any) -> None:
        """Make ccxt's next `authenticate` ask for a listen key instead of reusing its cached
        one (ccxt refreshes it only every ~20 min, so an expired key would be re-dialled)."""
        if not self.is_binance:
            return
        for name, opts in list(ex.options.items()):
            if isinstance(opts, dict) and "listenKey" in opts:
                ex.options[name] = {**opts, "listenKey": None, "lastAuthenticatedTime": 0}

    async def _reset_private_stream(self, ex: Any) -> None:
        self._forget_listen_key(ex)
        for url, client in list((getattr(ex, "clients", None) or {}).items()):
            if "listenKey" in url or "/private" in url:
                with contextlib.suppress(Exception):
                    await client.close()
                ex.clients.pop(url, None)

    def _heard(self, rows: Any) -> None:
        """The orders the stream just mentioned are not awaited any more. Taken from the
        events themselves, not from ccxt's order cache at check time: the cache keeps only
        the newest `ordersLimit` orders (1,000 on Binance), so with a stop and a take-profit
        per position on a large book an acknowledged order's event can leave the cache
        before `_check_stall` looks, and a healthy stream would be torn down as deaf."""
        if self._awaiting_stream and isinstance(rows, list):
            for o in rows:
                self._awaiting_stream.pop(str(o.get("id")), None)

    def _check_stall(self) -> None:
        """An order the venue acknowledged over REST that its order stream never mentions
        within `stream_ack_timeout` means the stream is deaf: recreate it."""
        if not self._awaiting_stream or self._renew_reason:
            return
        ex = self._ex
        seen = {str(o.get("id")) for o in (getattr(ex, "orders", None) or [])}
        for oid in [k for k in self._awaiting_stream if k in seen]:
            self._awaiting_stream.pop(oid, None)
        now = self._clock()
        late = [cid for deadline, cid in self._awaiting_stream.values() if now > deadline]
        if late:
            self._awaiting_stream.clear()
            self._renew_reason = (f"stalled (no event for {', '.join(late[:3])} within "
                                  f"{self._settings.stream_ack_timeout:g} s)")

    async def _check_listen_key(self, ex: Any) -> None:
        """Keep the listen key alive and learn early when it is gone (-1125)."""
        if not self.is_binance or not hasattr(ex, "fapiPrivatePutListenKey"):
            return
        try:
            await ex.fapiPrivatePutListenKey({})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = map_error(exc, self.id)
            if err.retryable:
                log.info("%s: listen key keep-alive failed (%s)", self.id, err)
                return
            self._renew_reason = f"listen key no longer valid ({err})"

    def _private_connected(self) -> bool:
        ex = self._ex
        for url, client in list((getattr(ex, "clients", None) or {}).items()):
            if ("listenKey" in url or "/private" in url) and not client.closed():
                return True
        return False

    async def _process_cache(self) -> None:
        """Diff the orders ccxt's streams cached: the rows that changed since this last
        looked, not every cached row on every order event (the cache holds a stop and a
        take-profit per position: a scan converting each of them cost milliseconds per event
        with hundreds of positions)."""
        ex = self._ex
        if ex is None:
            return
        rows = self._cached_orders(ex)
        if not rows:
            return
        if self._sink is None:
            await self._process_orders(rows)  # nothing is emitted yet: nothing to remember
            return
        await self._process_changed(rows)

    async def _process_updates(self, updates: Any) -> None:
        """Diff what `watch_orders` returned (ccxt with `newUpdates`: the rows updated since
        the previous call) with the cached rows of the same symbols (an algo order is read
        with its child), not the whole cache."""
        ex = self._ex
        buckets = getattr(getattr(ex, "orders", None), "hashmap", None)
        if ex is None or self._sink is None or not isinstance(updates, list) \
                or not isinstance(buckets, dict):
            await self._process_cache()
            return
        rows = list(updates)
        taken = {id(o) for o in rows}
        for symbol in {o.get("symbol") for o in updates}:
            for o in (buckets.get(symbol) or {}).values():
                if id(o) not in taken:
                    taken.add(id(o))
                    rows.append(o)
        if rows:
            await self._process_changed(rows)

    async def _process_changed(self, rows: list[Mapping[str, Any]]) -> None:
        changed, marks = self._changed_rows(rows)
        if changed:
            await self._process_orders(changed)
        seen = self._raw_seen
        if len(seen) > _RAW_SEEN_MAX:
            seen.clear()  # the next pass diffs every row once more (emits only changes)
        seen.update(marks)

    def _changed_rows(self, rows: list[Mapping[str, Any]]
                      ) -> tuple[list[Mapping[str, Any]], dict[tuple[Any, Any], tuple[Any, ...]]]:
        """The cached rows that changed since they were last processed, with the rows an
        algo order among them is read together with (its triggered child, the orders with
        its client id), and the marks to remember once they are processed.

        ccxt updates a cached order in place with the venue's new message as its `info`:
        a row whose `info` object and state fields are those last processed is unchanged
        (the mark holds that `info`, so its identity cannot be reused meanwhile)."""
        seen = self._raw_seen
        changed: list[Mapping[str, Any]] = []
        marks: dict[tuple[Any, Any], tuple[Any, ...]] = {}
        idle_by_id: dict[str, Mapping[str, Any]] = {}
        idle_by_cid: dict[str, list[Mapping[str, Any]]] = {}
        algos = []
        for o in rows:
            key = (o.get("symbol"), o.get("id"))
            sig = _raw_sig(o)
            prev = seen.get(key)
            if prev is not None and prev[0] is sig[0] and prev[1:] == sig[1:]:
                idle_by_id[str(o.get("id"))] = o
                cid = o.get("clientOrderId")
                if cid:
                    idle_by_cid.setdefault(str(cid), []).append(o)
                continue
            changed.append(o)
            marks[key] = sig
            if vm.algo_id_of(self.id, o) is not None:
                algos.append(o)
        if algos and (idle_by_id or idle_by_cid):
            taken = {id(o) for o in changed}
            for a in algos:
                child = vm.algo_child_of(a)
                partners = [idle_by_id[child]] if child and child in idle_by_id else []
                cid = vm.client_id_of(self.id, a)
                partners += idle_by_cid.get(cid or "", [])
                for o in partners:
                    if id(o) not in taken:
                        taken.add(id(o))
                        changed.append(o)
        return changed, marks

    def _cached_orders(self, ex: Any) -> list[Mapping[str, Any]]:
        """Every order ccxt's streams have cached (a venue may keep algo orders apart)."""
        return list(getattr(ex, "orders", None) or [])

    async def _process_orders(self, raw_orders: list[Mapping[str, Any]]) -> None:
        """Diff ccxt order states against what was emitted; emit changes with their fills.

        Updates are computed under the lock and delivered after it is released, so an
        engine that reacts to a fill by placing an order (which lands here again) cannot
        deadlock.
        """
        out: list[OrderUpdate] = []
        if self._ex is not None and self._sink is not None and \
                any(self._unpriced(o) for o in raw_orders):
            # a final record without a price: the price its trades say, looked up in a task
            # of its own, which processes the record once priced (or looked up in vain);
            # the batch's other orders go on now
            waiting = [o for o in raw_orders if self._to_look_up(o)]
            for o in waiting:
                self._price_beside(o)
            if waiting:
                raw_orders = [o for o in raw_orders if all(o is not w for w in waiting)]
        async with self._process_lock:
            algos, regular = [], []
            for o in raw_orders:
                is_algo = vm.algo_id_of(self.id, o) is not None
                (algos if is_algo else regular).append(o)
            algo_by_client: dict[str, str] = {}
            for o in algos:
                aid = str(vm.algo_id_of(self.id, o))
                prev = self._algo_raw.get(aid)
                if prev is None or (o.get("lastUpdateTimestamp") or 0) >= \
                        (prev.get("lastUpdateTimestamp") or 0):
                    self._keep_algo(aid, dict(o))
                child = vm.algo_child_of(o)
                if child:
                    self._algo_by_child[child] = aid
                cid = vm.client_id_of(self.id, o)
                if cid:
                    algo_by_client[cid] = aid
            kept = self._algo_cids

            def by_client(client_id: str) -> str | None:
                """This batch's algo order with that client id, else the first kept."""
                return algo_by_client.get(client_id) or kept.get(client_id)

            children: dict[str, Mapping[str, Any]] = {}
            for o in regular:
                oid = str(vm.order_id_of(self.id, o))
                cid = str(o.get("clientOrderId") or "")
                parent, parent_cid = vm.algo_parent_of(self.id, o)
                aid = self._algo_by_child.get(oid) or by_client(cid) or \
                    (by_client(parent_cid or "") or parent if parent else None)
                if aid is not None and aid not in self._algo_raw and parent is not None:
                    # the triggered order of an algo order this session never listed:
                    # rebuild the algo from what the child says about it
                    self._keep_algo(aid, self._algo_from_child(o, aid, parent_cid))
                if aid is not None:
                    self._algo_by_child[oid] = aid
                    children[aid] = o
                    continue
                self._emit_order(out, f"o:{oid}", self._to_order(o), o, f"o:{oid}")
            batch_algo_ids = {str(o.get("id")) for o in algos}
            # the algo orders this batch concerns, in the order they were first kept
            concerned = [aid for aid in {*children, *batch_algo_ids} if aid in self._algo_raw]
            concerned.sort(key=self._algo_seq.__getitem__)
            for aid in concerned:
                a = self._algo_raw[aid]
                child = children.get(aid)
                if child is not None:
                    cstatus = self._status_of(child, OrderStatus.OPEN)
                    filled = _f(child.get("filled")) or 0.0
                    astatus = self._status_of(a, OrderStatus.OPEN)
                    # a fired algo (OKX `effective`, Binance FINISHED) is done when its market
                    # order is: until then its remaining fills are still to come
                    status = OrderStatus.FILLED if cstatus is OrderStatus.FILLED else \
                        (cstatus if cstatus.is_final else
                         (OrderStatus.OPEN if not astatus.is_final
                          or vm.algo_fired(self.id, a) else astatus))
                    order = self._to_order(a, filled=filled, average=_pos(child.get("average")),
                                           status=status)
                    self._emit_order(out, f"a:{aid}", order, child,
                                     f"o:{vm.order_id_of(self.id, child)}")
                else:
                    child_id = vm.algo_child_of(a)
                    exec_key = f"o:{child_id}" if child_id else f"a:{aid}"
                    order = self._to_order(a)
                    if order.filled > _EPS and order.average is None \
                            and _venue_cost(a) is None:
                        # a quantity without a price (OKX's algo record once it fired): what
                        # it executed, and at what price, is its market order's to say — a
                        # quantity alone would be booked at the trigger price
                        order = replace(order, filled=min(
                            order.filled, self._fill_progress.get(exec_key, (0.0, 0.0))[0]))
                    self._emit_order(out, f"a:{aid}", order, a, exec_key)
        sink = self._sink
        if sink is not None:
            for update in out:
                await self._deliver("an order update",
                                    lambda u=update: sink.on_order_update(u))

    def _keep_algo(self, aid: str, raw: dict[str, Any]) -> None:
        """Keep the newest raw state of algo order `aid`, indexed by its client id (the
        first algo kept with a client id keeps it) and by when it was first kept."""
        if aid not in self._algo_raw:
            self._algo_seq[aid] = len(self._algo_seq)
        self._algo_raw[aid] = raw
        cid = vm.client_id_of(self.id, raw)
        if cid:
            self._algo_cids.setdefault(cid, aid)

    def _algo_from_child(self, child: Mapping[str, Any], aid: str,
                         algo_cid: str | None) -> dict[str, Any]:
        """An algo order known only through the order it created when it triggered."""
        req = self._requests.get(algo_cid or "")
        tp = req is not None and req.type is OrderType.TAKE_PROFIT_MARKET
        trig = req.trigger_price if req else None
        return {**child, "id": aid, "clientOrderId": algo_cid, "status": "open",
                "filled": 0.0, "cost": None, "average": None,
                "triggerPrice": trig,
                "info": {"algoId": aid, "algoClOrdId": algo_cid or "", "ordType": "conditional",
                         "ordId": vm.order_id_of(self.id, child) or "", "state": "live",
                         ("tpTriggerPx" if tp else "slTriggerPx"): str(trig or 1)}}

    def _emit_order(self, out: list[OrderUpdate], key: str, order: Order,
                    source: Mapping[str, Any], exec_key: str) -> None:
        """Queue an update for `order` if it changed; fills are keyed by the order that
        executed (a triggered conditional order's market child), so the same execution
        seen through the child, the algo update or a REST resync has one fill id."""
        if self._sink is None:
            return  # nobody to tell yet: keep the state for when run() is active
        fills = self._fills_for(exec_key, order, source)
        progressed = self._fill_progress.get(exec_key, (0.0, 0.0))[0]
        sig = (order.status, round(order.filled, 12), order.trigger_price, order.price,
               order.amount, round(progressed, 12))
        if self._emitted.get(key) == sig and not fills:
            return
        self._emitted[key] = sig
        if order.status.is_final:
            self._tracked_open.pop(key, None)
        elif order.exchange_id:
            self._tracked_open.setdefault(
                key, (order.exchange_id, order.symbol, key.startswith("a:")))
        out.append(OrderUpdate(order, fills))

    def _fills_for(self, key: str, order: Order, source: Mapping[str, Any]) -> tuple[Fill, ...]:
        """New fills since the last update of this order, from its cumulative filled/average.

        Fill ids are `<exchange>:<executing order key>:<cumulative filled>`, so the same
        progress reported twice (a resync after a reconnect) yields the same id and the
        engine can ignore it.
        """
        prev_filled, prev_cost = self._fill_progress.get(key, (0.0, 0.0))
        filled = order.filled
        delta = filled - prev_filled
        if delta <= _EPS:
            return self._fee_fix(key, order, source) if self._fee_estimates else ()
        avg = order.average
        # ccxt's cost is the quote value: filled × contract size × price (OKX swaps have
        # contracts of 0.01 BTC, 0.1 ETH …: a price read as cost / filled was 100× too low)
        cs = self._markets.get(order.symbol, Market(order.symbol, 0, 0)).contract_size or 1.0
        cost = _venue_cost(source)
        if cost is None and avg is not None:
            cost = avg * filled * cs
        if cost is None:
            return ()  # no price yet: wait for the update that carries it
        price = (cost - prev_cost) / (delta * cs) if cost > prev_cost \
            else (avg or cost / (filled * cs))
        if not (math.isfinite(price) and price > 0):
            price = avg or cost / (filled * cs)
        self._fill_progress[key] = (filled, cost)
        info = source.get("info") or {}
        fee = None
        foreign = None  # the asset this report says the fee was paid in, when not ours
        if isinstance(info, dict) and _f(info.get("l")) is not None and \
                abs((_f(info.get("l")) or 0.0) - delta) < 1e-12:
            if info.get("N") in (None, self._settle):
                fee = _f(info.get("n"))
            else:  # (BNB: no settlement amount: estimated below, and kept)
                foreign = str(info.get("N"))
        # the venue's fee for all `filled`: from the order's trades (`pmgui_fee`), or the
        # order's own cumulative fee (Bybit cumExecFee, OKX fee; Binance's order `fee` is
        # the last trade's only: its `n` above)
        total_fee = _f(source.get("pmgui_fee"))
        if total_fee is None and not self.is_binance:
            total_fee = self._own_fee(source)
        if total_fee is not None:
            before = self._fee_progress.get(key)
            if fee is None and filled > _EPS:
                fee = total_fee - before if before is not None and prev_filled > _EPS \
                    else total_fee * delta / filled if prev_filled > _EPS else total_fee
            self._fee_progress[key] = total_fee
        if fee is None:
            raw_market = self._raw_markets.get(order.symbol) or {}
            rate = _f(raw_market.get("taker")) or 0.0005
            fee = abs(delta * price * rate * self._markets.get(
                order.symbol, Market(order.symbol, 0, 0)).contract_size)
            if foreign is not None:
                log.warning("%s: order %s: the venue charged the fee of its fill of %.12g %s "
                            "in %s (%s): not a %s amount, so it is booked with an estimate "
                            "(%.6g at the taker rate %g), kept (no conversion is made)",
                            self.id, order.client_id, delta, order.symbol, foreign,
                            info.get("n"), self._settle, fee, rate)
            else:
                log.info("%s: order %s: the fee of its fill of %.12g %s is an estimate (%.6g "
                         "at the taker rate %g): the venue's report did not say it; "
                         "corrected when the venue's later report says it", self.id,
                         order.client_id, delta, order.symbol, fee, rate)
            estimated = foreign is None
        else:
            estimated = False
        ts = _pos(source.get("lastTradeTimestamp")) or _pos(source.get("lastUpdateTimestamp"))
        fill = Fill(
            id=f"{self.id}:{key}:{filled:.12g}",
            order_client_id=order.client_id,
            symbol=order.symbol, side=order.side, qty=delta, price=price, fee=fee or 0.0,
            ts=ts / 1000.0 if ts else self._clock(),
            exchange_order_id=order.exchange_id,
        )
        if estimated:
            self._fee_estimates.pop(key, None)
            self._fee_estimates[key] = _Estimate(fill, prev_filled, {})
            if len(self._fee_estimates) > _ESTIMATES_KEPT:
                self._fee_estimates.pop(next(iter(self._fee_estimates)))
        else:
            self._fee_estimates.pop(key, None)
        if self._fee_estimates:
            self._told_anew(order.client_id, prev_filled, filled)
        return (fill,)

    def _told_anew(self, client_id: str, before: float, end: float) -> None:
        """A fill of order `client_id` from `before` to `end` is told by the venue's report:
        a fired conditional order's fill recalled with an estimate (`a:<algo id>`: its
        market order's fills, this report's, are keyed apart) within that span is that
        report's now — the ledger takes the venue's record in place of its own, and its
        fee — so it is no longer looked up (told again, it would replace the venue's record
        with pmgui's)."""
        tol = 1e-9 * max(1.0, end)
        for key, est in list(self._fee_estimates.items()):
            if key.startswith("a:") and est.fill.order_client_id == client_id and \
                    before <= est.before + tol and est.before + est.fill.qty <= end + tol:
                del self._fee_estimates[key]

    def _fee_fix(self, key: str, order: Order, source: Mapping[str, Any]) -> tuple[Fill, ...]:
        """A report of no new quantity that says the venue's fee of the fill told with an
        estimated fee (`_fee_estimates`): that fill again, under its id, with the venue's fee
        (the ledger corrects the fee booked for it, once: the journal's record then holds the
        venue's). Binance's create answer has no commission; its stream's ORDER_TRADE_UPDATE
        of each trade does (`l`, `n`: summed over the trades that make up the fill), and a
        lookup's trades do (`pmgui_fee`, all the order executed). () while it does not."""
        est = self._fee_estimates.get(key)
        if est is None:
            return ()
        fill = est.fill
        end = est.before + fill.qty
        tol = 1e-9 * max(1.0, end)
        venue: float | None = None
        total = _f(source.get("pmgui_fee"))
        if total is not None and est.before <= _EPS and abs(order.filled - end) <= tol:
            venue = total  # the order's trades: all it executed, which is this fill
        info = source.get("info")
        if venue is None and isinstance(info, dict) and info.get("x") == "TRADE":
            # this report's trade (`l`, `n`; `z`: the order's cumulative quantity after it)
            last, paid, cum = _f(info.get("l")), _f(info.get("n")), _f(info.get("z"))
            asset = info.get("N")
            if last is not None and last > _EPS and paid is not None and cum is not None \
                    and est.before + tol < cum <= end + tol:
                if asset not in (None, self._settle):  # paid in another asset (BNB)
                    del self._fee_estimates[key]
                    self._estimate_stands(order, fill, paid, str(asset))
                    return ()
                est.trades[str(info.get("t"))] = (last, paid)
            # ccxt keeps the order's earlier trades its stream told (reports told together
            # reach us as the order's last state): of this fill when it is all the order's
            kept = (source.get("trades") or ()) if est.before <= _EPS else ()
            for t in kept:
                fee = t.get("fee") if isinstance(t, dict) else None
                amount = _f(t.get("amount")) if isinstance(t, dict) else None
                cost = _f(fee.get("cost")) if isinstance(fee, dict) else None
                if amount is not None and amount > _EPS and cost is not None and \
                        t.get("id") is not None and fee.get("currency") in (None, self._settle):
                    est.trades.setdefault(str(t.get("id")), (amount, cost))
            covered = sum(q for q, _ in est.trades.values())
            if est.trades and abs(covered - fill.qty) <= tol:
                venue = sum(n for _, n in est.trades.values())
        if venue is None or not math.isfinite(venue):
            return ()
        del self._fee_estimates[key]
        if self._estimate_stands(order, fill, venue, self._settle):
            return ()
        log.debug("%s: order %s: the venue's fee of its fill %s is %.6g (booked with the "
                  "estimate %.6g)", self.id, order.client_id, fill.id, venue, fill.fee)
        return (replace(fill, fee=venue),)

    # ------------------------------------------------------------------ estimated fees
    def _estimate_stands(self, order: Order, fill: Fill, fee: float, asset: str) -> bool:
        """The venue's fee `fee` (paid in `asset`) of `fill`, told with an estimated fee,
        leaves the estimate as booked: it was paid in another asset (BNB: no settlement
        amount to book, and no conversion is invented; said in the log), or it is the
        estimate. Then the estimate is settled (`_fee_settled`): nothing more to wait for.
        False: the fill is to be told again with the venue's fee."""
        if asset != self._settle:
            log.warning("%s: order %s (%s): the venue charged the fee of its fill %s in %s "
                        "(%.8g): not a %s amount, so the estimate %.6g is kept (no "
                        "conversion is made)", self.id, order.client_id, fill.symbol,
                        fill.id, asset, fee, self._settle, fill.fee)
        elif abs(fee - fill.fee) > 1e-12 * max(1.0, abs(fee)):
            return False
        self._fee_settled(fill.id)
        return True

    def _fee_settled(self, fill_id: str) -> None:
        """The fill told with an estimated fee needs no correction: the venue's fee is the
        estimate, or is paid in another asset (the estimate kept). Whoever keeps the
        estimate's fact (`on_fee_settled`: the ledger) is told; never fails the stream."""
        hook = self.on_fee_settled
        if hook is None:
            return
        try:
            hook(fill_id)
        except Exception:
            log.exception("%s: the settled estimate of fill %s was not recorded", self.id,
                          fill_id)

    def fee_estimated(self, fill: Fill) -> bool:
        """`fill` is told with an estimated fee, and the venue's has not been told since
        (`_fee_estimates`): the ledger keeps that with its record, persisted, so a restart
        before the venue's report still corrects it (`recall_fee_estimates`)."""
        key = self._estimate_key(fill.id)
        est = self._fee_estimates.get(key) if key is not None else None
        return est is not None and est.fill.id == fill.id

    def _estimate_key(self, fill_id: str) -> str | None:
        """The executing order's key in a fill id of ours (`<venue>:<key>:<filled>`)."""
        prefix = f"{self.id}:"
        if not fill_id.startswith(prefix):
            return None
        rest = fill_id[len(prefix):]
        cut = rest.rfind(":")
        return rest[:cut] if cut > 0 and rest.startswith("o:") else None

    def _recall_key(self, order: Order, fill: Fill) -> str | None:
        """The key of the order whose trades say the fee of `fill`, a journal record with an
        estimated fee: ours (`<venue>:<key>:<filled>`), or the ledger's own record of a
        quantity booked without records (`<client id>#<filled>`: the order's own id; a
        conditional order's on a venue that gives the market order it created another id,
        `a:<its algo id>` — its trades are under that market order's id, which the journal
        does not hold: the lookup reads it off the algo order first, `_recalled_child`).
        None: not looked up (no id of the venue's to look it up by)."""
        key = self._estimate_key(fill.id)
        if key is not None or not fill.id.startswith(f"{order.client_id}#"):
            return key
        if not fill.exchange_order_id:
            log.info("%s: order %s (%s): the fee of its fill %s is an estimate whose trades "
                     "cannot be looked up here; it stays the estimate", self.id,
                     order.client_id, fill.symbol, fill.id)
            return None
        algo = self.algo_orders and order.type in _TRIGGER_TYPES
        return f"{'a' if algo else 'o'}:{fill.exchange_order_id}"

    def recall_fee_estimates(self, estimates: Sequence[tuple[Order, Fill, float]]) -> None:
        """After a restart: the journal's fills booked with an estimated fee (the venue's
        records told with one, and the ledger's own records of a quantity booked without
        records: `_recall_key`), each with its order (as journaled) and the order's quantity
        before it. They are estimates again here (a report of their trades told now
        corrects them as before, `_fee_fix`), and their trades are looked up beside the
        stream (`_settle_estimates`; bounded, with the backoff): the venue's fee is told
        under the fill's id, as the stream's report would have told it, and the ledger
        corrects the booking once. Start-up and the tick path never wait for it."""
        todo: list[tuple[Order, str]] = []
        for order, fill, before in estimates:
            key = self._recall_key(order, fill)
            if key is None or key in self._fee_estimates:
                continue
            self._fee_estimates[key] = _Estimate(fill, max(0.0, before), {})
            todo.append((order, key))
        if not todo or self._ex is None:
            return
        task = asyncio.get_running_loop().create_task(self._settle_estimates(todo),
                                                      name="ccxt-fee-lookups")
        self._fee_lookups.add(task)
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._fee_lookups.discard(t)
            self._background.discard(t)

        task.add_done_callback(done)

    async def _settle_estimates(self, todo: list[tuple[Order, str]]) -> None:
        """Look up the trades of each recalled estimate (`fee_lookups` rounds, the backoff
        between them) until they say its fee: in the settlement currency it is told again
        under the fill's id with the venue's fee; one in another asset (BNB), or that was
        the estimate, is settled as booked (`_estimate_stands`). A fired conditional order's
        (`a:<algo id>`) are its market order's trades: that order's id is read off the algo
        order in each round until it names one (`_recalled_child`; not named: not found in
        that round). An estimate the stream's report corrected meanwhile is left alone. Not
        visible after the last round: left an estimate (the next start looks again), said
        in the log."""
        left = todo
        rounds = max(1, self._settings.fee_lookups)
        children: dict[str, str] = {}  # a fired conditional order's key: its market order
        try:
            for attempt in range(rounds):
                if attempt:
                    await self._sleep(self._settings.backoff.delay(attempt - 1))
                waiting: list[tuple[Order, str]] = []
                for order, key in left:
                    est = self._fee_estimates.get(key)
                    if est is None:
                        continue  # told by the stream's report meanwhile
                    oid: str | None = key[2:]
                    if key.startswith("a:"):  # a fired conditional order's: its market order's
                        oid = children.get(key) or \
                            await self._recalled_child(order, key[2:], est.fill.symbol)
                        if oid is None:
                            waiting.append((order, key))  # not named (yet): not found
                            continue
                        children[key] = oid
                    found = await self._fill_fee(self._ex, oid, est.fill.symbol,
                                                 est.before, est.before + est.fill.qty)
                    if found is None:
                        waiting.append((order, key))
                        continue
                    if self._fee_estimates.get(key) is not est or self._sink is None:
                        continue
                    del self._fee_estimates[key]
                    fee, asset = found
                    fill = est.fill
                    if self._estimate_stands(order, fill, fee, asset):
                        continue
                    log.info("%s: order %s (%s): the venue's fee of its fill %s, booked with "
                             "an estimate before the restart, is %.6g (estimate %.6g)",
                             self.id, order.client_id, fill.symbol, fill.id, fee, fill.fee)
                    fill = replace(fill, fee=fee)
                    sink = self._sink
                    await self._deliver("a fee looked up", lambda s=sink, o=order, f=fill:
                                        s.on_order_update(OrderUpdate(o, (f,))))
                left = waiting
                if not left:
                    return
            for order, key in left:
                est = self._fee_estimates.get(key)
                if est is not None:
                    log.warning("%s: order %s (%s): no trade of its fill %s visible after %d "
                                "lookups; its fee stays the estimate %.6g (looked up again at "
                                "the next start)", self.id, order.client_id, est.fill.symbol,
                                est.fill.id, rounds, est.fill.fee)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: the fees booked with an estimate were not looked up", self.id)

    async def _recalled_child(self, order: Order, aid: str, symbol: str) -> str | None:
        """The id of the market order that conditional order `order` (algo id `aid`)
        created when it fired, whose trades say the fee of its fill recalled with an
        estimate: read off the algo order as the venue shows it now (`_order_now`), as the
        lookup of a fired stop reads it (`algo_child_of`). None while the algo order names
        none (it says TRIGGERING still, or never fired; the lookup failed: logged): not
        found this round — never another order's trades in its place."""
        try:
            a = await self._order_now(self._ex, aid, symbol, True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("%s: order %s (%s): conditional order %s not read (%s)", self.id,
                     order.client_id, symbol, aid, map_error(exc, self.id))
            return None
        if not a or not vm.algo_fired(self.id, a) or str(vm.algo_id_of(self.id, a)) != aid:
            return None
        return vm.algo_child_of(a)

    async def _fill_fee(self, ex: Any, order_id: str, symbol: str, before: float,
                        end: float) -> tuple[float, str] | None:
        """The venue's fee of the fill that took order `order_id` from `before` to `end`
        executed (its trades in that span, in the order they executed) and the asset it was
        paid in (the settlement currency unless a trade says another). None: not read, or
        its trades do not account for that span (yet), or one says no fee."""
        if ex is None:
            return None
        trades = await self._order_trades(ex, order_id, symbol)
        if trades is None:
            return None

        def executed(t: Mapping[str, Any]) -> tuple[float, int, str]:
            tid = str(t.get("id") or "")
            return (_f(t.get("timestamp")) or 0.0, int(tid) if tid.isdigit() else 0, tid)

        rows = sorted((t for t in trades if str(t.get("order") or "") == order_id),
                      key=executed)
        tol = 1e-9 * max(1.0, end)
        cum = qty = fee = 0.0
        assets: set[str] = set()
        for t in rows:
            amount = _f(t.get("amount")) or 0.0
            cum += amount
            if cum <= before + tol:
                continue
            if cum > end + tol:
                break
            f = t.get("fee") or {}
            cost = _f(f.get("cost")) if isinstance(f, dict) else None
            if cost is None:
                return None
            qty += amount
            fee += cost  # (negative: a rebate)
            assets.add(str(f.get("currency") or self._settle))
        if qty <= _EPS or abs(qty - (end - before)) > tol:
            return None
        foreign = sorted(a for a in assets if a != self._settle)
        return fee, foreign[0] if foreign else self._settle

    async def _resync_tracked(self) -> None:
        """After the order stream (re)connects, fetch what may have changed meanwhile."""
        ex = self._ex
        if ex is None:
            return
        rows: list[Mapping[str, Any]] = []
        for oid, symbol, trigger in list(self._tracked_open.values()):
            try:
                o = await self._fetch_order_by_id(ex, oid, symbol, trigger)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failing("order resync by REST", map_error(exc, self.id))
                continue
            self._working("order resync by REST")
            if o:
                rows.append(o)
                child = vm.algo_child_of(o) if self.algo_orders else None
                if trigger and child:
                    try:
                        c = await self._fetch_order_by_id(ex, child, symbol, False)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        c = None
                    if c:
                        self._algo_by_child[str(vm.order_id_of(self.id, c))] = oid
                        rows.append(c)
        if rows:
            await self._process_orders(rows)

    async def _fetch_order_by_id(self, ex: Any, oid: str, symbol: str, trigger: bool) -> Any:
        return await ex.fetch_order(oid, symbol, self._params(trigger=True if trigger else None))

    async def _poll_orders_if_due(self, now: float) -> None:
        if now - self._last_order_poll < self._settings.order_poll_interval:
            return
        self._last_order_poll = now
        await self._resync_tracked()


# each venue's refusal of a client order id already in use: on a resend after a create
# that got no answer, it is the first send's order (look it up), never a rejection
_DUPLICATE_CLIENT_ID = frozenset({
    "-4116",  # binance: ClientOrderId is duplicated
    "110072",  # bybit: OrderLinkedID is duplicate
    "51016",  # okx: duplicated clOrdId
    "51065",  # okx: algoClOrdId already exists
})


def _venue_cost(o: Mapping[str, Any]) -> float | None:
    """The quote value the venue says an order executed, or None. ccxt (`safe_order`) makes
    one up from the order's limit price when the venue said neither an average nor a cost
    (a cost the venue said gives the average too): a limit order reported without a price
    would read as filled at its limit — a guess, never booked as the venue's word."""
    cost = _pos(o.get("cost"))
    if cost is not None and _pos(o.get("average")) is None and _pos(o.get("price")) is not None:
        return None
    return cost


def _symbols_by_client(clients: Mapping[str, Any], symbols: set[str]) -> dict[str, set[str]]:
    """Which of `symbols` each websocket client carries, read off its subscriptions.

    ccxt.pro keys a client's subscriptions by message hash, and every venue's price hash ends
    in the unified symbol after a ':' or '@' ("ticker:miniTicker@BTC/USDT:USDT" on Binance,
    "ticker:BTC/USDT:USDT" elsewhere); a hash naming several symbols joins them by ','."""
    out: dict[str, set[str]] = {}
    for url, client in clients.items():
        carried: set[str] = set()
        for key in list(getattr(client, "subscriptions", None) or ()):
            if not isinstance(key, str):
                continue
            for part in key.split(","):
                if part in symbols:
                    carried.add(part)
                    continue
                for i, ch in enumerate(part):
                    if (ch == ":" or ch == "@") and part[i + 1:] in symbols:
                        carried.add(part[i + 1:])
                        break
        out[url] = carried
    return out


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)
