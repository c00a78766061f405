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
- Demo: Bybit's demo trading (`enable_demo_trading`), not the testnet.
"""

from __future__ import annotations

import logging
from typing import Any

from ccxt.base import errors as cx

from pmgui.domain import errors as pe
from pmgui.domain.enums import Side
from pmgui.domain.models import Order, OrderRequest
from pmgui.exchange.ccxt_adapter import _TRIGGER_TYPES, CcxtExchange
from pmgui.exchange.retry import map_error

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
                "position_tpsl": False, "edit_orders": False}

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
        for settle in self._settles():
            got = await self._rest(
                lambda s=settle: ex.fetch_positions(None, {"settleCoin": s}),
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
        return await super().create_order(req)

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
                    return self._to_order(o)
        return None

    async def set_leverage(self, symbol: str, leverage: float) -> None:
        try:
            await super().set_leverage(symbol, leverage)
        except pe.ExchangeError as e:
            if "110043" in str(e):
                return  # already at that leverage
            raise map_error(e, self.id) from e
