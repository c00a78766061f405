"""ccxt's unified dicts → pmgui's domain objects: pure functions, no ccxt, no I/O.

Every venue reports the same things in its own words; ccxt unifies most of it, and what it
leaves in `info` is read here, per venue, in one place:

- a position's side, margin mode and account mode (Binance `positionSide` / `marginType`,
  Bybit `positionIdx` / `tradeMode`, OKX `posSide` / `mgnMode`) and the position TP/SL a
  venue keeps on the position itself (Bybit `stopLoss` / `takeProfit`);
- whether an order is a conditional (algo) order, recognised by the *value* of its algo id
  (OKX sends `"algoId": ""` on every regular order), and which algo order a triggered
  order belongs to (the order an OKX algo creates carries `algoId`/`algoClOrdId`, not our
  client id);
- order status, including the algo states ccxt does not unify.

Tested with payloads recorded from the venues (tests/test_venue_mapping.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pmgui.domain.enums import OrderStatus, OrderType, Side
from pmgui.exchange.base import ExchangePosition


def num(value: Any) -> float | None:
    """A finite float or None: nothing NaN/inf leaves this module."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def pos_num(value: Any) -> float | None:
    x = num(value)
    return x if x is not None and x > 0 else None


def wallet_of(venue: str, raw: Mapping[str, Any], settle: str) -> float | None:
    """The `settle` currency's wallet balance (realized P/L only) from a ccxt balance's raw
    answer, where ccxt's `total` is an equity that already holds the open P/L; None where
    ccxt's `total` is the wallet (Bybit's `walletBalance`, the paper venue).

    - binance (USDⓈ-M): ccxt's `total` is the asset's `marginBalance` (wallet + unrealized);
      `walletBalance` is the wallet.
    - okx: ccxt's `total` is the currency's `eq` (cash + `upl`); `cashBal` is the wallet.

    Without this the engine, which adds the positions' open P/L for the equity, counted it
    twice, and the wallet shown held it."""
    info = raw.get("info")
    if not isinstance(info, Mapping):
        return None
    if venue.startswith("binance"):
        rows, key, field = info.get("assets"), "asset", "walletBalance"
    elif venue == "okx":
        data = info.get("data")
        first = data[0] if isinstance(data, list) and data else None
        rows = first.get("details") if isinstance(first, Mapping) else None
        key, field = "ccy", "cashBal"
    else:
        return None
    for row in rows if isinstance(rows, list) else ():
        if isinstance(row, Mapping) and row.get(key) == settle:
            return num(row.get(field))
    return None


