"""OKX v5 perpetual swaps.

- Position mode: `long_short_mode` (every order names its `posSide`) or `net_mode`,
  from the account configuration at connect.
- Margin mode per position (`mgnMode`): every order carries the position's `tdMode`
  (ccxt defaults to cross, which an isolated position refuses: 51169/51000).
- Protective orders are algo orders (`conditional`, or `oco` for a pair): created with
  `algoClOrdId`, listed with `ordType` conditional and oco (ccxt lists `trigger` by
  default), streamed on the `orders-algo` channel (`watch_orders(trigger=True)`),
  triggered on `slTriggerPxType`/`tpTriggerPxType` mark or last. The order an algo
  creates when it fires carries the algo's `algoId`/`algoClOrdId`, not our client id:
  it is mapped back to its algo (pmgui.exchange.venues.mapping).
- Demo: OKX simulated trading (the `x-simulated-trading` header, ccxt's sandbox mode).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pmgui.domain.enums import OrderType, Side
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import _TRIGGER_TYPES, CcxtExchange
from pmgui.exchange.venues import mapping as vm

log = logging.getLogger(__name__)


class OkxExchange(CcxtExchange):
    algo_orders = True
    _OPEN_PAGE = 100  # OKX's largest page of pending orders
    _OPEN_PAGES = 100  # at most this many pages per listing (10,000 orders)

    def _default_config(self) -> dict[str, Any]:
        cfg = super()._default_config()
        cfg["options"].update({"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}})
        return cfg

    def venue_capabilities(self, ex: Any) -> dict[str, Any]:
        return {"hedge_mode": True, "isolated_margin": True, "mark_trigger": True,
                "position_tpsl": False, "edit_orders": False}

    def _enable_demo(self, ex: Any) -> None:
        ex.set_sandbox_mode(True)  # simulated trading: x-simulated-trading: 1

    def _venue_order_params(self, req: OrderRequest, params: dict[str, Any]) -> None:
        leg = self._position_side(req)
        mode = self.margin_mode(req.symbol, leg)
        if mode is None:
            # an entry may open the other leg: it shares the symbol's known margin mode
            mode = self.margin_mode(req.symbol, Side.SHORT if leg is Side.LONG else Side.LONG)
        if mode is not None:
            params["marginMode"] = mode  # → tdMode
        if self.is_hedged(req.symbol):
            params["positionSide"] = leg.value  # → posSide; reduce-only is the leg's close
            params.pop("reduceOnly", None)
        if req.type in _TRIGGER_TYPES:
            params["algoClOrdId"] = req.client_id  # algo orders are found by algoClOrdId
            ref = "mark" if req.trigger_ref == "mark" else "last"
            key = "slTriggerPxType" if req.type is OrderType.STOP_MARKET else "tpTriggerPxType"
            params[key] = ref

    def _open_order_queries(self, symbol: str | None) -> list[dict[str, Any]]:
        return [{}, {"trigger": True, "ordType": "conditional"},
                {"trigger": True, "ordType": "oco"}]

    async def _open_order_rows(self, ex: Any, symbol: str | None,
                               query: Mapping[str, Any]) -> list[Any]:
        """OKX lists pending orders (orders-pending, orders-algo-pending) newest first, at
        most 100 to a page; older ones are behind the `after` cursor: the oldest ordId
        (algo listings: algoId) of the page. ccxt's `paginate` here walks by time through
        an `until` OKX does not know, so the cursor is followed here, page by page."""
        rows: list[Any] = []
        after: str | None = None
        for _ in range(self._OPEN_PAGES):
            params = dict(query)
            if after is not None:
                params["after"] = after
            page = list(await self._rest(
                lambda p=params: ex.fetch_open_orders(symbol, None, self._OPEN_PAGE, dict(p)),
                f"fetch_open_orders{dict(query) or ''}") or [])
            rows += page
            if len(page) < self._OPEN_PAGE:
                return rows
            last = vm.info_of(page[-1])
            cursor = str(last.get("algoId") if query.get("trigger") else
                         last.get("ordId") or "")
            if not cursor or cursor == after:
                return rows
            after = cursor
        log.warning("okx: more than %d open orders in one listing %s; the rest is not read",
                    self._OPEN_PAGES * self._OPEN_PAGE, dict(query))
        return rows

    def _extra_order_watches(self) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        ex = self._client()
        return [("algo orders", lambda: ex.watch_orders(None, None, None, {"trigger": True}))]

    def _cached_orders(self, ex: Any) -> list[Mapping[str, Any]]:
        return list(getattr(ex, "triggerOrders", None) or []) + \
            list(getattr(ex, "orders", None) or [])

    def _leverage_params(self, symbol: str) -> list[dict[str, Any]]:
        modes = {self.margin_mode(symbol, s) for s in (Side.LONG, Side.SHORT)} - {None}
        mode = modes.pop() if len(modes) == 1 else "cross"
        if mode == "isolated" and self.is_hedged(symbol):
            return [{"marginMode": mode, "posSide": leg} for leg in ("long", "short")]
        return [{"marginMode": mode}]
