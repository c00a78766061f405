"""Bybit and OKX request/response shapes through ccxt's `fetch` override.

The real ccxt classes build and sign the requests; `fetch` is replaced by a router that
answers with the JSON the venues document (Bybit v5, OKX v5) and records what was sent, so
the tests check both directions: what pmgui asks for and how the answer is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from pmgui.domain import errors as pe
from pmgui.domain.enums import OrderSide, OrderStatus, OrderType, Side
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.credentials import Credentials

BTC = "BTC/USDT:USDT"
NOW = 1_763_000_000_000

Handler = Callable[[str, dict[str, Any]], Any]


class Router:
    """Answers ccxt's HTTP calls by (method, path); records (method, path, params)."""

    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, url: str, method: str = "GET", headers: Any = None,
                       body: Any = None) -> Any:
        parts = urlsplit(url)
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        if body:
            params.update(json.loads(body) if body.strip().startswith("{") else
                          dict(parse_qsl(body)))
        self.calls.append((method, parts.path, params))
        answer = self.routes.get((method, parts.path))
        if answer is None:
            raise AssertionError(f"unexpected request {method} {url}")
        return answer(params) if callable(answer) else answer

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        return [p for m, q, p in self.calls if m == method and q == path]


def bybit_ok(result: Any) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": NOW}


BYBIT_INSTRUMENT = {
    "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
    "baseCoin": "BTC", "quoteCoin": "USDT", "launchTime": "1585526400000",
    "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": "2",
    "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
    "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
    "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                      "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "119.000",
                      "minNotionalValue": "5"},
    "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT",
    "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
    "isPreListing": False, "preListingInfo": None,
}

BYBIT_POSITION = {
    "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": "BTCUSDT",
    "side": "Buy", "size": "0.01", "avgPrice": "50000", "positionValue": "500",
    "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 2,
    "leverage": "10", "positionBalance": "50", "markPrice": "50100", "liqPrice": "45500",
    "bustPrice": "", "positionMM": "2.5", "positionIM": "50", "tpslMode": "Full",
    "takeProfit": "0", "stopLoss": "0", "trailingStop": "0", "unrealisedPnl": "1",
    "curRealisedPnl": "-0.3", "cumRealisedPnl": "-0.3", "seq": 123, "isReduceOnly": False,
    "mmrSysUpdateTime": "", "leverageSysUpdatedTime": "", "sessionAvgPrice": "",
    "createdTime": "1676538056258", "updatedTime": "1697673600012",
}

BYBIT_WALLET = {"list": [{
    "accountType": "UNIFIED", "totalEquity": "10000", "totalWalletBalance": "10000",
    "totalAvailableBalance": "9500", "totalMarginBalance": "10000",
    "totalInitialMargin": "500", "totalMaintenanceMargin": "25", "totalPerpUPL": "0",
    "accountIMRate": "0.05", "accountMMRate": "0.0025", "accountLTV": "0",
    "coin": [{"coin": "USDT", "equity": "10000", "usdValue": "10000",
              "walletBalance": "10000", "free": "", "locked": "0",
              "availableToWithdraw": "9500", "borrowAmount": "0", "accruedInterest": "0",
              "totalOrderIM": "0", "totalPositionIM": "500", "totalPositionMM": "25",
              "unrealisedPnl": "0", "cumRealisedPnl": "0", "bonus": "0",
              "marginCollateral": True, "collateralSwitch": True,
              "spotHedgingQty": "0"}]}]}


