"""A local Bybit v5 linear-perpetual emulator (REST + websockets) for tests.

It speaks what pmgui drives through ccxt.pro's real `bybit` class: instruments-info,
tickers, kline, time, account info (unified, margin mode), wallet balance, query-api,
position list (one-way positionIdx 0 or hedge legs 1/2, with the position's own
TP/SL), set-leverage, trading-stop, order create / cancel / realtime (20 per page by
default, 50 at most, cursor) / history (50 at most), and the websockets: public `tickers.*`
and private `order` (after `auth`). Conditional orders carry `triggerDirection` and
`triggerBy` (MarkPrice / LastPrice) and fire on that price; a fired conditional order fills
under its own id (Untriggered → Triggered → Filled), as on Bybit.

Refusals carry Bybit's codes: 10001 parameter error (and position mode mismatch),
110007 insufficient balance, 110017 reduce-only without a position, 110072 duplicate
orderLinkId, 110092/110093 trigger already crossed, 110001 order not found, 10006 rate
limit (`faults.http_429`). Payload shapes follow Bybit's documented and recorded v5
responses (ccxt's test fixtures, MIT, ts/src/test/static/response/bybit.json).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from tests.fakes.venue_core import VenueCore, VenueError, VMarket, VOrder, VPosition, d, ms, s

_CODES = {"symbol": 10001, "param": 10001, "qty": 10001, "position_mode": 10001,
          "margin_mode": 10001, "duplicate": 110072, "reduce_only": 110017,
          "funds": 110007, "not_found": 110001, "leverage_same": 110043}


@dataclass
class BybitFaults:
    http_429: int = 0  # the next N REST requests answer 10006 with HTTP 429
    create_timeouts: int = 0  # order/create: placed, the answer comes too late
    response_delay: float = 5.0
    private_stream_stalled: bool = False
    # order lookups find nothing until a create arrives after one of them: an order
    # placed under a timed-out create is not visible to the lookup that follows
    lookups_blind: bool = False
    lookups_blinded: bool = False  # (a lookup was answered blind)


class BybitServer:
    def __init__(self) -> None:
        self.core = VenueCore()
        self.core.conditional_children = False
        self.core.add_market(VMarket("BTCUSDT", "BTC", tick="0.10", step="0.001",
                                     min_qty="0.001"), "50000")
        self.core.add_market(VMarket("ETHUSDT", "ETH", tick="0.01", step="0.01",
                                     min_qty="0.01"), "3000")
        self.core.on_order = self._push_order
        self.account_margin_mode = "REGULAR_MARGIN"  # or ISOLATED_MARGIN
        self.trading_stops: list[dict[str, Any]] = []  # every trading-stop request
        self.faults = BybitFaults()
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._public: dict[web.WebSocketResponse, set[str]] = {}
        self._private: set[web.WebSocketResponse] = set()
        self._conn = itertools.count(1)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/v5/{path:.*}", self._rest)
        app.router.add_route("GET", "/ws/v5/public/{category}", self._ws_public)
        app.router.add_route("GET", "/ws/v5/private", self._ws_private)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        for ws in list(self._public) + list(self._private):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def ccxt_config(self) -> dict[str, Any]:
        http = f"http://{self.host}:{self.port}"
        ws = f"ws://{self.host}:{self.port}/ws/v5"
        api = {"spot": http, "futures": http, "v2": http, "public": http, "private": http,
               "ws": {"public": {"spot": f"{ws}/public/spot", "linear": f"{ws}/public/linear",
                                 "inverse": f"{ws}/public/inverse",
                                 "option": f"{ws}/public/option"},
                      "private": {"spot": {"unified": f"{ws}/private",
                                           "nonUnified": f"{ws}/private"},
                                  "contract": f"{ws}/private", "usdc": f"{ws}/private",
                                  "trade": f"{ws}/trade"}}}
        return {"urls": {"api": api, "test": api, "demotrading": api}, "timeout": 2000,
                "enableRateLimit": False,
                "options": {"adjustForTimeDifference": False, "fetchCurrencies": False}}

    # ------------------------------------------------------------ test controls
    async def set_price(self, symbol: str, price: float | str,
                        mark: float | str | None = None) -> None:
        await self.core.set_price(symbol, price, mark)
        await self._push_tickers(symbol)

    async def set_mark(self, symbol: str, mark: float | str) -> None:
        await self.core.set_mark(symbol, mark)
        await self._push_tickers(symbol)

    async def drop_websockets(self) -> None:
        for ws in list(self._public) + list(self._private):
            await ws.close()

    def sent(self, path: str, method: str = "POST") -> list[dict[str, Any]]:
        return [p for m, q, p in self.requests if q == path and m == method]

    # ------------------------------------------------------------ REST
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/v5/" + request.match_info["path"]
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            text = await request.text()
            if text:
                params.update(json.loads(text))
        self.requests.append((request.method, path, params))
        if self.faults.http_429 > 0:
            self.faults.http_429 -= 1
            return web.json_response({"retCode": 10006, "retMsg": "Too many visits!",
                                      "result": {}, "retExtInfo": {}, "time": ms()},
                                     status=429)
        if request.method == "POST" and path == "/v5/order/create":
            if self.faults.lookups_blinded:
                self.faults.lookups_blind = self.faults.lookups_blinded = False
        elif self.faults.lookups_blind and path.startswith("/v5/order/"):
            self.faults.lookups_blinded = True
            return web.json_response({"retCode": 0, "retMsg": "OK", "result": {
                "category": "linear", "list": [], "nextPageCursor": ""},
                "retExtInfo": {}, "time": ms()})
        handler = getattr(self, "_r_" + path[4:].replace("/", "_").replace("-", "_"), None)
        if handler is None:
            return web.json_response({"retCode": 10001, "retMsg": f"unknown path {path}",
                                      "result": {}, "retExtInfo": {}, "time": ms()})
        try:
            result = await handler(params)
        except VenueError as e:
            code = _CODES.get(e.kind, 10001)
            if e.kind == "trigger":
                code = 110093 if "fall" in e.msg else 110092
            return web.json_response({"retCode": code, "retMsg": e.msg, "result": {},
                                      "retExtInfo": {}, "time": ms()})
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                "time": ms()}
        if path == "/v5/order/create" and self.faults.create_timeouts > 0:
            self.faults.create_timeouts -= 1
            await asyncio.sleep(self.faults.response_delay)
        return web.json_response(body)

    def _m(self, params: dict[str, Any]) -> str:
        sym = str(params.get("symbol") or "")
        if sym not in self.core.markets:
            raise VenueError("symbol", f"params error: symbol invalid {sym}")
        return sym

    async def _r_market_time(self, p: dict[str, Any]) -> Any:
        now = ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    async def _r_market_instruments_info(self, p: dict[str, Any]) -> Any:
        if p.get("category") != "linear":
            return {"category": p.get("category"), "list": [], "nextPageCursor": ""}
        rows = []
        for m in self.core.markets.values():
            rows.append({
                "symbol": m.id, "contractType": "LinearPerpetual", "status": "Trading",
                "baseCoin": m.base, "quoteCoin": m.quote, "launchTime": "1585526400000",
                "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": "2",
                "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{m.max_leverage}.00",
                                   "leverageStep": "0.01"},
                "priceFilter": {"minPrice": m.tick, "maxPrice": "1999999.80",
                                "tickSize": m.tick},
                "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": m.min_qty,
                                  "qtyStep": m.step, "postOnlyMaxOrderQty": "1190.000",
                                  "maxMktOrderQty": "119.000", "minNotionalValue": "5"},
                "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT",
                "copyTrading": "both", "upperFundingRate": "0.00375",
                "lowerFundingRate": "-0.00375", "isPreListing": False,
                "preListingInfo": None})
        return {"category": "linear", "list": rows, "nextPageCursor": ""}

    def _ticker(self, sym: str) -> dict[str, Any]:
        p, mk = self.core.prices[sym], self.core.mark(sym)
        tick = d(self.core.markets[sym].tick)
        return {"symbol": sym, "lastPrice": s(p), "indexPrice": s(mk), "markPrice": s(mk),
                "prevPrice24h": s(p), "price24hPcnt": "0", "highPrice24h": s(p),
                "lowPrice24h": s(p), "prevPrice1h": s(p), "openInterest": "1000",
                "openInterestValue": s(p * 1000), "turnover24h": s(p * 100),
                "volume24h": "100", "fundingRate": "0.0001",
                "nextFundingTime": str(ms() + 3600000), "predictedDeliveryPrice": "",
                "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
                "ask1Size": "1", "bid1Price": s(p - tick), "ask1Price": s(p + tick),
                "bid1Size": "1", "basis": ""}

    async def _r_market_tickers(self, p: dict[str, Any]) -> Any:
        syms = [self._m(p)] if p.get("symbol") else list(self.core.markets)
        return {"category": "linear", "list": [self._ticker(x) for x in syms]}

    async def _r_market_kline(self, p: dict[str, Any]) -> Any:
        sym = self._m(p)
        price = s(self.core.prices[sym])
        start = ms() // 60000 * 60000
        limit = int(p.get("limit", 200))
        rows = [[str(start - i * 60000), price, price, price, price, "1", price]
                for i in range(min(limit, 5))]
        return {"category": "linear", "symbol": sym, "list": rows}

    async def _r_asset_coin_query_info(self, p: dict[str, Any]) -> Any:
        return {"rows": [{"name": c, "coin": c, "remainAmount": "5000000", "chains": [{
            "chainType": "ERC20", "confirmation": "12", "withdrawFee": "5", "depositMin": "0",
            "withdrawMin": "10", "chain": "ETH", "chainDeposit": "1", "chainWithdraw": "1",
            "minAccuracy": "6", "withdrawPercentageFee": "0", "contractAddress": "",
            "safeConfirmNumber": "65"}]} for c in ("USDT", "BTC", "ETH")]}

    async def _r_user_query_api(self, p: dict[str, Any]) -> Any:
        return {"id": "13770661", "note": "pmgui", "apiKey": "k", "readOnly": 0, "secret": "",
                "permissions": {"ContractTrade": ["Order", "Position"], "Spot": [],
                                "Wallet": [], "Options": [], "Derivatives": [],
                                "CopyTrading": [], "BlockTrade": [], "Exchange": [],
                                "NFT": []},
                "ips": ["*"], "type": 1, "deadlineDay": 66, "expiredAt": "",
                "createdAt": "", "unified": 0, "uta": 1, "userID": 24600000,
                "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
                "affiliateID": 0}

    async def _r_account_info(self, p: dict[str, Any]) -> Any:
        return {"marginMode": self.account_margin_mode, "updatedTime": str(ms()),
                "unifiedMarginStatus": 4, "dcpStatus": "OFF", "timeWindow": 10,
                "smpGroup": 0, "isMasterTrader": False, "spotHedgingStatus": "OFF"}

    async def _r_account_wallet_balance(self, p: dict[str, Any]) -> Any:
        w = s(self.core.wallet)
        return {"list": [{
            "accountType": "UNIFIED", "totalEquity": w, "totalWalletBalance": w,
            "totalAvailableBalance": w, "totalMarginBalance": w, "totalInitialMargin": "0",
            "totalMaintenanceMargin": "0", "totalPerpUPL": "0", "accountIMRate": "0",
            "accountMMRate": "0", "accountLTV": "0",
            "coin": [{"coin": "USDT", "equity": w, "usdValue": w, "walletBalance": w,
                      "free": "", "locked": "0", "availableToWithdraw": w,
                      "borrowAmount": "0", "accruedInterest": "0", "totalOrderIM": "0",
                      "totalPositionIM": "0", "totalPositionMM": "0", "unrealisedPnl": "0",
                      "cumRealisedPnl": "0", "bonus": "0", "marginCollateral": True,
                      "collateralSwitch": True, "spotHedgingQty": "0"}]}]}

    def _idx(self, leg: str) -> int:
        return {"net": 0, "long": 1, "short": 2}[leg]

    def _position_row(self, pos: VPosition) -> dict[str, Any]:
        sym = pos.symbol
        mark = self.core.mark(sym)
        size = abs(pos.signed)
        side = {"long": "Buy", "short": "Sell"}.get(pos.side, "")
        value = size * pos.entry
        return {
            "positionIdx": self._idx(pos.leg), "riskId": 1, "riskLimitValue": "2000000",
            "symbol": sym, "side": side, "size": s(size), "avgPrice": s(pos.entry),
            "positionValue": s(value), "tradeMode": 0, "positionStatus": "Normal",
            "autoAddMargin": 0, "adlRankIndicator": 2 if size else 0,
            "leverage": str(pos.leverage), "positionBalance": s(value / pos.leverage),
            "markPrice": s(mark), "liqPrice": "", "bustPrice": "", "positionMM": "0",
            "positionIM": s(value / pos.leverage), "tpslMode": "Full",
            "takeProfit": s(pos.tp), "stopLoss": s(pos.sl), "trailingStop": "0",
            "unrealisedPnl": s((mark - pos.entry) * pos.signed) if size else "0",
            "curRealisedPnl": "0", "cumRealisedPnl": "0", "seq": 1, "isReduceOnly": False,
            "mmrSysUpdateTime": "", "leverageSysUpdatedTime": "", "sessionAvgPrice": "",
            "createdTime": str(pos.created or ms()), "updatedTime": str(pos.updated or ms())}

    async def _r_position_list(self, p: dict[str, Any]) -> Any:
        rows = []
        if p.get("symbol"):
            sym = self._m(p)
            legs = ["long", "short"] if self.core.hedge_mode else ["net"]
            rows = [self._position_row(self.core.position(sym, leg)) for leg in legs]
        else:
            for pos in self.core.open_positions():
                rows.append(self._position_row(pos))
        # pages of `limit` (default 20, at most 200) behind `nextPageCursor`, as Bybit's
        limit = min(int(p.get("limit") or 20), 200)
        start = int(p.get("cursor") or 0)
        nxt = str(start + limit) if start + limit < len(rows) else ""
        return {"list": rows[start:start + limit], "nextPageCursor": nxt,
                "category": "linear"}

    async def _r_position_set_leverage(self, p: dict[str, Any]) -> Any:
        sym = self._m(p)
        lev = int(float(p.get("buyLeverage", "0")))
        if self.core.leverage.get(sym) == lev:
            raise VenueError("leverage_same", "leverage not modified")
        self.core.leverage[sym] = lev
        for pos in self.core.positions.values():
            if pos.symbol == sym:
                pos.leverage = lev
        return {}

    async def _r_position_trading_stop(self, p: dict[str, Any]) -> Any:
        sym = self._m(p)
        leg = {0: "net", 1: "long", 2: "short"}[int(p.get("positionIdx", 0))]
        pos = self.core.positions.get((sym, leg))
        if pos is None or pos.qty == 0:
            raise VenueError("reduce_only", "can not set tp/sl/ts for zero position")
        refs = {"MarkPrice": "mark", "LastPrice": "last", "IndexPrice": "mark"}
        side = "sell" if pos.signed > 0 else "buy"
        for key, kind in (("stopLoss", "stop"), ("takeProfit", "take_profit")):
            if key not in p:
                continue
            level = d(p[key] or 0)
            ref = refs.get(str(p.get("slTriggerBy" if kind == "stop" else "tpTriggerBy")
                               or "LastPrice"), "last")
            at = self.core.mark(sym) if ref == "mark" else self.core.prices[sym]
            if level and self.core._would_trigger(kind, side, level, at):
                raise VenueError("param", f"{key} {level} is already crossed (current {at})")
            if kind == "stop":
                pos.sl, pos.sl_ref = level, ref
            else:
                pos.tp, pos.tp_ref = level, ref
        self.trading_stops.append(dict(p))
        return {}

    async def _r_order_create(self, p: dict[str, Any]) -> Any:
        sym = self._m(p)
        side = str(p.get("side", "")).lower()
        otype = str(p.get("orderType", ""))
        idx = int(p.get("positionIdx", 0))
        if idx not in (0, 1, 2):
            raise VenueError("param", "position idx invalid")
        leg = {0: "net", 1: "long", 2: "short"}[idx]
        if (leg == "net") == self.core.hedge_mode:
            raise VenueError("position_mode", "position idx not match position mode")
        trigger = d(p.get("triggerPrice") or 0)
        kind = "limit" if otype == "Limit" else "market"
        if trigger:
            direction = int(p.get("triggerDirection", 0))
            if direction not in (1, 2):
                raise VenueError("param", "TriggerDirection invalid")
            rising = direction == 1
            # a sell that waits for a fall is a stop; a buy that waits for a rise too
            kind = "stop" if (side == "sell") != rising else "take_profit"
        ref = {"MarkPrice": "mark", "LastPrice": "last", "IndexPrice": "mark"}.get(
            str(p.get("triggerBy") or "LastPrice"), "last")
        try:
            order = await self.core.place(
                symbol=sym, side=side, kind=kind, qty=d(p.get("qty", "0")),
                client_id=str(p.get("orderLinkId") or ""), leg=leg,
                price=d(p.get("price") or 0), trigger=trigger, trigger_ref=ref,
                reduce_only=bool(p.get("reduceOnly")),
                extra={"triggerDirection": int(p.get("triggerDirection", 0) or 0),
                       "triggerBy": str(p.get("triggerBy") or ("LastPrice" if trigger
                                                                else ""))})
        except VenueError as e:
            if e.kind == "trigger":
                word = "Falling" if (kind == "stop" and side == "sell") or \
                    (kind == "take_profit" and side == "buy") else "Rising"
                raise VenueError("trigger", f"expect {word}, but trigger_price[{trigger}] "
                                 f"{'>=' if word == 'Falling' else '<='} current"
                                 f"[{self.core.prices[sym]}]??"
                                 f"{p.get('triggerBy', 'LastPrice')}"
                                 + (" fall" if word == "Falling" else "")) from None
            raise
        return {"orderId": order.id, "orderLinkId": order.client_id}

    async def _r_order_cancel(self, p: dict[str, Any]) -> Any:
        self._m(p)
        order = self.core.find(p.get("orderId"), p.get("orderLinkId"))
        if order is None:
            raise VenueError("not_found", "order not exists or too late to cancel")
        await self.core.cancel(order)
        return {"orderId": order.id, "orderLinkId": order.client_id}

    _STATUS: ClassVar[dict[str, str]] = {"new": "New", "partially_filled": "PartiallyFilled",
                                         "filled": "Filled",
                                         "cancelled": "Cancelled", "rejected": "Rejected",
                                         "triggered": "Triggered"}

    def order_json(self, o: VOrder) -> dict[str, Any]:
        status = self._STATUS[o.status]
        if o.conditional and o.status == "new" and not o.filled:
            status = "Untriggered"
        if o.conditional and o.status == "cancelled":
            status = "Deactivated"
        return {
            "orderId": o.id, "orderLinkId": o.client_id, "blockTradeId": "",
            "symbol": o.symbol, "price": s(o.price), "qty": s(o.qty),
            "side": "Buy" if o.side == "buy" else "Sell", "isLeverage": "",
            "positionIdx": self._idx(o.leg), "orderStatus": status,
            "createType": o.extra.get("create_type", "CreateByUser"),
            "cancelType": "UNKNOWN", "rejectReason": "EC_NoError",
            "avgPrice": s(o.avg) if o.filled else "", "leavesQty": s(o.qty - o.filled),
            "leavesValue": "0", "cumExecQty": s(o.filled), "cumExecValue": s(o.cum_quote),
            "cumExecFee": s(o.fee), "timeInForce": "GTC" if o.kind == "limit" else "IOC",
            "orderType": "Limit" if o.kind == "limit" else "Market",
            "stopOrderType": "Stop" if o.conditional else "", "orderIv": "",
            "triggerPrice": s(o.trigger), "takeProfit": "", "stopLoss": "",
            "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": o.extra.get("triggerDirection", 0),
            "triggerBy": o.extra.get("triggerBy", ""), "lastPriceOnCreated": "",
            "reduceOnly": o.reduce_only, "closeOnTrigger": False, "smpType": "None",
            "smpGroup": 0, "smpOrderId": "", "tpslMode": "", "tpLimitPrice": "",
            "slLimitPrice": "", "placeType": "", "createdTime": str(o.created),
            "updatedTime": str(o.updated)}

    def _select(self, p: dict[str, Any], rows: list[VOrder]) -> list[VOrder]:
        if p.get("symbol"):
            rows = [o for o in rows if o.symbol == p["symbol"]]
        if p.get("orderId"):
            rows = [o for o in rows if o.id == p["orderId"]]
        if p.get("orderLinkId"):
            rows = [o for o in rows if o.client_id == p["orderLinkId"]]
        flt = p.get("orderFilter")
        if flt == "StopOrder":
            rows = [o for o in rows if o.conditional]
        elif flt == "Order":
            rows = [o for o in rows if not o.conditional]
        return sorted(rows, key=lambda o: (o.created, o.id), reverse=True)

    def _page(self, p: dict[str, Any], rows: list[VOrder], max_limit: int) -> Any:
        limit = min(int(p.get("limit") or 20), max_limit)
        start = int(p.get("cursor") or 0)
        page = rows[start:start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else ""
        return {"category": "linear", "list": [self.order_json(o) for o in page],
                "nextPageCursor": nxt}

    async def _r_order_realtime(self, p: dict[str, Any]) -> Any:
        if not p.get("symbol") and not p.get("settleCoin") and not p.get("baseCoin"):
            raise VenueError("param", "symbol or settleCoin is required")
        if int(p.get("limit") or 20) > 50:
            raise VenueError("param", "limit must be at most 50")
        rows = [o for o in self.core.orders.values() if o.is_open or o.status == "triggered"]
        if p.get("orderId") or p.get("orderLinkId"):  # by id: recent closed ones too
            rows = list(self.core.orders.values())
        return self._page(p, self._select(p, rows), 50)

    async def _r_order_history(self, p: dict[str, Any]) -> Any:
        if int(p.get("limit") or 20) > 50:
            raise VenueError("param", "limit must be at most 50")
        rows = [o for o in self.core.orders.values() if not o.is_open]
        return self._page(p, self._select(p, rows), 50)

    async def _r_execution_list(self, p: dict[str, Any]) -> Any:
        return {"category": "linear", "list": [], "nextPageCursor": ""}

    # ------------------------------------------------------------ websockets
    async def _ws_public(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._public[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op = data.get("op")
                reply = {"success": True, "ret_msg": "", "conn_id": f"c{next(self._conn)}",
                         "req_id": data.get("req_id", ""), "op": op}
                if op == "ping":
                    reply["ret_msg"] = "pong"
                    await ws.send_json(reply)
                elif op == "subscribe":
                    self._public[ws] |= set(data.get("args", []))
                    await ws.send_json(reply)
                    for topic in data.get("args", []):
                        await self._push_topic(ws, topic)
                elif op == "unsubscribe":
                    self._public[ws] -= set(data.get("args", []))
                    await ws.send_json(reply)
        finally:
            self._public.pop(ws, None)
        return ws

    async def _push_topic(self, ws: web.WebSocketResponse, topic: str) -> None:
        if topic.startswith("tickers."):
            sym = topic.split(".", 1)[1]
            if sym in self.core.markets and not ws.closed:
                await ws.send_json({"topic": topic, "type": "snapshot",
                                    "data": self._ticker(sym), "cs": ms(), "ts": ms()})

    async def _push_tickers(self, sym: str) -> None:
        for ws, topics in list(self._public.items()):
            if f"tickers.{sym}" in topics:
                await self._push_topic(ws, f"tickers.{sym}")

    async def _ws_private(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        authed = False
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op = data.get("op")
                reply = {"success": True, "ret_msg": "", "conn_id": f"p{next(self._conn)}",
                         "req_id": data.get("req_id", ""), "op": op}
                if op == "auth":
                    authed = True
                    await ws.send_json(reply)
                elif op == "ping":
                    reply["ret_msg"] = "pong"
                    await ws.send_json(reply)
                elif op == "subscribe":
                    if not authed:
                        reply.update(success=False, ret_msg="Request not authorized")
                    else:
                        self._private.add(ws)
                    await ws.send_json(reply)
        finally:
            self._private.discard(ws)
        return ws

    async def _push_order(self, o: VOrder) -> None:
        if self.faults.private_stream_stalled:
            return
        row = {**self.order_json(o), "category": "linear"}
        msg = {"id": f"{o.id}-{o.updated}", "topic": "order", "creationTime": ms(),
               "data": [row]}
        for ws in list(self._private):
            if not ws.closed:
                await ws.send_json(msg)

