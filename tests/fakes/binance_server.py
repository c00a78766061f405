"""A local Binance USDⓈ-M futures emulator (REST + websockets) for tests.

It speaks the subset of the binanceusdm protocol that pmgui drives through the real ccxt
classes: exchangeInfo, klines, ticker/24hr, ticker/price, leverageBracket, account (v2/v3),
positionRisk (v2/v3), leverage, order / openOrders / userTrades, the algo (conditional) order
endpoints, listenKey, the market websocket (SUBSCRIBE to `<sym>@miniTicker`, `@ticker`,
`@bookTicker`, `@trade`, `@aggTrade`) and the user-data websocket (ORDER_TRADE_UPDATE,
ALGO_UPDATE, ACCOUNT_UPDATE).

It is a small matching engine, not a recorder: market orders fill at the current price,
limit orders rest and fill when the price crosses, conditional (algo) orders trigger on
`set_price`, positions are one-way (BOTH) with an average entry and a wallet that pays fees
and realized P/L. Its errors carry the real Binance codes and messages (-2019, -2021, -2022,
-4164, -2013, -2015, -1003 …) so that the adapter's error mapping is exercised for real.

Fault switches (`server.faults`) inject what live venues do to a trading app: HTTP 429 storms,
a create-order that is placed but whose response never arrives in time, websocket drops,
silent stalls, auth failures, a server clock that is off (`faults.clock_skew`: signed requests
outside the receive window get -1021, `/time` tells the skewed time) and expiring listen keys
(`expire_listen_keys()`). Every REST answer carries `X-MBX-USED-WEIGHT-1M`.

Use it from an asyncio test:

    server = BinanceServer()
    await server.start()            # port 0 → server.port
    ex = ccxt.pro.binanceusdm({**server.ccxt_config(), "apiKey": "k", "secret": "s"})
    ...
    await server.stop()

or from synchronous (Qt) tests through `ThreadedBinanceServer`, which runs the same server on
its own loop in a background thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

TAKER_FEE = Decimal("0.0005")
MAKER_FEE = Decimal("0.0002")


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _s(value: Decimal | float | int) -> str:
    """Binance sends numbers as plain decimal strings."""
    d = _d(value)
    text = format(d.normalize(), "f")
    return text if text not in ("-0", "") else "0"


def _ms() -> int:
    return int(time.time() * 1000)


class BinanceApiError(Exception):
    """An error answered the way Binance does: HTTP status + {"code", "msg"}."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


@dataclass
class FakeMarket:
    symbol: str  # exchange id, e.g. BTCUSDT
    base: str
    quote: str = "USDT"
    tick_size: str = "0.10"
    step_size: str = "0.001"
    min_qty: str = "0.001"
    max_qty: str = "1000"
    min_notional: str = "100"
    price_precision: int = 2
    quantity_precision: int = 3
    max_leverage: int = 125


@dataclass
class FakePosition:
    symbol: str
    amount: Decimal = Decimal(0)  # signed: > 0 long, < 0 short
    entry: Decimal = Decimal(0)
    update_time: int = 0
    side: str = "BOTH"  # positionSide: BOTH (one-way) | LONG | SHORT (hedge-mode legs)


@dataclass
class FakeOrder:
    order_id: int
    client_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | STOP_MARKET | TAKE_PROFIT_MARKET | ...
    qty: Decimal
    price: Decimal = Decimal(0)
    stop_price: Decimal = Decimal(0)
    reduce_only: bool = False
    close_position: bool = False
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    algo: bool = False
    position_side: str = "BOTH"
    working_type: str = "CONTRACT_PRICE"  # what a conditional order triggers on
    actual_order_id: int | None = None  # algo: the order placed when it triggered
    create_time: int = 0
    update_time: int = 0
    time_in_force: str = "GTC"

    @property
    def avg(self) -> Decimal:
        return self.cum_quote / self.executed if self.executed else Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class FakeTrade:
    id: int
    order_id: int
    client_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized: Decimal
    time: int
    maker: bool = False
    fee_asset: str = "USDT"  # the asset the commission was paid in (BNB: a discount)


@dataclass
class Faults:
    """Switches a test flips to make the server misbehave.

    Counters (`http_429`, `create_timeouts`, …) are decremented as they fire, so a test says
    exactly how many failures it wants.
    """

    http_429: int = 0  # the next N REST requests answer 429 (a rate-limit storm)
    http_429_paths: tuple[str, ...] = ()  # limit the storm to paths containing these strings
    http_429_methods: tuple[str, ...] = ()  # … and to these HTTP methods
    create_timeouts: int = 0  # next N create-order requests: placed, response delayed
    create_drops: int = 0  # next N create-order requests: NOT placed, response delayed
    response_delay: float = 5.0  # seconds the delayed responses hang
    market_data_stalled: bool = False  # market websockets stay open but stay silent
    silent_symbols: set[str] = field(default_factory=set)  # these ids' streams stay silent
    refused_paths: tuple[str, ...] = ()  # REST paths containing these answer -1100 (400)
    user_stream_stalled: bool = False  # the user-data stream stays silent
    hold_order_events: bool = False  # ORDER_TRADE_UPDATEs are held back (late delivery)
    reject_auth: bool = False  # every private request → -2015
    insufficient_margin: bool = False  # every opening order → -2019
    clock_skew: float = 0.0  # seconds the server's clock runs ahead (+) or behind (-) ours
    # a triggered conditional order stays TRIGGERED after its market order filled (Binance
    # reports it FINISHED a moment later): `finish_held_algos()` finishes them
    algo_finish_held: bool = False
    # the next N lookups (by id or client id) of a triggered conditional order's market
    # order answer -2013 (not visible yet)
    hidden_children: int = 0
    # awaited with the params of each regular order as it arrives, before it is handled:
    # a test plays what the venue did in that same instant (a stop filling first)
    before_create: Callable[[dict[str, str]], Awaitable[None]] | None = None
    # orders' reports (REST and stream, regular and algo) say what was executed but at no
    # price: avgPrice/cumQuote/ap/L/actualPrice "0" (the price is in the trades only)
    priceless_reports: bool = False
    # the next N trade listings (userTrades) answer [] (the trades not visible yet)
    hidden_trades: int = 0
    # the next N lookups of a triggered conditional order by its id or client id (algoOrder)
    # answer it TRIGGERING, without its market order's id (`actualOrderId` ""), as Binance
    # does in the instant between the trigger and that order's creation
    unnamed_children: int = 0
    # the market orders of the next N conditional orders to trigger stay NEW, unfilled, until
    # `fill_held_children()` (a market order still working when it is looked up)
    held_children: int = 0