def bybit_routes() -> dict[tuple[str, str], Any]:
    def create(params: dict[str, Any]) -> dict[str, Any]:
        return bybit_ok({"orderId": "1321003749386327552",
                         "orderLinkId": params.get("orderLinkId", "")})

    def cancel(params: dict[str, Any]) -> dict[str, Any]:
        return bybit_ok({"orderId": params.get("orderId", "1321003749386327552"),
                         "orderLinkId": params.get("orderLinkId", "")})

    return {
        ("GET", "/v5/asset/coin/query-info"): bybit_ok({"rows": [{
            "name": "USDT", "coin": "USDT", "remainAmount": "5000000", "chains": [{
                "chainType": "ERC20", "confirmation": "12", "withdrawFee": "5",
                "depositMin": "0", "withdrawMin": "10", "chain": "ETH", "chainDeposit": "1",
                "chainWithdraw": "1", "minAccuracy": "6", "withdrawPercentageFee": "0",
                "contractAddress": "0xdac17f958d2ee523a2206206994597c13d831ec7",
                "safeConfirmNumber": "65"}]}]}),
        ("GET", "/v5/market/instruments-info"): bybit_ok(
            {"category": "linear", "list": [BYBIT_INSTRUMENT], "nextPageCursor": ""}),
        ("GET", "/v5/account/wallet-balance"): bybit_ok(BYBIT_WALLET),
        ("GET", "/v5/user/query-api"): bybit_ok({
            "id": "13770661", "note": "pmgui", "apiKey": "k", "readOnly": 0,
            "secret": "", "permissions": {"ContractTrade": ["Order", "Position"],
                                          "Spot": [], "Wallet": [], "Options": [],
                                          "Derivatives": [], "CopyTrading": [],
                                          "BlockTrade": [], "Exchange": [], "NFT": []},
            "ips": ["*"], "type": 1, "deadlineDay": 66, "expiredAt": "", "createdAt": "",
            "unified": 0, "uta": 1, "userID": 24600000, "inviterID": 0, "vipLevel": "No VIP",
            "mktMakerLevel": "0", "affiliateID": 0}),
        ("GET", "/v5/account/info"): bybit_ok({
            "marginMode": "REGULAR_MARGIN", "updatedTime": "1697078946000",
            "unifiedMarginStatus": 4, "dcpStatus": "OFF", "timeWindow": 10,
            "smpGroup": 0, "isMasterTrader": False, "spotHedgingStatus": "OFF"}),
        ("GET", "/v5/position/list"): bybit_ok(
            {"list": [BYBIT_POSITION], "nextPageCursor": "", "category": "linear"}),
        ("POST", "/v5/order/create"): create,
        ("POST", "/v5/order/cancel"): cancel,
    }


async def connect(exchange_id: str, router: Router,
                  creds: Credentials | None = None) -> CcxtExchange:
    """A connected CcxtExchange whose ccxt instance answers through `router`."""
    ex = CcxtExchange(exchange_id, credentials=creds or Credentials("k", "s", "p"),
                      options={"enableRateLimit": False})
    await _connect_with_fetch(ex, router)
    return ex


async def _connect_with_fetch(ex: CcxtExchange, router: Router) -> None:
    import ccxt.pro as ccxtpro

    cls = getattr(ccxtpro, ex.id)

    class Routed(cls):  # type: ignore[misc, valid-type]
        async def fetch(self, url: str, method: str = "GET", headers: Any = None,
                        body: Any = None) -> Any:
            answer = await router(url, method, headers, body)
            # what ccxt's own fetch does with every response: venue error codes → exceptions
            self.handle_errors(200, "OK", url, method, {}, json.dumps(answer), answer,
                               headers, body)
            return answer

    original = getattr(ccxtpro, ex.id)
    setattr(ccxtpro, ex.id, Routed)
    try:
        await ex.connect()
    finally:
        setattr(ccxtpro, ex.id, original)


