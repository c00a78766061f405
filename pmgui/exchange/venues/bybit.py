"""Bybit v5 linear perpetuals (USDT and USDC settled).

- Position mode is per symbol: `positionIdx` 0 one-way, 1 long leg, 2 short leg of a hedge
  account. Learned from every position listing (at connect) and, for a symbol without a
  position yet, from the venue's own position row of that symbol before its first order.
- Margin mode: unified accounts have one account-wide mode (`/v5/account/info`
  `marginMode`), classic accounts `tradeMode` per position.
- Conditional orders are regular orders with a trigger (`triggerBy` MarkPrice/LastPrice).
- Lookups: `fetch_order` is refused without `acknowledged`; open and closed orders are
  asked for directly (`orderId` / `orderLinkId`), open orders come 20 to a page (cursor,
  max 50) and the closed-order history at most 50.
- Protection in Bybit's own form: a stop-loss / take-profit covering the whole position is
  the position's TP/SL (`/v5/position/trading-stop`, tpslMode Full, `slTriggerBy` /
  `tpTriggerBy`), so the Bybit app shows it; a level already set there is read on adoption.
  Setting a level is idempotent (a re-send cannot duplicate it); "cancelling" clears it
  only while it is still the level pmgui set. The market order Bybit creates when it fires
  (createType CreateByStopLoss / CreateByTakeProfit, no orderLinkId) is reported as the fill
  of pmgui's protective order. Tranches (less than the whole position) use conditional
  orders.
- Demo: Bybit's demo trading (`enable_demo_trading`), not the testnet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from ccxt.base import errors as cx

from pmgui.domain import errors as pe
from pmgui.domain.enums import OrderRole, OrderStatus, OrderType, Side
from pmgui.domain.models import Order, OrderRequest
from pmgui.exchange.base import ExchangePosition
from pmgui.exchange.ccxt_adapter import _TRIGGER_TYPES, CcxtExchange
from pmgui.exchange.retry import map_error
from pmgui.exchange.venues import mapping as vm

log = logging.getLogger(__name__)

_ACCOUNT_MARGIN = {"ISOLATED_MARGIN": "isolated", "REGULAR_MARGIN": "cross",
                   "PORTFOLIO_MARGIN": "cross"}


class BybitExchange(CcxtExchange):
    closed_page = 50

    def _default_config(self) -> dict[str, Any]:
        cfg = super()._default_config()
        cfg["options"].update({"defaultType": "swap", "defaultSubType": "linear",
                               "fetchMarkets": {"types": ["linear"]}})
        return cfg

    def venue_capabilities(self, ex: Any) -> dict[str, Any]:
        return {"hedge_mode": True, "isolated_margin": True, "mark_trigger": True,
                "position_tpsl": True, "edit_orders": False}

    # ------------------------------------------------------------ position TP/SL
    _IDX: ClassVar[dict[Side, int]] = {Side.LONG: 1, Side.SHORT: 2}

    def _tpsl_state(self) -> dict[tuple[str, int, str], tuple[str, float]]:
        st = getattr(self, "_tpsl", None)
        if st is None:
            st = self._tpsl = {}  # (symbol, positionIdx, "sl"|"tp") → (client id, level)
        return st

    def _tpsl_since(self) -> dict[tuple[str, int, str], float]:
        """(symbol, positionIdx, "sl"|"tp") → when pmgui set the level there (venue ms): a
        market order Bybit created for a TP/SL before that was an earlier level's (an
        earlier position's), never this one's fill."""
        since = getattr(self, "_since", None)
        if since is None:
            since = self._since = {}
        return since

    def _venue_ms(self, local: float) -> float:
        return (local + (self._clock_offset or 0.0)) * 1000.0

    def _position_sizes(self) -> dict[tuple[str, Side], float]:
        sizes = getattr(self, "_sizes", None)
        if sizes is None:
            sizes = self._sizes = {}
        return sizes

    def _note_position(self, pos: ExchangePosition) -> None:
        super()._note_position(pos)
        self._position_sizes()[(pos.symbol, pos.side)] = pos.qty

    def _leg_idx(self, symbol: str, leg: Side) -> int:
        return self._IDX[leg] if self.is_hedged(symbol) else 0

    def _uses_position_tpsl(self, req: OrderRequest) -> bool:
        if req.type not in _TRIGGER_TYPES or not req.reduce_only or \
                req.role not in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT):
            return False
        size = self._position_sizes().get((req.symbol, self._position_side(req)))
        step = self._markets[req.symbol].amount_step if req.symbol in self._markets else 0.0
        return size is not None and req.amount + step / 2 >= size

    async def _trading_stop(self, symbol: str, idx: int, kind: str, level: float,
                            ref: str) -> None:
        ex = self._client()
        market = ex.market(symbol)
        body: dict[str, Any] = {"category": "linear", "symbol": market["id"],
                                "positionIdx": idx, "tpslMode": "Full"}
        price = "0" if level <= 0 else ex.price_to_precision(symbol, level)
        by = "MarkPrice" if ref == "mark" else "LastPrice"
        if kind == "sl":
            body.update(stopLoss=price, slTriggerBy=by, slOrderType="Market")
        else:
            body.update(takeProfit=price, tpTriggerBy=by, tpOrderType="Market")
        await self._rest(lambda: ex.privatePostV5PositionTradingStop(dict(body)),
                         "trading-stop")

    def recall_orders(self, orders: Sequence[Order]) -> None:
        """A position TP/SL has no client id at Bybit: after a restart the journal names
        which level pmgui set (exchange id `tpsl:<sl|tp>:<idx>:<symbol>`)."""
        super().recall_orders(orders)
        for o in orders:
            ex_id = o.exchange_id or ""
            if ex_id.startswith("tpsl:") and o.trigger_price:
                _, kind, idx_text, symbol = ex_id.split(":", 3)
                self._tpsl_state()[(symbol, int(idx_text), kind)] = (o.client_id,
                                                                    o.trigger_price)
                # journaled just before it was set: no fired order of it is older
                self._tpsl_since()[(symbol, int(idx_text), kind)] = self._venue_ms(
                    o.created_at)
                self._requests.setdefault(o.client_id, OrderRequest(
                    o.client_id, o.symbol, o.side, o.type, o.amount,
                    trigger_price=o.trigger_price, reduce_only=True,
                    position_id=o.position_id, role=o.role, reason=o.reason))

    def _tpsl_order(self, req: OrderRequest, idx: int, kind: str,
                    status: OrderStatus = OrderStatus.OPEN) -> Order:
        now = self._clock()
        ex_id = f"tpsl:{kind}:{idx}:{req.symbol}"
        return Order(client_id=req.client_id, symbol=req.symbol, side=req.side, type=req.type,
                     amount=req.amount, status=status, exchange_id=ex_id,
                     trigger_price=req.trigger_price, reduce_only=True,
                     position_id=req.position_id, role=req.role, reason=req.reason,
                     created_at=now, updated_at=now, trigger_ref=req.trigger_ref)

    async def _create_position_tpsl(self, req: OrderRequest) -> Order:
        leg = self._position_side(req)
        idx = self._leg_idx(req.symbol, leg)
        kind = "sl" if req.type is OrderType.STOP_MARKET else "tp"
        level = self._price_precise(req.symbol, float(req.trigger_price or 0.0))
        req = replace(req, trigger_price=level)
        self._requests[req.client_id] = req
        started = self._venue_ms(self._clock())
        try:
            await self._trading_stop(req.symbol, idx, kind, level, req.trigger_ref)
        except pe.ExchangeError as e:
            raise map_error(e, self.id, trigger=True) from e
        self._tpsl_state()[(req.symbol, idx, kind)] = (req.client_id, level)
        self._tpsl_since()[(req.symbol, idx, kind)] = started
        return self._tpsl_order(req, idx, kind)

    async def cancel_order(self, order: Order) -> Order:
        ex_id = order.exchange_id or ""
        if not ex_id.startswith("tpsl:"):
            return await super().cancel_order(order)
        _, kind, idx_text, symbol = ex_id.split(":", 3)
        key = (symbol, int(idx_text), kind)
        current = self._tpsl_state().get(key)
        if current is not None and current[0] == order.client_id:
            # still pmgui's level there: clear it (a newer level set meanwhile stays)
            try:
                await self._trading_stop(symbol, int(idx_text), kind, 0.0, "mark")
            except pe.ExchangeError as e:
                if e.retryable:
                    raise
                log.info("bybit: clearing %s of %s: %s", kind, symbol, e)
            self._tpsl_state().pop(key, None)
        return replace(order, status=OrderStatus.CANCELED, updated_at=self._clock())

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = await super().fetch_open_orders(symbol)
        return orders + await self._open_position_tpsl(symbol)

    async def _open_position_tpsl(self, symbol: str | None) -> list[Order]:
        """The position TP/SL levels as (synthetic) open orders, with pmgui's client id
        where pmgui set them."""
        out = []
        for p in await self.fetch_positions():
            if symbol is not None and p.symbol != symbol:
                continue
            idx = self._leg_idx(p.symbol, p.side)
            for kind, level in (("sl", p.sl), ("tp", p.tp)):
                if not level:
                    continue
                cid, mine = self._tpsl_state().get((p.symbol, idx, kind), ("", 0.0))
                if not cid or abs(mine - level) > 1e-9:
                    cid = f"ext-tpsl-{kind}-{idx}-{p.symbol}"
                req = self._requests.get(cid)
                otype = OrderType.STOP_MARKET if kind == "sl" else OrderType.TAKE_PROFIT_MARKET
                base = req or OrderRequest(cid, p.symbol, p.side.close_side, otype, p.qty,
                                           trigger_price=level, reduce_only=True)
                out.append(self._tpsl_order(replace(base, trigger_price=level,
                                                    amount=p.qty), idx, kind))
        return out

    def _fill_of_position_tpsl(self, o: Mapping[str, Any]) -> Mapping[str, Any]:
        """The market order Bybit created for a position TP/SL, as pmgui's order."""
        info = vm.info_of(o)
        kind = {"CreateByStopLoss": "sl", "CreateByTakeProfit": "tp",
                "CreateByPartialStopLoss": "sl", "CreateByPartialTakeProfit": "tp"}.get(
            str(info.get("createType") or ""))
        if kind is None or o.get("clientOrderId"):
            return o
        idx = int(info.get("positionIdx") or 0)
        key = (str(o.get("symbol")), idx, kind)
        current = self._tpsl_state().get(key)
        if current is None:
            return o
        created = vm.pos_num(o.get("timestamp"))
        since = self._tpsl_since().get(key)
        if created is not None and since is not None and created < since:
            return o  # an earlier level's (an earlier position's): not this one's fill
        return {**o, "clientOrderId": current[0],
                "type": "stop_market" if kind == "sl" else "take_profit_market",
                "triggerPrice": current[1], "reduceOnly": True}

    async def _resync_tracked(self) -> None:
        """Besides the tracked orders: a position TP/SL pmgui set that is no longer on its
        position fired (or was removed) while the stream was away; the order Bybit created
        for it is in the order history."""
        await super()._resync_tracked()
        state = self._tpsl_state()
        if not state or self._ex is None:
            return
        try:
            remaining = {(o.symbol, o.exchange_id): o.client_id
                         for o in await self._open_position_tpsl(None)}
        except pe.ExchangeError as e:
            log.info("bybit: position TP/SL resync failed: %s", e)
            return
        gone = [(key, cid) for key, (cid, _lvl) in state.items()
                if cid not in remaining.values()]
        for symbol in sorted({key[0] for key, _ in gone}):
            try:
                rows = await self._rest(lambda s=symbol: self._client()
                                        .fetch_canceled_and_closed_orders(
                                            s, None, self.closed_page, {}),
                                        "order history")
            except pe.ExchangeError as e:
                log.info("bybit: order history of %s unavailable: %s", symbol, e)
                continue
            # only the fills of the levels pmgui set there now: a market order an earlier
            # level created (an earlier position's, still in the history) would be taken
            # for a close of someone else's on the position open now
            fired = [m for m in (self._fill_of_position_tpsl(o) for o in rows or []
                                 if str(vm.info_of(o).get("createType") or "")
                                 .startswith(("CreateByStopLoss", "CreateByTakeProfit")))
                     if m.get("clientOrderId")]
            if fired:
                await self._process_orders(fired)

    async def _process_orders(self, raw_orders: list[Mapping[str, Any]]) -> None:
        sizes = self._position_sizes()
        for o in raw_orders:
            if sizes and (vm.num(o.get("filled")) or 0.0) > 0:
                # a fill changed the position: its size is asked for again when it decides
                # (a limit / stop entry, a tranche's stop: not the last listing's size)
                for leg in (Side.LONG, Side.SHORT):
                    sizes.pop((str(o.get("symbol")), leg), None)
        await super()._process_orders([self._fill_of_position_tpsl(o) for o in raw_orders])

    def _enable_demo(self, ex: Any) -> None:
        ex.enable_demo_trading(True)

    def _settles(self) -> list[str]:
        settles = {str(m.get("settle") or "USDT") for m in self._raw_markets.values()}
        return sorted(settles) or ["USDT"]

    async def _detect_account_mode(self, ex: Any) -> None:
        try:
            info = await self._rest(lambda: ex.privateGetV5AccountInfo({}), "account info")
        except pe.ExchangeError as e:
            if e.retryable:
                raise
            log.warning("bybit: account margin mode unknown (%s)", e)
        else:
            mode = str(((info or {}).get("result") or {}).get("marginMode") or "")
            self.account_margin_mode = _ACCOUNT_MARGIN.get(mode)
        await self.fetch_positions()  # learns the mode of every symbol with a position

    async def _fetch_positions_raw(self, ex: Any) -> list[Any]:
        rows: list[Any] = []
        for settle in self._settles():  # every page: at most 200 positions to one
            got = await self._rest(
                lambda s=settle: ex.fetch_positions(None, {"settleCoin": s,
                                                           "paginate": True}),
                "fetch_positions")
            rows += list(got or [])
        for p in rows:  # zero-size rows still tell the symbol's position mode
            info = p.get("info") or {}
            idx = str(info.get("positionIdx", ""))
            if p.get("symbol") and idx:
                self._hedged_symbols[str(p["symbol"])] = idx in ("1", "2")
        return rows

    async def _symbol_mode(self, symbol: str) -> bool:
        """Ask the venue for the symbol's position rows (idx 1/2 → hedge), once."""
        if symbol in self._hedged_symbols:
            return self._hedged_symbols[symbol]
        ex = self._client()
        market = ex.market(symbol)
        raw = await self._rest(lambda: ex.privateGetV5PositionList(
            {"category": "linear", "symbol": market["id"]}), "position mode")
        rows = ((raw or {}).get("result") or {}).get("list") or []
        hedged = any(str(r.get("positionIdx")) in ("1", "2") for r in rows)
        if rows:
            self._hedged_symbols[symbol] = hedged
        return hedged

    async def create_order(self, req: OrderRequest) -> Order:
        if req.symbol in self._markets:
            await self._symbol_mode(req.symbol)
        if req.type in _TRIGGER_TYPES and req.symbol in self._markets and \
                (req.symbol, self._position_side(req)) not in self._position_sizes():
            try:  # a position opened since the last listing: its size decides the form
                await self.fetch_positions()
            except pe.ExchangeError as e:
                if e.retryable:
                    raise
        if self._uses_position_tpsl(req):
            return await self._create_position_tpsl(req)
        order = await super().create_order(req)
        if order.filled > 0:
            self._position_sizes().pop((req.symbol, self._position_side(req)), None)
        return order

    def _venue_order_params(self, req: OrderRequest, params: dict[str, Any]) -> None:
        if req.type in _TRIGGER_TYPES:
            params["triggerBy"] = "MarkPrice" if req.trigger_ref == "mark" else "LastPrice"
        if self.is_hedged(req.symbol):
            params["positionIdx"] = 1 if self._position_side(req) is Side.LONG else 2
        else:
            params["positionIdx"] = 0

    def _open_order_queries(self, symbol: str | None) -> list[dict[str, Any]]:
        # every page (20 by default, cursor); without a symbol, per settle coin
        settles: list[str | None] = [None] if symbol is not None else list(self._settles())
        out: list[dict[str, Any]] = []
        for settle in settles:
            base: dict[str, Any] = {"paginate": True}
            if settle is not None:
                base["settleCoin"] = settle
            out += [base, {**base, "trigger": True}]
        return out

    async def _fetch_order_by_id(self, ex: Any, oid: str, symbol: str, trigger: bool) -> Any:
        try:
            return await ex.fetch_open_order(oid, symbol, {})
        except cx.OrderNotFound:
            pass
        return await ex.fetch_closed_order(oid, symbol, {})

    async def fetch_order_by_client_id(self, client_id: str, symbol: str) -> Order | None:
        ex = self._client()
        self._market(symbol)
        key = next((k for k, (cid, _) in self._tpsl_state().items() if cid == client_id),
                   None)
        if key is not None:
            for o in await self._open_position_tpsl(symbol):
                if o.client_id == client_id:
                    return o
            fired = await self._fired_position_tpsl(key, client_id)
            if fired is not None:
                return fired
            req = self._requests.get(client_id)
            return None if req is None else replace(
                self._tpsl_order(req, key[1], key[2]), status=OrderStatus.CANCELED)
        lookups = [
            ("open orders", lambda: ex.fetch_open_orders(symbol, None, None,
                                                         {"orderLinkId": client_id})),
            ("open conditional orders", lambda: ex.fetch_open_orders(
                symbol, None, None, {"orderLinkId": client_id, "trigger": True})),
            ("order history", lambda: ex.fetch_canceled_and_closed_orders(
                symbol, None, self.closed_page, {"orderLinkId": client_id})),
        ]
        for what, call in lookups:
            try:
                rows = await self._rest(call, what)
            except pe.ExchangeError as e:
                if e.retryable:
                    raise
                log.info("bybit: %s lookup of %s failed: %s", what, client_id, e)
                continue
            for o in rows or []:
                if str(o.get("clientOrderId") or "") == client_id:
                    return await self._looked_up(ex, o, symbol)  # (its price, its fill)
        return None

    async def _fired_position_tpsl(self, key: tuple[str, int, str],
                                   client_id: str) -> Order | None:
        """pmgui's position TP/SL `key` is no longer on its position: if it fired, the
        market order Bybit created for it (order history, createType CreateByStopLoss /
        CreateByTakeProfit, not older than the level) is its fill — delivered like the
        stream's report of it when the stream runs, so it is booked once. While the
        position is gone and that order is not in the history yet, it is looked for again
        (boundedly). None: no such order (the level was removed, e.g. in the Bybit app)."""
        symbol, idx, _kind = key
        ex = self._client()
        attempts = max(1, self._settings.fired_lookups)
        for attempt in range(attempts):
            rows = await self._rest(lambda: ex.fetch_canceled_and_closed_orders(
                symbol, None, self.closed_page, {}), "order history")
            mine = [m for m in (self._fill_of_position_tpsl(o) for o in rows or [])
                    if m.get("clientOrderId") == client_id]
            if mine:
                newest = max(mine, key=lambda m: vm.pos_num(m.get("timestamp")) or 0.0)
                if self._sink is not None:
                    await self._process_orders([newest])
                return self._to_order(newest)
            if attempt == attempts - 1:
                break
            held = [p for p in await self.fetch_positions() if p.symbol == symbol
                    and self._leg_idx(symbol, p.side) == idx and p.qty > 0]
            if held:
                return None  # the position is there: the level was removed, not fired
            await self._sleep(self._settings.backoff.delay(attempt))
        return None

    async def set_leverage(self, symbol: str, leverage: float) -> None:
        try:
            await super().set_leverage(symbol, leverage)
        except pe.ExchangeError as e:
            if "110043" in str(e):
                return  # already at that leverage
            raise map_error(e, self.id) from e
