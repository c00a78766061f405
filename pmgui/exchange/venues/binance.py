"""Binance USDⓈ-M futures: algo (conditional) orders, dual-side position mode, listen keys.

- Hedge mode (`dualSidePosition`): every order names its leg (`positionSide` LONG/SHORT)
  and must not carry `reduceOnly` (Binance refuses it in hedge mode); a close is the
  opposite side on the same leg.
- Stops and take-profits are algo orders (their own ids; `trigger: True` to fetch/cancel),
  triggered on `workingType` MARK_PRICE or CONTRACT_PRICE (= last).
- Isolated/cross is per symbol (`marginType`), read from every position listing.
- Demo: Binance's demo trading (binanceusdm has no sandbox any more).
"""

from __future__ import annotations

from typing import Any

from pmgui.domain.enums import Side
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import _TRIGGER_TYPES, CcxtExchange


class BinanceUsdmExchange(CcxtExchange):
    algo_orders = True

    def venue_capabilities(self, ex: Any) -> dict[str, Any]:
        return {"hedge_mode": True, "isolated_margin": True, "mark_trigger": True,
                "position_tpsl": False}

    def _venue_order_params(self, req: OrderRequest, params: dict[str, Any]) -> None:
        if req.type in _TRIGGER_TYPES:
            params["workingType"] = "MARK_PRICE" if req.trigger_ref == "mark" \
                else "CONTRACT_PRICE"
        if self.is_hedged(req.symbol):
            leg = self._position_side(req)
            params["positionSide"] = "LONG" if leg is Side.LONG else "SHORT"
            params.pop("reduceOnly", None)  # -1106 in hedge mode: the leg says it