# ---------------------------------------------------------------------------------- bybit
async def test_bybit_markets_positions_conditional_orders_and_cancel() -> None:
    router = Router(bybit_routes())
    ex = await connect("bybit", router)
    try:
        m = ex.markets()[BTC]
        assert (m.tick_size, m.amount_step, m.min_amount, m.min_notional, m.max_leverage) == \
            (0.1, 0.001, 0.001, 5.0, 100)
        (p,) = await ex.fetch_positions()
        assert (p.symbol, p.side, p.qty, p.entry, p.leverage, p.liquidation) == \
            (BTC, Side.LONG, 0.01, 50000.0, 10.0, 45500.0)

        sl = await ex.create_order(OrderRequest("pm-bb-sl", BTC, OrderSide.SELL,
                                                OrderType.STOP_MARKET, 0.01,
                                                trigger_price=49000.04, reduce_only=True))
        sent = router.sent("POST", "/v5/order/create")[-1]
        assert sent["category"] == "linear" and sent["symbol"] == "BTCUSDT"
        assert sent["side"] == "Sell" and sent["orderType"] == "Market"
        assert sent["qty"] == "0.01" and sent["orderLinkId"] == "pm-bb-sl"
        assert sent["reduceOnly"] is True
        assert sent["triggerPrice"] == "49000" and sent["triggerDirection"] == 2  # falls to
        assert sl.client_id == "pm-bb-sl" and sl.type is OrderType.STOP_MARKET
        assert sl.trigger_price == 49000.0 and sl.status is OrderStatus.OPEN
        assert sl.exchange_id == "1321003749386327552"

        await ex.create_order(OrderRequest("pm-bb-tp", BTC, OrderSide.SELL,
                                           OrderType.TAKE_PROFIT_MARKET, 0.01,
                                           trigger_price=52000, reduce_only=True))
        tp_sent = router.sent("POST", "/v5/order/create")[-1]
        assert tp_sent["triggerPrice"] == "52000" and tp_sent["triggerDirection"] == 1

        done = await ex.cancel_order(sl)
        cancel_sent = router.sent("POST", "/v5/order/cancel")[-1]
        assert cancel_sent["orderId"] == "1321003749386327552"
        assert cancel_sent["category"] == "linear" and cancel_sent["symbol"] == "BTCUSDT"
        assert done.status is OrderStatus.CANCELED and done.client_id == "pm-bb-sl"
    finally:
        await ex.close()


async def test_bybit_trigger_rejection_and_insufficient_balance() -> None:
    routes = bybit_routes()
    replies = iter([
        {"retCode": 110093, "retMsg": "expect Falling, but trigger_price[51000] >= "
         "current[50000]??LastPrice", "result": {}, "retExtInfo": {}, "time": NOW},
        {"retCode": 110007, "retMsg": "ab not enough for new order", "result": {},
         "retExtInfo": {}, "time": NOW},
    ])
    routes[("POST", "/v5/order/create")] = lambda params: next(replies)
    router = Router(routes)
    ex = await connect("bybit", router)
    try:
        with pytest.raises(pe.OrderWouldTriggerImmediately):
            await ex.create_order(OrderRequest("bb-x", BTC, OrderSide.SELL,
                                               OrderType.STOP_MARKET, 0.01,
                                               trigger_price=51000, reduce_only=True))
        with pytest.raises(pe.InsufficientFunds):
            await ex.create_order(OrderRequest("bb-y", BTC, OrderSide.BUY,
                                               OrderType.MARKET, 1.0))
        assert len(router.sent("POST", "/v5/order/create")) == 2  # never retried
    finally:
        await ex.close()


# ---------------------------------------------------------------------------------- okx
def okx_ok(data: Any) -> dict[str, Any]:
    return {"code": "0", "msg": "", "data": data}


OKX_INSTRUMENT = {
    "alias": "", "baseCcy": "", "category": "1", "ctMult": "1", "ctType": "linear",
    "ctVal": "0.01", "ctValCcy": "BTC", "expTime": "", "instFamily": "BTC-USDT",
    "instId": "BTC-USDT-SWAP", "instType": "SWAP", "lever": "100",
    "listTime": "1573557408000", "lotSz": "0.01", "maxIcebergSz": "100000000",
    "maxLmtAmt": "20000000", "maxLmtSz": "100000000", "maxMktAmt": "", "maxMktSz": "12000",
    "maxStopSz": "12000", "maxTriggerSz": "100000000", "maxTwapSz": "100000000",
    "minSz": "0.01", "optType": "", "quoteCcy": "", "settleCcy": "USDT", "state": "live",
    "stk": "", "tickSz": "0.1", "uly": "BTC-USDT", "ruleType": "normal",
}