def info_of(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    info = raw.get("info")
    return info if isinstance(info, Mapping) else {}


# ---------------------------------------------------------------------------- positions

def margin_mode_of(venue: str, p: Mapping[str, Any],
                   account_margin_mode: str | None = None) -> str | None:
    """"cross" | "isolated" for one ccxt position, None when the venue does not say."""
    info = info_of(p)
    mode = str(p.get("marginMode") or "").lower()
    if venue.startswith("binance"):
        mode = mode or str(info.get("marginType") or "").lower()
        if not mode and "isolated" in info:
            mode = "isolated" if str(info.get("isolated")).lower() == "true" else "cross"
    elif venue == "bybit":
        # unified accounts: the account's margin mode; classic accounts: tradeMode 1
        raw_mode = info.get("tradeMode")
        trade_mode = "" if raw_mode is None else str(raw_mode)
        if trade_mode == "1":
            mode = "isolated"
        elif account_margin_mode:
            mode = account_margin_mode
        else:
            mode = mode or ("cross" if trade_mode == "0" else "")
    elif venue == "okx":
        mode = str(info.get("mgnMode") or mode).lower()
    if mode in ("crossed", "cross"):
        return "cross"
    if mode == "isolated":
        return "isolated"
    return None


def hedged_of(venue: str, p: Mapping[str, Any]) -> bool:
    """The position is one leg of a hedge-mode (long/short) account."""
    info = info_of(p)
    if venue.startswith("binance"):
        side = str(info.get("positionSide") or "").upper()
        if side:
            return side in ("LONG", "SHORT")
    elif venue == "bybit":
        idx = str(info.get("positionIdx") if info.get("positionIdx") is not None else "")
        if idx:
            return idx in ("1", "2")
    elif venue == "okx":
        side = str(info.get("posSide") or "").lower()
        if side:
            return side in ("long", "short")
    return bool(p.get("hedged"))


def side_of(venue: str, p: Mapping[str, Any]) -> Side | None:
    raw = str(p.get("side") or "").lower()
    if raw in ("long", "short"):
        return Side(raw)
    info = info_of(p)
    if venue == "okx":
        pos_side = str(info.get("posSide") or "").lower()
        if pos_side in ("long", "short"):
            return Side(pos_side)
        amount = num(info.get("pos"))
        if amount:
            return Side.LONG if amount > 0 else Side.SHORT
    if venue == "bybit":
        s = str(info.get("side") or "")
        return {"Buy": Side.LONG, "Sell": Side.SHORT}.get(s)
    if venue.startswith("binance"):
        amount = num(info.get("positionAmt"))
        if amount:
            return Side.LONG if amount > 0 else Side.SHORT
    return None


def leverage_of(p: Mapping[str, Any]) -> float:
    lev = pos_num(p.get("leverage"))
    if lev is None:
        imp = pos_num(p.get("initialMarginPercentage"))
        lev = round(1.0 / imp, 2) if imp else None
    if lev is None:
        notional, im = pos_num(abs(num(p.get("notional")) or 0.0)), pos_num(p.get("initialMargin"))
        lev = round(notional / im, 2) if notional and im else None
    return lev or 1.0


def position_tpsl(venue: str, p: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(sl, tp) the venue keeps on the position itself (Bybit trading-stop), if any."""
    if venue != "bybit":
        return None, None
    info = info_of(p)
    sl = pos_num(p.get("stopLossPrice")) or pos_num(info.get("stopLoss"))
    tp = pos_num(p.get("takeProfitPrice")) or pos_num(info.get("takeProfit"))
    return sl, tp


def position_from(venue: str, p: Mapping[str, Any],
                  account_margin_mode: str | None = None) -> ExchangePosition | None:
    """One ccxt position as pmgui sees it; None for an empty or unreadable row."""
    qty = pos_num(p.get("contracts"))
    if qty is None:
        qty = pos_num(abs(num(info_of(p).get("pos")) or 0.0)) if venue == "okx" else None
    entry = pos_num(p.get("entryPrice"))
    symbol = p.get("symbol")
    side = side_of(venue, p)
    if qty is None or entry is None or not symbol or side is None:
        return None
    sl, tp = position_tpsl(venue, p)
    ts = pos_num(p.get("timestamp"))
    return ExchangePosition(
        symbol=str(symbol), side=side, qty=qty, entry=entry, leverage=leverage_of(p),
        liquidation=pos_num(p.get("liquidationPrice")), mark=pos_num(p.get("markPrice")),
        unrealized_pnl=num(p.get("unrealizedPnl")),
        opened_at=ts / 1000.0 if ts else None,
        margin_mode=margin_mode_of(venue, p, account_margin_mode),
        hedged=hedged_of(venue, p), sl=sl, tp=tp)


# ---------------------------------------------------------------------------- orders

_OKX_ALGO_TYPES = {"conditional", "oco", "trigger", "move_order_stop", "twap", "iceberg",
                   "chase"}


def _okx_is_algo(info: Mapping[str, Any]) -> bool:
    """An OKX algo record: an algo id *value* and an algo order type (the regular order an
    algo created carries the same algoId but its own ordType and ordId)."""
    aid = str(info.get("algoId") or "")
    if not aid:
        return False
    otype = str(info.get("ordType") or "")
    if otype:
        return otype in _OKX_ALGO_TYPES
    return not str(info.get("ordId") or "") or "accFillSz" not in info


def order_id_of(venue: str, o: Mapping[str, Any]) -> str | None:
    """The venue's id of this order (ccxt gives a triggered OKX order its algo's id)."""
    if venue == "okx":
        info = info_of(o)
        if info and not _okx_is_algo(info) and info.get("ordId"):
            return str(info["ordId"])
    oid = o.get("id")
    return str(oid) if oid is not None and oid != "" else None


def algo_id_of(venue: str, o: Mapping[str, Any]) -> str | None:
    """The algo id when `o` *is* a conditional (algo) order, by value, never by key."""
    info = info_of(o)
    if venue.startswith("binance"):
        aid = str(info.get("algoId") or info.get("aid") or "")
        return aid if aid and aid != "0" else None
    if venue == "okx":
        return str(info["algoId"]) if _okx_is_algo(info) else None
    return None


def algo_parent_of(venue: str, o: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(algo id, algo client id) of the conditional order that created regular order `o`."""
    info = info_of(o)
    if venue == "okx" and info.get("algoId") and not _okx_is_algo(info):
        return str(info["algoId"]), (str(info.get("algoClOrdId") or "") or None)
    return None, None


def algo_child_of(o: Mapping[str, Any]) -> str | None:
    """The regular order a triggered algo order created (Binance `ai`/`actualOrderId`, OKX
    `ordId` of a triggered algo)."""
    info = info_of(o)
    child = str(info.get("ai") or info.get("actualOrderId") or "")
    if not child and info.get("algoId") and _okx_is_algo(info):
        child = str(info.get("ordId") or "")
        ord_ids = info.get("ordIdList")
        if not child and isinstance(ord_ids, list) and ord_ids:
            child = str(ord_ids[0] or "")
    return child if child and child != "0" else None


# a conditional order that fired: its market order exists (or is being created); the algo
# record itself never carries that order's fill (Binance algo REST: no executed quantity;
# OKX: no accFillSz), so "fired" says nothing about what was executed, nor at what price
_ALGO_FIRED = frozenset({"TRIGGERING", "TRIGGERED", "FINISHED",  # binance algoStatus / X
                         "partially_effective", "effective"})  # okx algo state


def algo_fired(venue: str, o: Mapping[str, Any]) -> bool:
    """`o` is a conditional (algo) order that triggered: its fill is its market child's
    (`algo_child_of`), which only a lookup of that order by id tells."""
    if algo_id_of(venue, o) is None:
        return False
    info = info_of(o)
    state = str(info.get("X") or info.get("algoStatus") or info.get("state") or "")
    return state in _ALGO_FIRED or (state in ("CANCELED", "EXPIRED", "canceled")
                                    and algo_child_of(o) is not None)


_ALGO_STATES = {
    # binance algo (X / algoStatus)
    "TRIGGERING": OrderStatus.OPEN, "TRIGGERED": OrderStatus.OPEN,
    "FINISHED": OrderStatus.FILLED,
    # okx algo (state)
    "live": OrderStatus.OPEN, "partially_effective": OrderStatus.OPEN,
    "effective": OrderStatus.FILLED, "order_failed": OrderStatus.REJECTED,
    "canceled": OrderStatus.CANCELED,
}

_CCXT_STATES = {"open": OrderStatus.OPEN, "closed": OrderStatus.FILLED,
                "canceled": OrderStatus.CANCELED, "cancelled": OrderStatus.CANCELED,
                "rejected": OrderStatus.REJECTED, "expired": OrderStatus.EXPIRED}


def status_of(venue: str, o: Mapping[str, Any], default: OrderStatus) -> OrderStatus:
    info = info_of(o)
    if algo_id_of(venue, o) is not None:
        state = str(info.get("X") or info.get("algoStatus") or info.get("state") or "")
        if state in _ALGO_STATES:
            return _ALGO_STATES[state]
    if venue == "bybit":
        # a Bybit conditional order that fired: its market order is working
        if str(info.get("orderStatus") or "") == "Triggered":
            return OrderStatus.OPEN
    s = o.get("status")
    return _CCXT_STATES.get(str(s).lower() if s else "", default)


def order_fee_of(venue: str, o: Mapping[str, Any], settle: str) -> float | None:
    """The venue's cumulative fee for everything order `o` executed, in the settlement
    currency (negative: a rebate); None when the record does not say it (or says it in
    another asset). Not Binance's order `fee`: that is its last trade's (`n`) only."""
    fee = o.get("fee")
    if isinstance(fee, Mapping) and num(fee.get("cost")) is not None:
        return num(fee.get("cost")) if fee.get("currency") in (None, settle) else None
    if venue == "bybit":  # ccxt reads cumFeeDetail only; cumExecFee is in the settle coin
        return num(info_of(o).get("cumExecFee"))
    return None


def order_type_of(venue: str, o: Mapping[str, Any]) -> OrderType:
    info = info_of(o)
    raw = ""
    if venue.startswith("binance"):
        raw = str(info.get("type") or info.get("orderType") or info.get("origType")
                  or info.get("o") or info.get("ot") or "")
    elif venue == "bybit":
        kind = str(info.get("stopOrderType") or "")
        if kind in ("TakeProfit", "PartialTakeProfit"):
            return OrderType.TAKE_PROFIT_MARKET
        if kind in ("StopLoss", "PartialStopLoss"):
            return OrderType.STOP_MARKET
        direction = str(info.get("triggerDirection") or "")
        side = str(info.get("side") or o.get("side") or "").lower()
        if kind == "Stop" and direction in ("1", "2") and side in ("buy", "sell"):
            # a sell waiting for a fall (2) or a buy waiting for a rise (1) is a stop
            falling = direction == "2"
            return OrderType.STOP_MARKET if falling == (side == "sell") \
                else OrderType.TAKE_PROFIT_MARKET
    elif venue == "okx" and algo_id_of(venue, o) is not None:
        if pos_num(info.get("slTriggerPx")):
            return OrderType.STOP_MARKET
        if pos_num(info.get("tpTriggerPx")):
            return OrderType.TAKE_PROFIT_MARKET
    raw = (raw or str(o.get("type") or "")).lower()
    if "take_profit" in raw or pos_num(o.get("takeProfitPrice")):
        return OrderType.TAKE_PROFIT_MARKET
    if "stop" in raw or pos_num(o.get("stopLossPrice")) or pos_num(o.get("triggerPrice")) \
            or pos_num(o.get("stopPrice")):
        return OrderType.STOP_MARKET
    return OrderType.LIMIT if raw == "limit" else OrderType.MARKET


def client_id_of(venue: str, o: Mapping[str, Any]) -> str:
    """The client id pmgui gave the order (OKX algo: algoClOrdId)."""
    cid = str(o.get("clientOrderId") or "")
    if not cid:
        info = info_of(o)
        cid = str(info.get("algoClOrdId") or info.get("orderLinkId")
                  or info.get("clientAlgoId") or info.get("caid") or "")
    return cid


def position_side_for(side: str, reduce_only: bool) -> Side:
    """Which leg an order belongs to: a buy opens a long and closes a short."""
    buy = side.lower() == "buy"
    return Side.LONG if buy != reduce_only else Side.SHORT


def reduce_only_of(venue: str, o: Mapping[str, Any]) -> bool | None:
    """Whether the order closes (part of) a position. In hedge mode the venues drop the
    reduce-only flag: an order on the opposite side of its leg is the close."""
    if o.get("reduceOnly"):
        return True
    info = info_of(o)
    side = str(o.get("side") or info.get("side") or "").lower()
    leg = ""
    if venue.startswith("binance"):
        leg = str(info.get("positionSide") or info.get("ps") or "").lower()
    elif venue == "bybit":
        leg = {"1": "long", "2": "short"}.get(str(info.get("positionIdx", "")), "")
    elif venue == "okx":
        leg = str(info.get("posSide") or "").lower()
    if leg in ("long", "short") and side in ("buy", "sell"):
        return (leg == "long") == (side == "sell")
    if o.get("reduceOnly") is not None:
        return bool(o.get("reduceOnly"))
    return None


def trigger_ref_of(venue: str, o: Mapping[str, Any]) -> str | None:
    """The price a resting stop / take-profit triggers on, as the venue reports it."""
    info = info_of(o)
    raw = str(info.get("workingType") or info.get("wt") or info.get("triggerBy")
              or info.get("slTriggerPxType") or info.get("tpTriggerPxType") or "").lower()
    if raw in ("mark_price", "markprice", "mark"):
        return "mark"
    if raw in ("contract_price", "lastprice", "last"):
        return "last"
    return None