@dataclass
class ExchangeState:
    """Everything the emulated account holds. Tests may set it directly before ccxt calls."""

    markets: dict[str, FakeMarket] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, FakePosition] = field(default_factory=dict)
    orders: dict[int, FakeOrder] = field(default_factory=dict)
    algo_orders: dict[int, FakeOrder] = field(default_factory=dict)
    trades: list[FakeTrade] = field(default_factory=list)
    leverage: dict[str, int] = field(default_factory=dict)
    wallet: Decimal = Decimal("10000")
    asset: str = "USDT"
    api_keys: set[str] = field(default_factory=lambda: {"test-key"})
    hedge_mode: bool = False  # dual-side position mode: positions per (symbol, LONG|SHORT)
    marks: dict[str, Decimal] = field(default_factory=dict)  # mark price (default: last)
    margin_types: dict[str, str] = field(default_factory=dict)  # symbol → cross | isolated
    # /fapi/v1/income rows: {"symbol", "incomeType", "income", "time"} (tests add them)
    income: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def default(cls) -> ExchangeState:
        state = cls()
        state.add_market(FakeMarket("BTCUSDT", "BTC"), price="50000")
        state.add_market(FakeMarket("ETHUSDT", "ETH", tick_size="0.01", step_size="0.001",
                                    min_qty="0.001", min_notional="20"), price="3000")
        return state

    def add_market(self, market: FakeMarket, price: str | float) -> None:
        self.markets[market.symbol] = market
        self.prices[market.symbol] = _d(price)
        self.leverage.setdefault(market.symbol, 20)

    def position(self, symbol: str, side: str = "BOTH") -> FakePosition:
        """The one-way position of `symbol` (key: symbol) or a hedge-mode leg (key:
        "symbol:LONG" / "symbol:SHORT"; its amount keeps the sign of its side)."""
        key = symbol if side == "BOTH" else f"{symbol}:{side}"
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = FakePosition(symbol, side=side)
        return pos

    def mark(self, symbol: str) -> Decimal:
        return self.marks.get(symbol, self.prices[symbol])

    def set_position(self, symbol: str, amount: float | str, entry: float | str,
                     leverage: int | None = None, side: str = "BOTH") -> None:
        """Give the account a position as if it had been opened elsewhere."""
        pos = self.position(symbol, side)
        pos.amount = _d(amount)
        pos.entry = _d(entry)
        pos.update_time = _ms()
        if leverage is not None:
            self.leverage[symbol] = leverage

    def unrealized(self, key: str) -> Decimal:
        pos = self.positions.get(key)
        if pos is None or pos.amount == 0:
            return Decimal(0)
        return (self.prices[pos.symbol] - pos.entry) * pos.amount

    def position_margin(self, key: str) -> Decimal:
        pos = self.positions.get(key)
        if pos is None or pos.amount == 0:
            return Decimal(0)
        return abs(pos.amount) * self.prices[pos.symbol] / self.leverage.get(pos.symbol, 20)

    def used_margin(self) -> Decimal:
        return sum((self.position_margin(s) for s in self.positions), Decimal(0))

    def total_unrealized(self) -> Decimal:
        return sum((self.unrealized(s) for s in self.positions), Decimal(0))

    def available(self) -> Decimal:
        return self.wallet + self.total_unrealized() - self.used_margin()

    def open_orders(self, symbol: str | None = None, algo: bool = False) -> list[FakeOrder]:
        book = self.algo_orders if algo else self.orders
        return [o for o in book.values() if o.is_open and (symbol is None or o.symbol == symbol)]