OKX_POSITION = {
    "adl": "1", "availPos": "", "avgPx": "50000", "cTime": "1619507758793", "ccy": "USDT",
    "deltaBS": "", "deltaPA": "", "gammaBS": "", "gammaPA": "", "imr": "50",
    "instId": "BTC-USDT-SWAP", "instType": "SWAP", "interest": "0", "idxPx": "50010",
    "last": "50100", "lever": "10", "liab": "", "liabCcy": "", "liqPx": "55200.5",
    "markPx": "50100", "margin": "", "mgnMode": "cross", "mgnRatio": "120",
    "mmr": "2.5", "notionalUsd": "501", "optVal": "", "pTime": "1619507761462",
    "pos": "-2", "posCcy": "", "posId": "307173036051017730", "posSide": "net",
    "thetaBS": "", "thetaPA": "", "tradeId": "109844", "uTime": "1619507761462",
    "upl": "-2", "uplRatio": "-0.04", "vegaBS": "", "vegaPA": "", "realizedPnl": "0",
    "pnl": "0", "fee": "0", "fundingFee": "0", "bePx": "50000", "uplLastPx": "-2",
    "closeOrderAlgo": [], "baseBal": "", "quoteBal": "", "spotInUseAmt": "",
    "spotInUseCcy": "", "bizRefId": "", "bizRefType": "", "clSpotInUseAmt": "",
    "maxSpotInUseAmt": "", "usdPx": "", "nonSettleAvgPx": "", "settledPnl": "",
    "pendingCloseOrdLiabVal": "", "realizedPnlLastPx": "",
}

OKX_BALANCE = [{
    "adjEq": "", "borrowFroz": "", "imr": "50", "isoEq": "0", "mgnRatio": "120",
    "mmr": "2.5", "notionalUsd": "501", "ordFroz": "0", "totalEq": "9998",
    "uTime": "1705474164160", "upl": "-2",
    "details": [{"availBal": "9950", "availEq": "9950", "cashBal": "10000", "ccy": "USDT",
                 "crossLiab": "0", "disEq": "9998", "eq": "9998", "eqUsd": "9998",
                 "fixedBal": "0", "frozenBal": "50", "imr": "50", "interest": "0",
                 "isoEq": "0", "isoLiab": "0", "isoUpl": "0", "liab": "0", "maxLoan": "0",
                 "mgnRatio": "", "mmr": "2.5", "notionalLever": "", "ordFrozen": "0",
                 "spotInUseAmt": "", "stgyEq": "0", "twap": "0", "uTime": "1705474164160",
                 "upl": "-2", "uplLiab": "0"}],
}]


def okx_routes() -> dict[tuple[str, str], Any]:
    def create_algo(params: dict[str, Any]) -> dict[str, Any]:
        return okx_ok([{"algoId": "681096944655273984", "clOrdId": "",
                        "algoClOrdId": params.get("algoClOrdId", ""), "sCode": "0",
                        "sMsg": "", "tag": ""}])

    def cancel_algo(params: Any) -> dict[str, Any]:
        return okx_ok([{"algoId": "681096944655273984", "sCode": "0", "sMsg": ""}])

    return {
        ("GET", "/api/v5/asset/currencies"): okx_ok([{
            "canDep": True, "canInternal": True, "canWd": True, "ccy": "USDT",
            "chain": "USDT-TRC20", "depQuotaFixed": "", "depQuoteDailyLayer2": "",
            "logoLink": "", "mainNet": False, "maxFee": "1.6", "maxFeeForCtAddr": "1.6",
            "maxWd": "8852150", "minDep": "0.00005", "minDepArrivalConfirm": "2",
            "minFee": "0.8", "minFeeForCtAddr": "0.8", "minWd": "2",
            "minWdUnlockConfirm": "4", "name": "Tether", "needTag": False,
            "usedDepQuotaFixed": "", "usedWdQuota": "0", "wdQuota": "10000000",
            "wdTickSz": "4"}]),
        ("GET", "/api/v5/public/instruments"): okx_ok([OKX_INSTRUMENT]),
        ("GET", "/api/v5/account/balance"): okx_ok(OKX_BALANCE),
        ("GET", "/api/v5/account/positions"): okx_ok([OKX_POSITION]),
        ("POST", "/api/v5/trade/order-algo"): create_algo,
        ("POST", "/api/v5/trade/cancel-algos"): cancel_algo,
    }


