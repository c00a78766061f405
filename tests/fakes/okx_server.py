"""A local OKX v5 perpetual-swap emulator (REST + websockets) for tests.

It speaks what pmgui drives through ccxt.pro's real `okx` class: public instruments /
time / ticker(s) / candles, account config (`posMode` net_mode | long_short_mode), balance,
positions (`mgnMode` cross | isolated, `posSide` net | long | short), set-leverage, trade
order / order-algo / cancel-order / cancel-algos / order / order-algo / orders-pending /
orders-algo-pending (by `ordType`, as OKX requires) / orders-history /
orders-algo-history / fills-history (an order's executions), and the websockets: public
`tickers`, private `orders` (after `login`) and business `orders-algo`.

Algo (conditional) orders live in their own book; they trigger on `slTriggerPxType` /
`tpTriggerPxType` (last | mark) and create a market order that carries the algo's
`algoId` and `algoClOrdId` but an empty `clOrdId`, as on OKX. `tdMode` must match the
position's margin mode and `posSide` the account's position mode: a reduce-only cross
order against an isolated position finds no position to reduce (51169), a missing
`posSide` in long/short mode is a parameter error (51000). Payload shapes follow OKX's
documented and recorded v5 responses (ccxt's test fixtures, MIT,
ts/src/test/static/response/okx.json).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from tests.fakes.venue_core import VenueCore, VenueError, VMarket, VOrder, VPosition, d, ms, s

_CODES = {"symbol": "51001", "param": "51000", "qty": "51121", "position_mode": "51000",
          "margin_mode": "51169", "duplicate": "51016", "reduce_only": "51169",
          "funds": "51008", "not_found": "51400", "order_missing": "51603",
          "algo_missing": "51603"}


@dataclass
class OkxFaults:
    http_429: int = 0  # the next N REST requests answer 50011 with HTTP 429
    create_timeouts: int = 0  # order / order-algo: placed, the answer comes too late
    response_delay: float = 5.0
    private_stream_stalled: bool = False
    silent_insts: set[str] = field(default_factory=set)  # these tickers stay silent
    # order lookups find nothing until a create arrives after one of them: an order
    # placed under a timed-out create is not visible to the lookup that follows
    lookups_blind: bool = False
    lookups_blinded: bool = False  # (a lookup was answered blind)


class OkxServer:
    def __init__(self) -> None:
        self.core = VenueCore()
        self.core.add_market(VMarket("BTC-USDT-SWAP", "BTC", tick="0.1", step="0.01",
                                     min_qty="0.01", contract_size="0.01"), "50000")
        self.core.add_market(VMarket("ETH-USDT-SWAP", "ETH", tick="0.01", step="0.01",
                                     min_qty="0.01", contract_size="0.1"), "3000")
        self.core.on_order = self._push_order
        self.faults = OkxFaults()
        self.requests: list[tuple[str, str, Any]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._public: dict[web.WebSocketResponse, set[str]] = {}
        self._orders_ws: set[web.WebSocketResponse] = set()
        self._algo_ws: set[web.WebSocketResponse] = set()
        self._conn = itertools.count(1)
        self.ws_connects: dict[str, int] = {}  # handshakes per access (public/private/…)
        self.ws_closed: dict[str, int] = {}  # connections ended per access

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v5/{path:.*}", self._rest)
        app.router.add_route("GET", "/ws/v5/{access}", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        for ws in list(self._public) + list(self._orders_ws) + list(self._algo_ws):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def ccxt_config(self) -> dict[str, Any]:
        api = {"rest": f"http://{self.host}:{self.port}",
               "ws": f"ws://{self.host}:{self.port}/ws/v5"}
        return {"urls": {"api": api, "test": api}, "timeout": 2000, "enableRateLimit": False,
                "options": {"adjustForTimeDifference": False, "fetchCurrencies": False}}

    # ------------------------------------------------------------ test controls
    async def set_price(self, inst: str, price: float | str,
                        mark: float | str | None = None) -> None:
        await self.core.set_price(inst, price, mark)
        await self._push_tickers(inst)

    async def set_mark(self, inst: str, mark: float | str) -> None:
        await self.core.set_mark(inst, mark)

    async def drop_websockets(self) -> None:
        for ws in list(self._public) + list(self._orders_ws) + list(self._algo_ws):
            await ws.close()

    def sent(self, path: str, method: str = "POST") -> list[Any]:
        return [p for m, q, p in self.requests if q == path and m == method]

    def algo_orders(self, inst: str | None = None) -> list[VOrder]:
        return [o for o in self.core.open_orders(inst) if o.algo]

    # ------------------------------------------------------------ REST
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/api/v5/" + request.match_info["path"]
        params: Any = dict(request.query)
        if request.method == "POST":
            text = await request.text()
            params = json.loads(text) if text else {}
        self.requests.append((request.method, path, params))
        if self.faults.http_429 > 0:
            self.faults.http_429 -= 1
            return web.json_response({"code": "50011", "msg": "Too Many Requests",
                                      "data": []}, status=429)
        if request.method == "POST" and path in ("/api/v5/trade/order",
                                                 "/api/v5/trade/order-algo",
                                                 "/api/v5/trade/batch-orders"):
            if self.faults.lookups_blinded:
                self.faults.lookups_blind = self.faults.lookups_blinded = False
        elif self.faults.lookups_blind and request.method == "GET" and \
                path.startswith("/api/v5/trade/"):
            self.faults.lookups_blinded = True
            if path in ("/api/v5/trade/order", "/api/v5/trade/order-algo"):
                return web.json_response({"code": "51603", "msg": "Order does not exist",
                                          "data": []})
            return web.json_response({"code": "0", "msg": "", "data": []})
        name = "_r_" + path[len("/api/v5/"):].replace("/", "_").replace("-", "_")
        handler = getattr(self, name, None)
        if handler is None:
            return web.json_response({"code": "51000", "msg": f"unknown path {path}",
                                      "data": []})
        try:
            data = await handler(params)
        except VenueError as e:
            code = _CODES.get(e.kind, "51000")
            if e.kind == "trigger":
                code = "51280" if "stop" in e.msg else "51279"
            if path.startswith("/api/v5/trade/"):
                return web.json_response({"code": "1", "msg": "Operation failed.", "data": [
                    {"clOrdId": "", "ordId": "", "algoId": "", "algoClOrdId": "",
                     "sCode": code, "sMsg": e.msg, "tag": ""}]})
            return web.json_response({"code": code, "msg": e.msg, "data": []})
        if path in ("/api/v5/trade/order", "/api/v5/trade/order-algo",
                    "/api/v5/trade/batch-orders") and \
                request.method == "POST" and self.faults.create_timeouts > 0:
            self.faults.create_timeouts -= 1
            await asyncio.sleep(self.faults.response_delay)
        return web.json_response({"code": "0", "msg": "", "data": data})

    def _inst(self, params: dict[str, Any]) -> str:
        inst = str(params.get("instId") or "")
        if inst not in self.core.markets:
            raise VenueError("symbol", f"Instrument ID {inst} does not exist")
        return inst

    async def _r_public_time(self, p: dict[str, Any]) -> Any:
        return [{"ts": str(ms())}]

    async def _r_asset_currencies(self, p: dict[str, Any]) -> Any:
        return []

    async def _r_public_instruments(self, p: dict[str, Any]) -> Any:
        if p.get("instType") != "SWAP":
            return []
        return [{
            "alias": "", "baseCcy": "", "category": "1", "ctMult": "1", "ctType": "linear",
            "ctVal": m.contract_size, "ctValCcy": m.base, "expTime": "",
            "instFamily": f"{m.base}-USDT", "instId": m.id, "instType": "SWAP",
            "lever": str(m.max_leverage), "listTime": "1573557408000", "lotSz": m.step,
            "maxIcebergSz": "100000000", "maxLmtAmt": "20000000", "maxLmtSz": "100000000",
            "maxMktAmt": "", "maxMktSz": "12000", "maxStopSz": "12000",
            "maxTriggerSz": "100000000", "maxTwapSz": "100000000", "minSz": m.min_qty,
            "optType": "", "quoteCcy": "", "settleCcy": "USDT", "state": "live", "stk": "",
            "tickSz": m.tick, "uly": f"{m.base}-USDT", "ruleType": "normal"}
            for m in self.core.markets.values()]

    def _ticker(self, inst: str) -> dict[str, Any]:
        p = self.core.prices[inst]
        tick = d(self.core.markets[inst].tick)
        return {"instType": "SWAP", "instId": inst, "last": s(p), "lastSz": "1",
                "askPx": s(p + tick), "askSz": "1", "bidPx": s(p - tick), "bidSz": "1",
                "open24h": s(p), "high24h": s(p), "low24h": s(p), "volCcy24h": "100",
                "vol24h": "10000", "sodUtc0": s(p), "sodUtc8": s(p), "ts": str(ms())}

    async def _r_market_ticker(self, p: dict[str, Any]) -> Any:
        return [self._ticker(self._inst(p))]

    async def _r_market_tickers(self, p: dict[str, Any]) -> Any:
        return [self._ticker(i) for i in self.core.markets]

    async def _r_market_candles(self, p: dict[str, Any]) -> Any:
        inst = self._inst(p)
        price = s(self.core.prices[inst])
        start = ms() // 60000 * 60000
        return [[str(start - i * 60000), price, price, price, price, "1", "1", price, "1"]
                for i in range(min(int(p.get("limit", 100)), 5))]

    async def _r_account_config(self, p: dict[str, Any]) -> Any:
        return [{"acctLv": "2", "autoLoan": False, "ctIsoMode": "automatic",
                 "greeksType": "PA", "level": "Lv1", "levelTmp": "", "mgnIsoMode":
                 "automatic", "posMode": "long_short_mode" if self.core.hedge_mode
                 else "net_mode", "spotOffsetType": "", "uid": "44705892343619584",
                 "label": "pmgui", "roleType": "0", "traderInsts": [], "spotRoleType": "0",
                 "spotTraderInsts": [], "opAuth": "0", "kycLv": "3", "ip": "",
                 "perm": "read_only,trade", "mainUid": "44705892343619584"}]

    async def _r_account_balance(self, p: dict[str, Any]) -> Any:
        w = s(self.core.wallet)
        return [{"adjEq": "", "borrowFroz": "", "imr": "0", "isoEq": "0", "mgnRatio": "",
                 "mmr": "0", "notionalUsd": "0", "ordFroz": "0", "totalEq": w,
                 "uTime": str(ms()), "upl": "0",
                 "details": [{"availBal": w, "availEq": w, "cashBal": w, "ccy": "USDT",
                              "crossLiab": "0", "disEq": w, "eq": w, "eqUsd": w,
                              "fixedBal": "0", "frozenBal": "0", "imr": "0", "interest": "0",
                              "isoEq": "0", "isoLiab": "0", "isoUpl": "0", "liab": "0",
                              "maxLoan": "0", "mgnRatio": "", "mmr": "0",
                              "notionalLever": "", "ordFrozen": "0", "spotInUseAmt": "",
                              "stgyEq": "0", "twap": "0", "uTime": str(ms()), "upl": "0",
                              "uplLiab": "0"}]}]

    def _position_row(self, pos: VPosition) -> dict[str, Any]:
        inst = pos.symbol
        mark = self.core.mark(inst)
        mode = self.core.margin_modes.get(inst, "cross")
        ctv = d(self.core.markets[inst].contract_size)
        margin = abs(pos.qty) * pos.entry * ctv / pos.leverage
        return {
            "adl": "1", "availPos": s(abs(pos.qty)) if mode == "isolated" else "",
            "avgPx": s(pos.entry), "cTime": str(pos.created or ms()), "ccy": "USDT",
            "deltaBS": "", "deltaPA": "", "gammaBS": "", "gammaPA": "", "imr": "" if mode ==
            "isolated" else s(margin), "instId": inst, "instType": "SWAP", "interest": "0",
            "idxPx": s(mark), "last": s(self.core.prices[inst]), "lever": str(pos.leverage),
            "liab": "", "liabCcy": "", "liqPx": "", "markPx": s(mark),
            "margin": s(margin) if mode == "isolated" else "", "mgnMode": mode,
            "mgnRatio": "", "mmr": "0", "notionalUsd": s(abs(pos.qty) * mark * ctv),
            "optVal": "", "pTime": str(ms()), "pos": s(pos.qty), "posCcy": "",
            "posId": f"{abs(hash((inst, pos.leg))) % 10**18}", "posSide": pos.leg,
            "thetaBS": "", "thetaPA": "", "tradeId": "1", "uTime": str(pos.updated or ms()),
            "upl": s((mark - pos.entry) * pos.signed * ctv), "uplRatio": "0", "vegaBS": "",
            "vegaPA": "", "realizedPnl": "0", "pnl": "0", "fee": "0", "fundingFee": "0",
            "bePx": s(pos.entry), "uplLastPx": "0", "closeOrderAlgo": [], "baseBal": "",
            "quoteBal": "", "spotInUseAmt": "", "spotInUseCcy": "", "bizRefId": "",
            "bizRefType": "", "clSpotInUseAmt": "", "maxSpotInUseAmt": "", "usdPx": "",
            "nonSettleAvgPx": "", "settledPnl": "", "pendingCloseOrdLiabVal": "",
            "realizedPnlLastPx": ""}

    async def _r_account_positions(self, p: dict[str, Any]) -> Any:
        rows = self.core.open_positions()
        if p.get("instId"):
            rows = [r for r in rows if r.symbol in str(p["instId"]).split(",")]
        return [self._position_row(r) for r in rows]

    async def _r_account_set_leverage(self, p: dict[str, Any]) -> Any:
        inst = self._inst(p)
        mode = p.get("mgnMode")
        if mode not in ("cross", "isolated"):
            raise VenueError("param", "Parameter mgnMode error")
        if mode == "isolated" and self.core.hedge_mode and p.get("posSide") not in (
                "long", "short"):
            raise VenueError("param", "Parameter posSide error")
        lev = int(float(p.get("lever", "0")))
        self.core.leverage[inst] = lev
        for pos in self.core.positions.values():
            if pos.symbol == inst and (not p.get("posSide") or pos.leg == p["posSide"]):
                pos.leverage = lev
        return [{"instId": inst, "lever": str(lev), "mgnMode": mode,
                 "posSide": p.get("posSide", "net")}]

    def _leg(self, p: dict[str, Any]) -> str:
        pos_side = str(p.get("posSide") or "")
        if self.core.hedge_mode:
            if pos_side not in ("long", "short"):
                raise VenueError("position_mode", "Parameter posSide error ")
            return pos_side
        if pos_side not in ("", "net"):
            raise VenueError("position_mode", "Parameter posSide error ")
        return "net"

    def _td_mode(self, inst: str, p: dict[str, Any]) -> str:
        td = str(p.get("tdMode") or "")
        if td not in ("cross", "isolated"):
            raise VenueError("param", "Parameter tdMode error ")
        return td

    async def _checked_place(self, inst: str, p: dict[str, Any], **kw: Any) -> VOrder:
        td = self._td_mode(inst, p)
        leg = self._leg(p)
        side = str(p.get("side", ""))
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true" or \
            p.get("reduceOnly") is True
        closes = reduce_only or (leg == "long" and side == "sell") or \
            (leg == "short" and side == "buy")
        sym_mode = self.core.margin_modes.get(inst, "cross")
        if closes and td != sym_mode:
            # an order of the other margin mode sees no position to reduce
            raise VenueError("margin_mode", "Order failed because you don't have any "
                             "positions in this direction for this contract to reduce or "
                             "close.")
        if not closes and td != sym_mode and self.core.open_positions():
            raise VenueError("param", "Parameter tdMode error ")
        return await self.core.place(symbol=inst, side=side, qty=d(p.get("sz", "0")),
                                     leg=leg, reduce_only=reduce_only, **kw)

    async def _r_trade_order(self, p: dict[str, Any]) -> Any:
        if not p or "side" not in p:  # GET: order details
            return await self._get_order(p)
        inst = self._inst(p)
        otype = str(p.get("ordType", ""))
        if otype not in ("market", "limit"):
            raise VenueError("param", "Parameter ordType error ")
        order = await self._checked_place(
            inst, p, kind=otype, client_id=str(p.get("clOrdId") or ""),
            price=d(p.get("px") or 0))
        return [{"clOrdId": order.client_id, "ordId": order.id, "tag": "", "ts": str(ms()),
                 "sCode": "0", "sMsg": "Order placed"}]

    async def _r_trade_batch_orders(self, p: Any) -> Any:
        """ccxt's default for create_order: a list of one order (errors per item)."""
        out = []
        for item in p if isinstance(p, list) else [p]:
            out += await self._r_trade_order({**item, "side": item.get("side", "")})
        return out

    async def _r_trade_order_algo(self, p: dict[str, Any]) -> Any:
        if not p or "side" not in p:
            return await self._get_algo(p)
        inst = self._inst(p)
        if p.get("ordType") not in ("conditional", "oco"):
            raise VenueError("param", "Parameter ordType error ")
        if p.get("slTriggerPx"):
            kind, trig, ref = "stop", d(p["slTriggerPx"]), p.get("slTriggerPxType", "last")
        elif p.get("tpTriggerPx"):
            kind, trig, ref = "take_profit", d(p["tpTriggerPx"]), \
                p.get("tpTriggerPxType", "last")
        else:
            raise VenueError("param", "Parameter slTriggerPx error ")
        if ref not in ("last", "mark", "index"):
            raise VenueError("param", "Parameter TriggerPxType error ")
        try:
            order = await self._checked_place(
                inst, p, kind=kind, client_id=str(p.get("algoClOrdId") or ""),
                trigger=trig, trigger_ref="mark" if ref == "index" else ref, algo=True,
                extra={"ordType": p.get("ordType"), "td": p.get("tdMode")})
        except VenueError as e:
            if e.kind == "trigger":
                raise VenueError("trigger", ("SL trigger price must be less than the last "
                                             "price (stop)") if kind == "stop" else
                                 "TP trigger price must be greater than the last price"
                                 ) from None
            raise
        return [{"algoId": order.id, "clOrdId": "", "algoClOrdId": order.client_id,
                 "sCode": "0", "sMsg": "", "tag": ""}]

    async def _r_trade_cancel_order(self, p: dict[str, Any]) -> Any:
        self._inst(p)
        o = self.core.find(p.get("ordId"), p.get("clOrdId"))
        if o is None or o.algo:
            raise VenueError("not_found", "Order does not exist")
        await self.core.cancel(o)
        return [{"clOrdId": o.client_id, "ordId": o.id, "sCode": "0", "sMsg": ""}]

    async def _r_trade_cancel_algos(self, p: Any) -> Any:
        out = []
        for item in p if isinstance(p, list) else [p]:
            o = self.core.find(item.get("algoId"), item.get("algoClOrdId"))
            if o is None or not o.algo:
                raise VenueError("not_found", "Order does not exist")
            await self.core.cancel(o)
            out.append({"algoId": o.id, "algoClOrdId": o.client_id, "sCode": "0",
                        "sMsg": ""})
        return out

    _STATE: ClassVar[dict[str, str]] = {
        "new": "live", "partially_filled": "partially_filled", "filled": "filled",
        "cancelled": "canceled", "rejected": "canceled", "triggered": "live"}

    def order_json(self, o: VOrder) -> dict[str, Any]:
        parent = self.core.orders.get(o.parent) if o.parent else None
        return {
            "accFillSz": s(o.filled), "algoClOrdId": parent.client_id if parent else "",
            "algoId": parent.id if parent else "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": s(o.avg) if o.filled else "",
            "cTime": str(o.created), "cancelSource": "", "cancelSourceReason": "",
            "category": "normal", "ccy": "", "clOrdId": o.client_id, "fee": s(-o.fee),
            "feeCcy": "USDT", "fillPx": s(o.extra.get("last_price", 0)) if o.filled else "",
            "fillSz": s(o.extra.get("last_qty", 0)) if o.filled else "0",
            "fillTime": str(o.updated) if o.filled else "", "instId": o.symbol,
            "instType": "SWAP", "isTpLimit": "false", "lever": "10",
            "linkedAlgoOrd": {"algoId": ""}, "ordId": o.id, "ordType": o.kind
            if o.kind in ("market", "limit") else "market", "pnl": "0", "posSide": o.leg,
            "px": s(o.price) if o.kind == "limit" else "", "pxType": "", "pxUsd": "",
            "pxVol": "", "quickMgnType": "", "rebate": "0", "rebateCcy": "USDT",
            "reduceOnly": "true" if o.reduce_only and o.leg == "net" else "false",
            "side": o.side, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "",
            "source": "", "state": self._STATE[o.status], "stpId": "", "stpMode": "",
            "sz": s(o.qty), "tag": "", "tdMode": o.margin_mode, "tgtCcy": "",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tradeId": str(o.updated) if o.filled else "", "uTime": str(o.updated)}

    _ALGO_STATE: ClassVar[dict[str, str]] = {
        "new": "live", "triggered": "live", "filled": "effective", "partially_filled": "live",
        "cancelled": "canceled", "rejected": "order_failed"}

    def algo_json(self, o: VOrder) -> dict[str, Any]:
        sl = o.kind == "stop"
        return {
            "activePx": "", "actualPx": s(o.avg) if o.filled else "", "actualSide":
            ("sl" if sl else "tp") if o.child else "", "actualSz": s(o.filled),
            "algoClOrdId": o.client_id, "algoId": o.id, "amendPxOnTriggerType": "",
            "attachAlgoOrds": [], "cTime": str(o.created), "callbackRatio": "",
            "callbackSpread": "", "ccy": "", "clOrdId": "", "closeFraction": "",
            "failCode": "", "instId": o.symbol, "instType": "SWAP", "last": "",
            "lever": "10", "moveTriggerPx": "", "ordId": o.child or "",
            "ordIdList": [o.child] if o.child else [], "ordPx": "",
            "ordType": o.extra.get("ordType", "conditional"), "posSide": o.leg,
            "pxLimit": "", "pxSpread": "", "pxVar": "", "quickMgnType": "",
            "reduceOnly": "true" if o.reduce_only and o.leg == "net" else "false",
            "side": o.side, "slOrdPx": "-1" if sl else "",
            "slTriggerPx": s(o.trigger) if sl else "",
            "slTriggerPxType": o.trigger_ref if sl else "",
            "state": self._ALGO_STATE[o.status], "sz": s(o.qty), "szLimit": "", "tag": "",
            "tdMode": o.extra.get("td") or o.margin_mode, "tgtCcy": "", "timeInterval": "",
            "tpOrdPx": "" if sl else "-1", "tpTriggerPx": "" if sl else s(o.trigger),
            "tpTriggerPxType": "" if sl else o.trigger_ref, "triggerPx": "",
            "triggerPxType": "", "triggerTime": str(o.updated) if o.child else "",
            "uTime": str(o.updated)}

    async def _get_order(self, p: dict[str, Any]) -> Any:
        self._inst(p)
        o = self.core.find(p.get("ordId"), None)
        if o is None and p.get("clOrdId"):
            matches = [x for x in self.core.orders.values()
                       if x.client_id == p["clOrdId"] and not x.algo and x.parent is None]
            o = matches[-1] if matches else None
        if o is None or o.algo:
            raise VenueError("order_missing", "Order does not exist")
        return [self.order_json(o)]

    async def _r_trade_fills_history(self, p: dict[str, Any]) -> Any:
        """An account's executions (newest first), of one instrument or order (`ordId`)."""
        inst, oid = p.get("instId"), p.get("ordId")
        rows = [t for t in self.core.trades
                if (not inst or t.symbol == inst) and (not oid or t.order_id == oid)]
        return [{"instType": "SWAP", "instId": t.symbol, "tradeId": t.id, "ordId": t.order_id,
                 "clOrdId": self.core.orders[t.order_id].client_id, "billId": t.id,
                 "subType": "1", "tag": "", "fillPx": s(t.price), "fillSz": s(t.qty),
                 "fillIdxPx": "", "fillPnl": "0", "fillPxVol": "", "fillPxUsd": "",
                 "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "", "side": t.side,
                 "posSide": self.core.orders[t.order_id].leg, "execType": "T",
                 "feeCcy": "USDT", "fee": s(-t.fee), "ts": str(t.ts), "fillTime": str(t.ts)}
                for t in reversed(rows)]

    async def _get_algo(self, p: dict[str, Any]) -> Any:
        o = self.core.find(p.get("algoId"), p.get("algoClOrdId"))
        if o is None or not o.algo:
            raise VenueError("algo_missing", "Order does not exist")
        return [self.algo_json(o)]

    def _filter(self, p: dict[str, Any], rows: list[VOrder]) -> list[VOrder]:
        if p.get("instId"):
            rows = [o for o in rows if o.symbol == p["instId"]]
        rows = sorted(rows, key=lambda o: (o.created, o.id), reverse=True)
        if p.get("after"):  # the page of records older than this ordId / algoId
            ids = [o.id for o in rows]
            rows = rows[ids.index(p["after"]) + 1:] if p["after"] in ids else []
        return rows[:min(int(p.get("limit") or 100), 100)]

    async def _r_trade_orders_pending(self, p: dict[str, Any]) -> Any:
        rows = [o for o in self.core.open_orders() if not o.algo]
        return [self.order_json(o) for o in self._filter(p, rows)]

    async def _r_trade_orders_history(self, p: dict[str, Any]) -> Any:
        rows = [o for o in self.core.orders.values() if not o.algo and not o.is_open]
        return [self.order_json(o) for o in self._filter(p, rows)]

    async def _r_trade_orders_algo_pending(self, p: dict[str, Any]) -> Any:
        kinds = str(p.get("ordType") or "")
        if not kinds:
            raise VenueError("param", "Parameter ordType can not be empty.")
        rows = [o for o in self.core.open_orders() if o.algo
                and o.extra.get("ordType", "conditional") in kinds.split(",")]
        if p.get("algoId"):
            rows = [o for o in rows if o.id == p["algoId"]]
        return [self.algo_json(o) for o in self._filter(p, rows)]

    async def _r_trade_orders_algo_history(self, p: dict[str, Any]) -> Any:
        kinds = str(p.get("ordType") or "")
        if not kinds:
            raise VenueError("param", "Parameter ordType can not be empty.")
        rows = [o for o in self.core.orders.values() if o.algo and not o.is_open
                and o.extra.get("ordType", "conditional") in kinds.split(",")]
        return [self.algo_json(o) for o in self._filter(p, rows)]

    # ------------------------------------------------------------ websockets
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        access = request.match_info["access"]
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = f"c{next(self._conn)}"
        self.ws_connects[access] = self.ws_connects.get(access, 0) + 1
        logged_in = False
        if access == "public":
            self._public[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    await ws.send_str("pong")
                    continue
                data = json.loads(msg.data)
                op = data.get("op")
                if op == "login":
                    logged_in = True
                    await ws.send_json({"event": "login", "code": "0", "msg": "",
                                        "connId": conn})
                elif op == "subscribe":
                    for arg in data.get("args", []):
                        channel = arg.get("channel")
                        if access != "public" and not logged_in:
                            await ws.send_json({"event": "error", "code": "60011",
                                                "msg": "Please log in", "connId": conn})
                            continue
                        await ws.send_json({"event": "subscribe", "arg": arg,
                                            "connId": conn})
                        if channel == "tickers" and access == "public":
                            self._public[ws].add(arg.get("instId", ""))
                            await self._push_ticker(ws, arg.get("instId", ""))
                        elif channel == "orders" and access == "private":
                            self._orders_ws.add(ws)
                        elif channel == "orders-algo" and access == "business":
                            self._algo_ws.add(ws)
        finally:
            self.ws_closed[access] = self.ws_closed.get(access, 0) + 1
            self._public.pop(ws, None)
            self._orders_ws.discard(ws)
            self._algo_ws.discard(ws)
        return ws

    async def _push_ticker(self, ws: web.WebSocketResponse, inst: str) -> None:
        if inst in self.core.markets and not ws.closed and inst not in self.faults.silent_insts:
            await ws.send_json({"arg": {"channel": "tickers", "instId": inst},
                                "data": [self._ticker(inst)]})

    async def _push_tickers(self, inst: str) -> None:
        for ws, insts in list(self._public.items()):
            if inst in insts:
                await self._push_ticker(ws, inst)

    async def _push_order(self, o: VOrder) -> None:
        if self.faults.private_stream_stalled:
            return
        if o.algo:
            msg = {"arg": {"channel": "orders-algo", "instType": "ANY",
                           "uid": "44705892343619584"}, "data": [self.algo_json(o)]}
            targets = self._algo_ws
        else:
            row = {**self.order_json(o), "execType": "T" if o.filled else "",
                   "fillFee": s(-o.fee), "fillFeeCcy": "USDT", "fillPnl": "0",
                   "fillMarkPx": s(self.core.mark(o.symbol)), "msg": "", "amendResult": "",
                   "code": "0", "reqId": "", "notionalUsd": ""}
            msg = {"arg": {"channel": "orders", "instType": "ANY",
                           "uid": "44705892343619584"}, "data": [row]}
            targets = self._orders_ws
        for ws in list(targets):
            if not ws.closed:
                await ws.send_json(msg)