class BinanceServer:
    """The aiohttp application plus the matching engine around an `ExchangeState`."""

    def __init__(self, state: ExchangeState | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state or ExchangeState.default()
        self.faults = Faults()
        self.host = host
        self.port = port
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, params)
        # the account's commission rates (its VIP tier, a BNB discount: not the market's
        # listed taker rate an estimate uses), and how many trades a market order executes
        # in (equal parts at the price, each told by its own ORDER_TRADE_UPDATE)
        self.taker_fee = TAKER_FEE
        self.maker_fee = MAKER_FEE
        self.market_trades = 1
        # the asset commissions are paid in (the account's "pay fees with BNB" switch) and
        # its price in USDT: a fee of x USDT is charged as x / price of it
        self.fee_asset = "USDT"
        self.fee_asset_price = Decimal(1)
        self.ws_connects = {"market": 0, "user": 0}  # websocket handshakes so far
        self.ws_connects_by_path: dict[str, int] = {}  # market handshakes per URL path
        self.ws_closed_by_path: dict[str, int] = {}  # market connections ended per URL path
        self.user_ws_keys: list[str] = []  # the listen key of every user-stream handshake
        self.issued_listen_keys: list[str] = []  # every listen key handed out (64 hex chars)
        self._ids = itertools.count(1000)
        self._trade_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._market_ws: set[web.WebSocketResponse] = set()
        self._subs: dict[web.WebSocketResponse, set[str]] = {}
        self._ws_path: dict[web.WebSocketResponse, str] = {}  # market websocket → URL path
        self._user_ws: set[web.WebSocketResponse] = set()
        self._listen_keys: set[str] = set()
        self._held: list[dict[str, Any]] = []
        self._unfinished: list[tuple[FakeOrder, FakeOrder]] = []  # faults.algo_finish_held
        self._held_children: list[tuple[FakeOrder, FakeOrder]] = []  # faults.held_children
        self._weights: list[float] = []  # arrival times of the REST requests of the last minute
        self.weight_limit = 2400
        self.loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Listen on host:port (0 → a free port, stored back in `self.port`)."""
        self.loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_route("*", "/fapi/{version}/{path:.*}", self._rest)
        app.router.add_route("GET", "/{category}/ws", self._ws)
        app.router.add_route("GET", "/{category}/ws/{stream}", self._ws)
        app.router.add_route("GET", "/ws", self._ws)
        app.router.add_route("GET", "/ws/{stream}", self._ws)
        # a short shutdown timeout: a test that left a delayed response hanging must not
        # make stop() wait for it
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        for ws in list(self._market_ws | self._user_ws):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ccxt_urls(self) -> dict[str, Any]:
        """The `urls` block that points ccxt's binanceusdm (REST and ws) at this server."""
        http = self.base_url
        ws = f"ws://{self.host}:{self.port}"
        api: dict[str, Any] = {
            key: f"{http}/fapi/{ver}"
            for key, ver in (
                ("fapiPublic", "v1"), ("fapiPublicV2", "v2"), ("fapiPublicV3", "v3"),
                ("fapiPrivate", "v1"), ("fapiPrivateV2", "v2"), ("fapiPrivateV3", "v3"),
            )
        }
        api["fapiData"] = f"{http}/futures/data"
        api["ws"] = {"linear": f"{ws}/ws", "future": f"{ws}/ws",
                     "ws-api": {"linear": f"{ws}/ws-fapi/v1"}}
        return {"api": api, "demo": api, "test": api}

    def ccxt_config(self) -> dict[str, Any]:
        """Constructor config for ccxt: urls, quick timeouts, no client-side throttling.

        ccxt's rate limiter would make weight-40 calls (open orders of all symbols) wait 2 s
        each; the 429 behaviour under test is the server's, not ccxt's pacing.
        """
        return {"urls": self.ccxt_urls(), "timeout": 2000, "enableRateLimit": False,
                "options": {"adjustForTimeDifference": False, "fetchCurrencies": False}}

    # ------------------------------------------------------------------ test controls
    async def set_price(self, symbol: str, price: float | str) -> None:
        """Move the market: push tickers, fill crossing limits, trigger conditional orders."""
        sym = symbol.replace("/", "").split(":")[0]
        self.state.prices[sym] = _d(price)
        await self._push_market(sym)
        await self._match(sym)

    async def set_mark(self, symbol: str, price: float | str) -> None:
        """Move the mark price only (a wick on the last price leaves it alone): triggers
        the conditional orders that watch MARK_PRICE."""
        sym = symbol.replace("/", "").split(":")[0]
        self.state.marks[sym] = _d(price)
        await self._match(sym)

    async def push_ticker(self, symbol: str) -> None:
        await self._push_market(symbol)

    async def drop_websockets(self, market: bool = True, user: bool = True) -> int:
        """Close websocket connections abruptly (as a network drop would)."""
        victims = (self._market_ws if market else set()) | (self._user_ws if user else set())
        for ws in list(victims):
            await ws.close(code=1006, message=b"dropped by test")
        return len(victims)

    async def expire_listen_keys(self, close: bool = True, notify: bool = True) -> int:
        """Expire every listen key as Binance does after 60 min without a keep-alive: the
        user streams get `listenKeyExpired` (unless not `notify`); with `close` they are then
        closed, otherwise they stay open and silent. Old keys are refused from now on
        (keep-alive → -1125, a handshake → listenKeyExpired and close)."""
        self._listen_keys.clear()
        victims = list(self._user_ws)
        for ws in victims:
            if notify and not ws.closed:
                await ws.send_json({"e": "listenKeyExpired", "E": _ms(), "listenKey": "expired"})
            if close:
                await ws.close()
            else:
                self._user_ws.discard(ws)  # nothing more reaches it
        return len(victims)

    @property
    def listen_keys(self) -> set[str]:
        return set(self._listen_keys)

    async def release_held_events(self) -> int:
        """Deliver the ORDER_TRADE_UPDATEs held back by `faults.hold_order_events`."""
        held, self._held = self._held, []
        for event in held:
            await self._push_user(event)
        return len(held)

    def discard_held_events(self) -> int:
        """Drop the ORDER_TRADE_UPDATEs held back (a stream that never delivered them)."""
        held, self._held = self._held, []
        return len(held)

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.requests]

    def ws_subscriptions(self) -> set[str]:
        out: set[str] = set()
        for subs in self._subs.values():
            out |= subs
        return out

    def ws_subscriptions_by_path(self) -> dict[str, set[str]]:
        """The streams of the open market websockets, by URL path (ccxt.pro's Binance spreads
        its subscriptions over `<category>/ws/<n>` connections)."""
        out: dict[str, set[str]] = {}
        for ws, subs in self._subs.items():
            out.setdefault(self._ws_path.get(ws, ""), set()).update(subs)
        return out

    @property
    def user_stream_connected(self) -> int:
        return len(self._user_ws)

    # ------------------------------------------------------------------ REST
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        path = request.match_info["path"]
        params: dict[str, str] = dict(request.query)
        if request.can_read_body:
            body = await request.text()
            if body:
                from urllib.parse import parse_qsl

                params.update(dict(parse_qsl(body, keep_blank_values=True)))
        self.requests.append((request.method, f"/fapi/{version}/{path}", params))
        headers = {"X-MBX-USED-WEIGHT-1M": str(self._used_weight())}
        if self.faults.http_429 > 0 and (
            not self.faults.http_429_paths
            or any(p in path for p in self.faults.http_429_paths)
        ) and (not self.faults.http_429_methods or request.method in self.faults.http_429_methods):
            self.faults.http_429 -= 1
            return web.json_response(
                {"code": -1003, "msg": "Too many requests; current limit is 2400 requests "
                 "per minute."}, status=429, headers=headers)
        if any(p in path for p in self.faults.refused_paths):
            return web.json_response({"code": -1100, "msg": "Illegal characters found in a "
                                      "parameter."}, status=400, headers=headers)
        handler = self._routes().get((request.method, version, path))
        if handler is None:
            return web.json_response(
                {"code": -5000, "msg": f"Path {request.method} /fapi/{version}/{path} "
                 "is not emulated"}, status=404, headers=headers)
        try:
            if handler.__name__.startswith("_priv_"):
                self._check_auth(request)
                self._check_timestamp(params)
            result = await handler(params)
        except BinanceApiError as e:
            return web.json_response({"code": e.code, "msg": e.msg}, status=e.status,
                                     headers=headers)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result, headers=headers)

    def _used_weight(self) -> int:
        now = time.monotonic()
        self._weights = [t for t in self._weights if now - t < 60.0]
        self._weights.append(now)
        return len(self._weights)

    def server_ms(self) -> int:
        """The server's own clock (the real one shifted by `faults.clock_skew`)."""
        return int((time.time() + self.faults.clock_skew) * 1000)

    def _check_timestamp(self, params: dict[str, str]) -> None:
        """Binance's receive-window rule for signed requests (-1021 either way)."""
        if "timestamp" not in params:
            return  # listen-key calls are not signed
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow") or 5000)
        except ValueError:
            raise BinanceApiError(-1100, "Illegal characters found in parameter 'timestamp'.") \
                from None
        now = self.server_ms()
        if ts >= now + 1000:
            raise BinanceApiError(-1021, "Timestamp for this request was 1000ms ahead of the "
                                  "server's time.")
        if now - ts > window:
            raise BinanceApiError(-1021, "Timestamp for this request is outside of the "
                                  "recvWindow.")

    def _routes(self) -> dict[tuple[str, str, str], Callable[[dict[str, str]], Any]]:
        return {
            ("GET", "v1", "exchangeInfo"): self._exchange_info,
            ("GET", "v1", "ping"): self._ping,
            ("GET", "v1", "time"): self._time,
            ("GET", "v1", "klines"): self._klines,
            ("GET", "v1", "ticker/24hr"): self._ticker24,
            ("GET", "v1", "ticker/bookTicker"): self._book_ticker,
            ("GET", "v2", "ticker/price"): self._ticker_price,
            ("GET", "v1", "premiumIndex"): self._premium_index,
            ("GET", "v1", "leverageBracket"): self._priv_leverage_bracket,
            ("GET", "v2", "account"): self._priv_account,
            ("GET", "v3", "account"): self._priv_account,
            ("GET", "v2", "balance"): self._priv_balance,
            ("GET", "v3", "balance"): self._priv_balance,
            ("GET", "v2", "positionRisk"): self._priv_position_risk_v2,
            ("GET", "v3", "positionRisk"): self._priv_position_risk,
            ("POST", "v1", "leverage"): self._priv_set_leverage,
            ("GET", "v1", "positionSide/dual"): self._priv_position_mode,
            ("POST", "v1", "order"): self._priv_create_order,
            ("GET", "v1", "order"): self._priv_get_order,
            ("DELETE", "v1", "order"): self._priv_cancel_order,
            ("GET", "v1", "openOrders"): self._priv_open_orders,
            ("GET", "v1", "allOrders"): self._priv_all_orders,
            ("GET", "v1", "userTrades"): self._priv_user_trades,
            ("GET", "v1", "income"): self._priv_income,
            ("POST", "v1", "algoOrder"): self._priv_create_algo,
            ("GET", "v1", "algoOrder"): self._priv_get_algo,
            ("DELETE", "v1", "algoOrder"): self._priv_cancel_algo,
            ("GET", "v1", "openAlgoOrders"): self._priv_open_algo,
            ("POST", "v1", "listenKey"): self._priv_listen_key,
            ("PUT", "v1", "listenKey"): self._priv_keepalive_listen_key,
            ("DELETE", "v1", "listenKey"): self._priv_delete_listen_key,
        }

    def _check_auth(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if self.faults.reject_auth or key not in self.state.api_keys:
            raise BinanceApiError(-2015, "Invalid API-key, IP, or permissions for action, "
                                  "request ip: 127.0.0.1", status=401)

    def _market(self, params: dict[str, str]) -> FakeMarket:
        sym = params.get("symbol", "")
        market = self.state.markets.get(sym)
        if market is None:
            raise BinanceApiError(-1121, "Invalid symbol.")
        return market

    async def _ping(self, params: dict[str, str]) -> dict[str, Any]:
        return {}

    async def _time(self, params: dict[str, str]) -> dict[str, Any]:
        return {"serverTime": self.server_ms()}

    async def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        symbols = []
        for m in self.state.markets.values():
            symbols.append({
                "symbol": m.symbol, "pair": m.symbol, "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
                "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": m.base, "quoteAsset": m.quote,
                "marginAsset": m.quote, "pricePrecision": m.price_precision,
                "quantityPrecision": m.quantity_precision, "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
                "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": m.tick_size,
                     "maxPrice": "4529764", "tickSize": m.tick_size},
                    {"filterType": "LOT_SIZE", "stepSize": m.step_size, "maxQty": m.max_qty,
                     "minQty": m.min_qty},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": m.step_size,
                     "maxQty": m.max_qty, "minQty": m.min_qty},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": m.min_notional},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                     "multiplierDown": "0.9500", "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                               "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                "permissionSets": ["GRID", "COPY"],
            })
        return {"timezone": "UTC", "serverTime": self.server_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                "intervalNum": 1, "limit": self.weight_limit},
                               {"rateLimitType": "ORDERS", "interval": "MINUTE",
                                "intervalNum": 1, "limit": 1200}],
                "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True,
                            "autoAssetExchange": "-10000"}],
                "symbols": symbols}

    async def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        """Deterministic candles ending at the current price (1 m each unless asked)."""
        m = self._market(params)
        limit = min(int(params.get("limit", "500")), 1500)
        step = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}.get(
            params.get("interval", "1m"), 60_000)
        last = self.state.prices[m.symbol]
        now = _ms() // step * step
        tick = _d(m.tick_size)
        rows = []
        for i in range(limit):
            open_time = now - (limit - 1 - i) * step
            drift = (i - limit + 1) * tick  # a gentle rise into the current price
            close = last + drift
            open_ = close - tick
            rows.append([open_time, _s(open_), _s(close + tick), _s(open_ - tick), _s(close),
                         "12.5", open_time + step - 1, "600000", 100, "6.2", "300000", "0"])
        return rows

    async def _ticker24(self, params: dict[str, str]) -> Any:
        def one(m: FakeMarket) -> dict[str, Any]:
            p = self.state.prices[m.symbol]
            return {"symbol": m.symbol, "priceChange": "0", "priceChangePercent": "0",
                    "weightedAvgPrice": _s(p), "lastPrice": _s(p), "lastQty": "0.010",
                    "openPrice": _s(p), "highPrice": _s(p), "lowPrice": _s(p),
                    "volume": "1000", "quoteVolume": _s(p * 1000), "openTime": _ms() - 86400000,
                    "closeTime": _ms(), "firstId": 1, "lastId": 2, "count": 2}

        if "symbol" in params:
            return one(self._market(params))
        return [one(m) for m in self.state.markets.values()]

    async def _ticker_price(self, params: dict[str, str]) -> Any:
        def one(m: FakeMarket) -> dict[str, Any]:
            return {"symbol": m.symbol, "price": _s(self.state.prices[m.symbol]),
                    "time": _ms()}

        if "symbol" in params:
            return one(self._market(params))
        return [one(m) for m in self.state.markets.values()]

    async def _book_ticker(self, params: dict[str, str]) -> Any:
        def one(m: FakeMarket) -> dict[str, Any]:
            p = self.state.prices[m.symbol]
            t = _d(m.tick_size)
            return {"symbol": m.symbol, "bidPrice": _s(p - t), "bidQty": "1",
                    "askPrice": _s(p + t), "askQty": "1", "time": _ms()}

        if "symbol" in params:
            return one(self._market(params))
        return [one(m) for m in self.state.markets.values()]

    async def _premium_index(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        p = self.state.prices[m.symbol]
        return {"symbol": m.symbol, "markPrice": _s(p), "indexPrice": _s(p),
                "lastFundingRate": "0.0001", "nextFundingTime": _ms() + 3600000,
                "interestRate": "0.0001", "time": _ms()}

    async def _priv_leverage_bracket(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return [{"symbol": m.symbol, "brackets": [
            {"bracket": 1, "initialLeverage": m.max_leverage, "notionalCap": 50000,
             "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]}
            for m in self.state.markets.values()]

    def _position_rows(self, v2: bool) -> list[dict[str, Any]]:
        rows = []
        for key, pos in self.state.positions.items():
            if pos.amount == 0:
                continue
            sym = pos.symbol
            isolated = self.state.margin_types.get(sym, "cross") == "isolated"
            price = self.state.prices[sym]
            lev = self.state.leverage.get(sym, 20)
            notional = pos.amount * price
            margin = abs(notional) / lev
            liq = pos.entry * (1 - _d(1) / lev + _d("0.004")) if pos.amount > 0 else \
                pos.entry * (1 + _d(1) / lev - _d("0.004"))
            row: dict[str, Any] = {
                "symbol": sym, "positionSide": pos.side, "positionAmt": _s(pos.amount),
                "entryPrice": _s(pos.entry), "breakEvenPrice": _s(pos.entry),
                "markPrice": _s(self.state.mark(sym)),
                "unRealizedProfit": _s(self.state.unrealized(key)),
                "liquidationPrice": _s(round(liq, 2)),
                "isolatedMargin": _s(margin) if isolated else "0",
                "notional": _s(notional), "marginAsset": "USDT",
                "isolatedWallet": _s(margin) if isolated else "0",
                "updateTime": pos.update_time,
            }
            if v2:
                row.update({"leverage": str(lev), "maxNotionalValue": "6000000",
                            "marginType": "isolated" if isolated else "cross",
                            "isAutoAddMargin": "false",
                            "isolated": isolated, "adlQuantile": "2"})
            else:
                row.update({"initialMargin": _s(margin), "maintMargin": _s(margin / 10),
                            "positionInitialMargin": _s(margin), "openOrderInitialMargin": "0",
                            "adl": 2, "bidNotional": "0", "askNotional": "0"})
            rows.append(row)
        return rows

    async def _priv_position_risk(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return self._position_rows(v2=False)

    async def _priv_position_risk_v2(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return self._position_rows(v2=True)

    async def _priv_account(self, params: dict[str, str]) -> dict[str, Any]:
        st = self.state
        upnl = st.total_unrealized()
        used = st.used_margin()
        avail = st.available()
        asset = {"asset": st.asset, "walletBalance": _s(st.wallet),
                 "unrealizedProfit": _s(upnl), "marginBalance": _s(st.wallet + upnl),
                 "maintMargin": _s(used / 10), "initialMargin": _s(used),
                 "positionInitialMargin": _s(used), "openOrderInitialMargin": "0",
                 "crossWalletBalance": _s(st.wallet), "crossUnPnl": _s(upnl),
                 "availableBalance": _s(avail), "maxWithdrawAmount": _s(avail),
                 "updateTime": _ms()}
        return {"totalInitialMargin": _s(used), "totalMaintMargin": _s(used / 10),
                "totalWalletBalance": _s(st.wallet), "totalUnrealizedProfit": _s(upnl),
                "totalMarginBalance": _s(st.wallet + upnl),
                "totalPositionInitialMargin": _s(used), "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": _s(st.wallet), "totalCrossUnPnl": _s(upnl),
                "availableBalance": _s(avail), "maxWithdrawAmount": _s(avail),
                "assets": [asset],
                "positions": [{"symbol": r["symbol"], "positionSide": "BOTH",
                               "positionAmt": r["positionAmt"],
                               "unrealizedProfit": r["unRealizedProfit"],
                               "isolatedMargin": "0", "notional": r["notional"],
                               "isolatedWallet": "0", "initialMargin": r["initialMargin"],
                               "maintMargin": r["maintMargin"], "updateTime": r["updateTime"]}
                              for r in self._position_rows(v2=False)]}

    async def _priv_balance(self, params: dict[str, str]) -> list[dict[str, Any]]:
        st = self.state
        return [{"accountAlias": "SgsR", "asset": st.asset, "balance": _s(st.wallet),
                 "crossWalletBalance": _s(st.wallet), "crossUnPnl": _s(st.total_unrealized()),
                 "availableBalance": _s(st.available()), "maxWithdrawAmount": _s(st.available()),
                 "marginAvailable": True, "updateTime": _ms()}]

    async def _priv_position_mode(self, params: dict[str, str]) -> dict[str, Any]:
        return {"dualSidePosition": self.state.hedge_mode}

    async def _priv_set_leverage(self, params: dict[str, str]) -> dict[str, Any]:
        m = self._market(params)
        lev = int(params.get("leverage", "0"))
        if not 1 <= lev <= m.max_leverage:
            raise BinanceApiError(-4028, f"Leverage {lev} is not valid")
        self.state.leverage[m.symbol] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": m.symbol}

    # ------------------------------------------------------------------ orders
    def _validate_order(self, m: FakeMarket, side: str, qty: Decimal, price: Decimal,
                        reduce_only: bool, close_position: bool,
                        position_side: str = "BOTH") -> None:
        if qty <= 0 and not close_position:
            raise BinanceApiError(-4003, "Quantity less than or equal to zero.")
        step = _d(m.step_size)
        if not close_position and (qty % step) != 0:
            raise BinanceApiError(-1111, "Precision is over the maximum defined for this asset.")
        if not close_position and qty < _d(m.min_qty):
            raise BinanceApiError(-4003, "Quantity less than or equal to zero.")
        if price and (price % _d(m.tick_size)) != 0:
            raise BinanceApiError(-1111, "Precision is over the maximum defined for this asset.")
        pos = self.state.position(m.symbol, position_side)
        if position_side != "BOTH" and (side == "SELL") == (position_side == "LONG"):
            reduce_only = True  # hedge mode: the opposite side of a leg closes it
        if reduce_only or close_position:
            direction = 1 if side == "BUY" else -1
            if pos.amount == 0 or (pos.amount > 0) == (direction > 0):
                raise BinanceApiError(-2022, "ReduceOnly Order is rejected.")
            return
        ref = price or self.state.prices[m.symbol]
        if qty * ref < _d(m.min_notional):
            raise BinanceApiError(-4164, f"Order's notional must be no smaller than "
                                  f"{m.min_notional} (unless you choose reduce only).")
        increases = pos.amount == 0 or (pos.amount > 0) == (side == "BUY")
        if increases or qty > abs(pos.amount):
            extra = qty if increases else qty - abs(pos.amount)
            need = extra * ref / self.state.leverage.get(m.symbol, 20)
            if self.faults.insufficient_margin or need > self.state.available():
                raise BinanceApiError(-2019, "Margin is insufficient.")

    def _duplicate_client_id(self, client_id: str) -> bool:
        return any(o.client_id == client_id and o.is_open
                   for o in itertools.chain(self.state.orders.values(),
                                            self.state.algo_orders.values()))

    async def _delay_then(self, response: Any) -> Any:
        await asyncio.sleep(self.faults.response_delay)
        return response

    async def _priv_create_order(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        hook, self.faults.before_create = self.faults.before_create, None
        if hook is not None:  # once
            await hook(dict(params))
        if self.faults.create_drops > 0:
            self.faults.create_drops -= 1
            return await self._delay_then({"code": -1007, "msg": "Timeout waiting for "
                                           "response from backend server."})
        order = await self._place(m, params, algo=False)
        body = self._order_json(order)
        if self.faults.create_timeouts > 0:
            self.faults.create_timeouts -= 1
            return await self._delay_then(body)
        return body

    async def _priv_create_algo(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        if params.get("algoType") != "CONDITIONAL":
            raise BinanceApiError(-1102, "Mandatory parameter 'algoType' was not sent, "
                                  "was empty/null, or malformed.")
        if self.faults.create_drops > 0:
            self.faults.create_drops -= 1
            return await self._delay_then({"code": -1007, "msg": "Timeout waiting for "
                                           "response from backend server."})
        order = await self._place(m, params, algo=True)
        body = self._algo_json(order)
        if self.faults.create_timeouts > 0:
            self.faults.create_timeouts -= 1
            return await self._delay_then(body)
        return body

    async def _place(self, m: FakeMarket, params: dict[str, str], algo: bool) -> FakeOrder:
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise BinanceApiError(-1117, "Invalid side.")
        otype = params.get("type", "")
        qty = _d(params.get("quantity", "0"))
        price = _d(params.get("price", "0"))
        stop = _d(params.get("triggerPrice" if algo else "stopPrice", "0") or "0")
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        close_position = params.get("closePosition", "false").lower() == "true"
        position_side = params.get("positionSide", "BOTH").upper()
        if position_side not in ("BOTH", "LONG", "SHORT"):
            raise BinanceApiError(-4006, "Position side is invalid.")
        if (position_side == "BOTH") == self.state.hedge_mode:
            raise BinanceApiError(-4061, "Order's position side does not match user's "
                                  "setting.")
        if position_side != "BOTH" and "reduceOnly" in params:
            raise BinanceApiError(-1106, "Parameter 'reduceonly' sent when not required.")
        working_type = params.get("workingType", "CONTRACT_PRICE")
        client_id = params.get("clientAlgoId" if algo else "newClientOrderId") or \
            f"auto{next(self._ids)}"
        if len(client_id) > 36:
            raise BinanceApiError(-4015, "Client order id is not valid.")
        if self._duplicate_client_id(client_id):
            raise BinanceApiError(-4116, "ClientOrderId is duplicated.")
        allowed = {"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"} if algo \
            else {"MARKET", "LIMIT"}
        if otype not in allowed:
            raise BinanceApiError(-4120 if not algo else -1116,
                                  "Order type not supported for this endpoint. Please use "
                                  "the Algo Order API endpoints instead." if not algo
                                  else "Invalid orderType.")
        if otype == "LIMIT" and not price:
            raise BinanceApiError(-1102, "Mandatory parameter 'price' was not sent, was "
                                  "empty/null, or malformed.")
        if algo and not stop:
            raise BinanceApiError(-1102, "Mandatory parameter 'triggerPrice' was not sent, "
                                  "was empty/null, or malformed.")
        self._validate_order(m, side, qty, price, reduce_only, close_position, position_side)
        ref_price = self.state.mark(m.symbol) if working_type == "MARK_PRICE" \
            else self.state.prices[m.symbol]
        if algo and self._would_trigger(otype, side, stop, ref_price):
            raise BinanceApiError(-2021, "Order would immediately trigger.")
        now = _ms()
        order = FakeOrder(order_id=next(self._ids), client_id=client_id, symbol=m.symbol,
                          side=side, type=otype, qty=qty, price=price, stop_price=stop,
                          reduce_only=reduce_only, close_position=close_position, algo=algo,
                          position_side=position_side, working_type=working_type,
                          create_time=now, update_time=now,
                          time_in_force=params.get("timeInForce", "GTC"))
        if algo:
            self.state.algo_orders[order.order_id] = order
            await self._push_algo_update(order)
        else:
            self.state.orders[order.order_id] = order
            await self._push_order_update(order, "NEW")
            if otype == "MARKET":
                for i in range(self.market_trades - 1, -1, -1):
                    part = None if i == 0 else (order.qty - order.executed) / (i + 1)
                    await self._fill(order, self.state.prices[m.symbol], maker=False,
                                     qty=part)
            elif self._limit_crosses(order, self.state.prices[m.symbol]):
                await self._fill(order, order.price, maker=False)
        return order

    @staticmethod
    def _would_trigger(otype: str, side: str, stop: Decimal, price: Decimal) -> bool:
        if otype in ("STOP_MARKET", "STOP"):
            return price >= stop if side == "BUY" else price <= stop
        return price <= stop if side == "BUY" else price >= stop

    @staticmethod
    def _limit_crosses(order: FakeOrder, price: Decimal) -> bool:
        return price <= order.price if order.side == "BUY" else price >= order.price

    async def _fill(self, order: FakeOrder, price: Decimal, maker: bool,
                    qty: Decimal | None = None) -> None:
        """Execute the order's remaining quantity (or `qty` of it) at `price`; update
        position and wallet."""
        st = self.state
        pos = st.position(order.symbol, order.position_side)
        qty = order.qty - order.executed if qty is None else qty
        direction = Decimal(1) if order.side == "BUY" else Decimal(-1)
        hedge_close = order.position_side != "BOTH" and \
            (order.side == "SELL") == (order.position_side == "LONG")
        if order.reduce_only or order.close_position or hedge_close:
            if pos.amount == 0 or (pos.amount > 0) == (direction > 0):
                order.status = "EXPIRED"
                order.update_time = _ms()
                await self._push_order_update(order, "EXPIRED")
                return
            qty = abs(pos.amount) if order.close_position else min(qty, abs(pos.amount))
        realized = Decimal(0)
        signed = direction * qty
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            total = pos.amount + signed
            pos.entry = (pos.entry * abs(pos.amount) + price * qty) / abs(total)
            pos.amount = total
        else:
            closing = min(qty, abs(pos.amount))
            realized = (price - pos.entry) * closing * (1 if pos.amount > 0 else -1)
            opening = qty - closing
            pos.amount += direction * closing
            if pos.amount == 0:
                pos.entry = Decimal(0)
            if opening > 0:  # flipped through zero: the rest opens the other side
                pos.amount = direction * opening
                pos.entry = price
        pos.update_time = _ms()
        fee = price * qty * (self.maker_fee if maker else self.taker_fee)
        st.wallet += realized - fee
        order.executed += qty
        order.cum_quote += price * qty
        order.status = "FILLED" if order.executed >= order.qty or order.close_position \
            else "PARTIALLY_FILLED"
        order.update_time = _ms()
        trade = FakeTrade(id=next(self._trade_ids), order_id=order.order_id,
                          client_id=order.client_id, symbol=order.symbol, side=order.side,
                          qty=qty, price=price, fee=fee / self.fee_asset_price,
                          realized=realized, time=order.update_time, maker=maker,
                          fee_asset=self.fee_asset)
        st.trades.append(trade)
        await self._push_order_update(order, "TRADE", trade)
        await self._push_account_update(order.symbol, order.position_side)

    async def _match(self, symbol: str) -> None:
        price = self.state.prices[symbol]
        for order in list(self.state.orders.values()):
            if order.symbol == symbol and order.is_open and order.type == "LIMIT" \
                    and self._limit_crosses(order, price):
                await self._fill(order, order.price, maker=True)
        for algo in list(self.state.algo_orders.values()):
            ref = self.state.mark(symbol) if algo.working_type == "MARK_PRICE" else price
            if algo.symbol == symbol and algo.is_open and \
                    self._would_trigger(algo.type, algo.side, algo.stop_price, ref):
                await self._trigger(algo, price)

    async def _trigger(self, algo: FakeOrder, price: Decimal) -> None:
        """A conditional order fires: it becomes a market order in the matching engine."""
        algo.status = "TRIGGERED"
        algo.update_time = _ms()
        child = FakeOrder(order_id=next(self._ids), client_id=algo.client_id,
                          symbol=algo.symbol, side=algo.side, type="MARKET", qty=algo.qty,
                          reduce_only=algo.reduce_only, close_position=algo.close_position,
                          position_side=algo.position_side,
                          create_time=algo.update_time, update_time=algo.update_time)
        algo.actual_order_id = child.order_id
        self.state.orders[child.order_id] = child
        await self._push_algo_update(algo)
        await self._push_order_update(child, "NEW")
        if self.faults.held_children > 0:
            self.faults.held_children -= 1
            self._held_children.append((algo, child))
            return
        await self._fill(child, price, maker=False)
        if self.faults.algo_finish_held:
            self._unfinished.append((algo, child))
            return
        await self._finish(algo, child)

    async def _finish(self, algo: FakeOrder, child: FakeOrder) -> None:
        algo.executed = child.executed
        algo.cum_quote = child.cum_quote
        algo.status = "FINISHED" if child.status == "FILLED" else "CANCELED"
        algo.update_time = _ms()
        await self._push_algo_update(algo)

    async def fill_held_children(self) -> int:
        """Fill the market orders `faults.held_children` held, at the current price (their
        conditional orders then finish)."""
        held, self._held_children = self._held_children, []
        for algo, child in held:
            await self._fill(child, self.state.prices[child.symbol], maker=False)
            await self._finish(algo, child)
        return len(held)

    async def fill_part(self, client_id: str, qty: float | str,
                        price: float | str | None = None) -> None:
        """Execute `qty` of the resting regular order `client_id` as a maker, at `price`
        (default: its limit): a partial fill, told like any (stream, trades, REST)."""
        order = self._find(self.state.orders, {"origClientOrderId": client_id}, "orderId",
                           "origClientOrderId")
        if not order.is_open:
            raise ValueError(f"order {client_id} is not open ({order.status})")
        await self._fill(order, _d(price) if price is not None else order.price, maker=True,
                         qty=min(_d(qty), order.qty - order.executed))

    async def finish_held_algos(self) -> int:
        """Report FINISHED the triggered orders `faults.algo_finish_held` left TRIGGERED."""
        held, self._unfinished = self._unfinished, []
        for algo, child in held:
            await self._finish(algo, child)
        return len(held)

    def _find(self, book: dict[int, FakeOrder], params: dict[str, str], id_key: str,
              client_key: str) -> FakeOrder:
        if params.get(id_key):
            order = book.get(int(params[id_key]))
        else:
            cid = params.get(client_key)
            matches = [o for o in book.values() if o.client_id == cid]
            order = matches[-1] if matches else None
        if order is None or (params.get("symbol") and order.symbol != params["symbol"]):
            raise BinanceApiError(-2013, "Order does not exist.")
        return order

    async def _priv_get_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._market(params)
        order = self._find(self.state.orders, params, "orderId", "origClientOrderId")
        if self.faults.hidden_children > 0 and any(
                a.actual_order_id == order.order_id for a in self.state.algo_orders.values()):
            self.faults.hidden_children -= 1
            raise BinanceApiError(-2013, "Order does not exist.")
        return self._order_json(order)

    async def _priv_cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._market(params)
        try:
            order = self._find(self.state.orders, params, "orderId", "origClientOrderId")
        except BinanceApiError:
            raise BinanceApiError(-2011, "Unknown order sent.") from None
        if not order.is_open:
            raise BinanceApiError(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = _ms()
        await self._push_order_update(order, "CANCELED")
        return self._order_json(order)

    async def _priv_open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        sym = params.get("symbol")
        if sym:
            self._market(params)
        return [self._order_json(o) for o in self.state.open_orders(sym)]

    async def _priv_all_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market(params)
        return [self._order_json(o) for o in self.state.orders.values()
                if o.symbol == m.symbol]

    async def _priv_user_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market(params)
        if self.faults.hidden_trades > 0:
            self.faults.hidden_trades -= 1
            return []
        oid = params.get("orderId")  # (Binance: only together with the symbol)
        return [{"buyer": t.side == "BUY", "commission": _s(t.fee),
                 "commissionAsset": t.fee_asset,
                 "id": t.id, "maker": t.maker, "orderId": t.order_id, "price": _s(t.price),
                 "qty": _s(t.qty), "quoteQty": _s(t.price * t.qty),
                 "realizedPnl": _s(t.realized), "side": t.side, "positionSide": "BOTH",
                 "symbol": t.symbol, "time": t.time}
                for t in self.state.trades
                if t.symbol == m.symbol and (not oid or str(t.order_id) == oid)]

    async def _priv_income(self, params: dict[str, str]) -> list[dict[str, Any]]:
        kind, sym = params.get("incomeType"), params.get("symbol")
        start = int(params.get("startTime", "0") or 0)
        rows = [r for r in self.state.income if (kind is None or r["incomeType"] == kind)
                and (sym is None or r["symbol"] == sym) and r["time"] >= start]
        return [{"asset": "USDT", "info": "", "tranId": i + 1, "tradeId": "", **r}
                for i, r in enumerate(rows[:int(params.get("limit", "100"))])]

    async def _priv_get_algo(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._find(self.state.algo_orders, params, "algoId", "clientAlgoId")
        body = self._algo_json(order)
        if self.faults.unnamed_children > 0 and order.actual_order_id:
            self.faults.unnamed_children -= 1
            body.update(algoStatus="TRIGGERING", actualOrderId="", actualPrice="0")
        return body

    async def _priv_cancel_algo(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            order = self._find(self.state.algo_orders, params, "algoId", "clientAlgoId")
        except BinanceApiError:
            raise BinanceApiError(-2011, "Unknown order sent.") from None
        if not order.is_open:
            raise BinanceApiError(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = _ms()
        await self._push_algo_update(order)
        return {"algoId": order.order_id, "clientAlgoId": order.client_id, "code": "200",
                "msg": "success"}

    async def _priv_open_algo(self, params: dict[str, str]) -> list[dict[str, Any]]:
        sym = params.get("symbol")
        return [self._algo_json(o) for o in self.state.open_orders(sym, algo=True)]

    async def _priv_listen_key(self, params: dict[str, str]) -> dict[str, Any]:
        """POST: the active key (extended) or a new one; PUT: extend the active key."""
        key = secrets.token_hex(32) if not self._listen_keys else next(iter(self._listen_keys))
        self._listen_keys.add(key)
        if key not in self.issued_listen_keys:
            self.issued_listen_keys.append(key)
        return {"listenKey": key}

    async def _priv_keepalive_listen_key(self, params: dict[str, str]) -> dict[str, Any]:
        if not self._listen_keys:
            raise BinanceApiError(-1125, "This listenKey does not exist.")
        return {"listenKey": next(iter(self._listen_keys))}

    async def _priv_delete_listen_key(self, params: dict[str, str]) -> dict[str, Any]:
        self._listen_keys.clear()
        return {}

    def _avg(self, o: FakeOrder) -> Decimal:
        return Decimal(0) if self.faults.priceless_reports else o.avg

    def _order_json(self, o: FakeOrder) -> dict[str, Any]:
        priceless = self.faults.priceless_reports
        return {"orderId": o.order_id, "symbol": o.symbol, "status": o.status,
                "clientOrderId": o.client_id, "price": _s(o.price),
                "avgPrice": _s(self._avg(o)),
                "origQty": _s(o.qty), "executedQty": _s(o.executed),
                "cumQty": _s(o.executed), "cumQuote": _s(0 if priceless else o.cum_quote),
                "timeInForce": o.time_in_force, "type": o.type, "reduceOnly": o.reduce_only,
                "closePosition": o.close_position, "side": o.side,
                "positionSide": o.position_side,
                "stopPrice": _s(o.stop_price), "workingType": o.working_type,
                "priceProtect": False, "origType": o.type, "priceMatch": "NONE",
                "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
                "time": o.create_time, "updateTime": o.update_time}

    def _algo_json(self, o: FakeOrder) -> dict[str, Any]:
        return {"algoId": o.order_id, "clientAlgoId": o.client_id, "algoType": "CONDITIONAL",
                "orderType": o.type, "symbol": o.symbol, "side": o.side,
                "positionSide": o.position_side, "timeInForce": o.time_in_force,
                "quantity": _s(o.qty), "algoStatus": o.status,
                "actualOrderId": str(o.actual_order_id or ""),
                "actualPrice": _s(self._avg(o)), "triggerPrice": _s(o.stop_price),
                "price": _s(o.price), "icebergQuantity": None,
                "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": o.working_type,
                "priceMatch": "NONE", "closePosition": o.close_position,
                "priceProtect": False, "reduceOnly": o.reduce_only,
                "createTime": o.create_time, "updateTime": o.update_time,
                "triggerTime": o.update_time if o.status != "NEW" else 0, "goodTillDate": 0}

    # ------------------------------------------------------------------ websockets
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        listen_key = request.query.get("listenKey")
        category = request.match_info.get("category", "")
        is_user = listen_key is not None or category == "private"
        self.ws_connects["user" if is_user else "market"] += 1
        if is_user:
            self.user_ws_keys.append(str(listen_key))
            if listen_key not in self._listen_keys:
                await ws.send_json({"e": "listenKeyExpired", "E": _ms(),
                                    "listenKey": listen_key})
                await ws.close()
                return ws
            self._user_ws.add(ws)
        else:
            self._market_ws.add(ws)
            self._subs[ws] = set()
            self._ws_path[ws] = request.path
            self.ws_connects_by_path[request.path] = \
                self.ws_connects_by_path.get(request.path, 0) + 1
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                method = data.get("method")
                if method in ("SUBSCRIBE", "UNSUBSCRIBE") and not is_user:
                    streams = set(data.get("params", []))
                    if method == "SUBSCRIBE":
                        self._subs[ws] |= streams
                    else:
                        self._subs[ws] -= streams
                    await ws.send_json({"result": None, "id": data.get("id")})
                    if method == "SUBSCRIBE":
                        for sym in {s.split("@")[0].upper() for s in streams}:
                            if sym in self.state.markets:
                                await self._push_market(sym, only=ws)
                elif "id" in data:
                    await ws.send_json({"result": None, "id": data.get("id")})
        finally:
            if not is_user:
                self.ws_closed_by_path[request.path] = \
                    self.ws_closed_by_path.get(request.path, 0) + 1
            self._market_ws.discard(ws)
            self._user_ws.discard(ws)
            self._subs.pop(ws, None)
            self._ws_path.pop(ws, None)
        return ws

    def _market_events(self, sym: str, stream: str) -> dict[str, Any] | None:
        p = self.state.prices[sym]
        now = _ms()
        tick = _d(self.state.markets[sym].tick_size)
        kind = stream.split("@", 1)[1] if "@" in stream else ""
        if kind in ("miniTicker", "ticker"):
            ev = {"e": "24hrMiniTicker" if kind == "miniTicker" else "24hrTicker", "E": now,
                  "s": sym, "c": _s(p), "o": _s(p), "h": _s(p), "l": _s(p), "v": "1000",
                  "q": _s(p * 1000)}
            if kind == "ticker":
                ev.update({"p": "0", "P": "0", "w": _s(p), "Q": "0.01", "O": now - 86400000,
                           "C": now, "F": 1, "L": 2, "n": 2})
            return ev
        if kind == "bookTicker":
            return {"e": "bookTicker", "u": now, "E": now, "T": now, "s": sym,
                    "b": _s(p - tick), "B": "1", "a": _s(p + tick), "A": "1"}
        if kind in ("trade", "aggTrade"):
            tid = next(self._trade_ids)
            ev = {"e": kind, "E": now, "T": now, "s": sym, "p": _s(p), "q": "0.010",
                  "m": False}
            ev.update({"a": tid, "f": tid, "l": tid} if kind == "aggTrade" else {"t": tid})
            return ev
        if kind.startswith("markPrice"):
            return {"e": "markPriceUpdate", "E": now, "s": sym, "p": _s(p), "i": _s(p),
                    "P": _s(p), "r": "0.0001", "T": now + 3600000}
        return None

    async def _push_market(self, sym: str, only: web.WebSocketResponse | None = None) -> None:
        if self.faults.market_data_stalled or sym in self.faults.silent_symbols:
            return
        targets = [only] if only is not None else list(self._subs)
        for ws in targets:
            for stream in list(self._subs.get(ws, ())):
                if stream.split("@")[0].upper() != sym:
                    continue
                ev = self._market_events(sym, stream)
                if ev is not None and not ws.closed:
                    await ws.send_json(ev)

    async def _push_user(self, event: dict[str, Any]) -> None:
        if self.faults.user_stream_stalled:
            return
        for ws in list(self._user_ws):
            if not ws.closed:
                await ws.send_json(event)

    async def _push_order_update(self, o: FakeOrder, execution: str,
                                 trade: FakeTrade | None = None) -> None:
        now = _ms()
        push = self._held.append if self.faults.hold_order_events else None
        event = {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": {
            "s": o.symbol, "c": o.client_id, "S": o.side, "o": o.type, "f": o.time_in_force,
            "q": _s(o.qty), "p": _s(o.price), "ap": _s(self._avg(o)), "sp": _s(o.stop_price),
            "x": execution, "X": o.status, "i": o.order_id,
            "l": _s(trade.qty) if trade else "0", "z": _s(o.executed),
            "L": _s(trade.price) if trade and not self.faults.priceless_reports else "0",
            "N": trade.fee_asset if trade else "USDT",
            "n": _s(trade.fee) if trade else "0", "T": o.update_time,
            "t": trade.id if trade else 0, "b": "0", "a": "0",
            "m": trade.maker if trade else False, "R": o.reduce_only, "wt": o.working_type,
            "ot": o.type, "ps": o.position_side, "cp": o.close_position,
            "rp": _s(trade.realized) if trade else "0", "pP": False, "si": 0, "ss": 0,
            "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0}}
        if push is not None:
            push(event)
        else:
            await self._push_user(event)

    async def _push_algo_update(self, o: FakeOrder) -> None:
        now = _ms()
        await self._push_user({"e": "ALGO_UPDATE", "T": now, "E": now, "o": {
            "caid": o.client_id, "aid": o.order_id, "at": "CONDITIONAL", "o": o.type,
            "s": o.symbol, "S": o.side, "ps": o.position_side, "f": o.time_in_force,
            "q": _s(o.qty),
            "X": o.status, "ai": str(o.actual_order_id or ""), "ap": _s(self._avg(o)),
            "aq": _s(o.executed), "act": "MARKET" if o.actual_order_id else "0",
            "tp": _s(o.stop_price), "p": _s(o.price), "V": "EXPIRE_MAKER",
            "wt": o.working_type, "pm": "NONE", "cp": o.close_position, "pP": False,
            "R": o.reduce_only, "tt": o.update_time if o.status != "NEW" else 0, "gtd": 0}})

    async def _push_account_update(self, symbol: str, side: str = "BOTH") -> None:
        st = self.state
        pos = st.position(symbol, side)
        key = symbol if side == "BOTH" else f"{symbol}:{side}"
        now = _ms()
        await self._push_user({"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
            "m": "ORDER",
            "B": [{"a": st.asset, "wb": _s(st.wallet), "cw": _s(st.wallet), "bc": "0"}],
            "P": [{"s": symbol, "pa": _s(pos.amount), "ep": _s(pos.entry),
                   "bep": _s(pos.entry), "cr": "0", "up": _s(st.unrealized(key)),
                   "mt": st.margin_types.get(symbol, "cross"), "iw": "0", "ps": side}]}})


class ThreadedBinanceServer:
    """The same server on its own event loop in a daemon thread, for synchronous tests.

    `call(coro_fn, *args)` runs a server coroutine (set_price, drop_websockets…) on that
    loop and waits for it, so a Qt test can move the market without an asyncio loop.
    """

    def __init__(self, state: ExchangeState | None = None) -> None:
        self.server = BinanceServer(state)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-binance")

    @property
    def state(self) -> ExchangeState:
        return self.server.state

    @property
    def faults(self) -> Faults:
        return self.server.faults

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(10)

    def set_price(self, symbol: str, price: float | str) -> None:
        self.call(self.server.set_price, symbol, price)

    def ccxt_config(self) -> dict[str, Any]:
        return self.server.ccxt_config()

    def __enter__(self) -> ThreadedBinanceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