async def test_okx_markets_positions_conditional_orders_and_cancel() -> None:
    router = Router(okx_routes())
    ex = await connect("okx", router)
    try:
        m = ex.markets()[BTC]
        assert (m.tick_size, m.amount_step, m.min_amount, m.contract_size) == \
            (0.1, 0.01, 0.01, 0.01)
        (p,) = await ex.fetch_positions()
        assert (p.symbol, p.side, p.qty, p.entry, p.leverage, p.liquidation) == \
            (BTC, Side.SHORT, 2.0, 50000.0, 10.0, 55200.5)

        sl = await ex.create_order(OrderRequest("pmokxsl1", BTC, OrderSide.BUY,
                                                OrderType.STOP_MARKET, 2,
                                                trigger_price=51000, reduce_only=True))
        sent = router.sent("POST", "/api/v5/trade/order-algo")[-1]
        assert sent["instId"] == "BTC-USDT-SWAP" and sent["side"] == "buy"
        assert sent["ordType"] == "conditional" and sent["sz"] == "2"
        assert sent["slTriggerPx"] == "51000" and sent["slOrdPx"] == "-1"
        assert sent["reduceOnly"] is True
        assert sent["algoClOrdId"] == "pmokxsl1" and sent["clOrdId"] == "pmokxsl1"
        assert sl.client_id == "pmokxsl1" and sl.type is OrderType.STOP_MARKET
        assert sl.exchange_id == "681096944655273984" and sl.trigger_price == 51000.0

        done = await ex.cancel_order(sl)
        cancel_sent = router.calls[-1]
        assert cancel_sent[1] == "/api/v5/trade/cancel-algos"
        assert done.status is OrderStatus.CANCELED
    finally:
        await ex.close()


async def test_okx_trigger_rejection_is_recognised() -> None:
    routes = okx_routes()
    routes[("POST", "/api/v5/trade/order-algo")] = {
        "code": "1", "msg": "Operation failed.",
        "data": [{"algoId": "", "clOrdId": "", "algoClOrdId": "pmokx2", "sCode": "51280",
                  "sMsg": "SL trigger price must be less than the last price", "tag": ""}]}
    router = Router(routes)
    ex = await connect("okx", router)
    try:
        with pytest.raises(pe.OrderWouldTriggerImmediately):
            await ex.create_order(OrderRequest("pmokx2", BTC, OrderSide.SELL,
                                               OrderType.STOP_MARKET, 2,
                                               trigger_price=51000, reduce_only=True))
    finally:
        await ex.close()


async def test_okx_without_passphrase_is_a_clear_auth_error() -> None:
    ex = CcxtExchange("okx", credentials=Credentials("k", "s", None))
    with pytest.raises(pe.AuthenticationError, match="password"):
        await ex.connect()



async def test_okx_balance_is_the_wallet_not_the_equity_with_the_open_pnl() -> None:
    """ccxt's `total` is the currency's `eq` (cash + upl): the engine, adding the positions'
    open P/L for the equity, counted it twice. The wallet is `cashBal`."""
    ex = await connect("okx", Router(okx_routes()))
    try:
        bal = await ex.fetch_balance()
        assert (bal.currency, bal.total) == ("USDT", 10000.0)
    finally:
        await ex.close()


async def test_bybit_balance_stays_its_wallet_balance() -> None:
    ex = await connect("bybit", Router(bybit_routes()))
    try:
        bal = await ex.fetch_balance()
        assert (bal.currency, bal.total) == ("USDT", 10000.0)
    finally:
        await ex.close()
