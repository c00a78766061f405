"""pmgui.exchange.venues.mapping against venue payloads run through ccxt's own parsers.

The raw payloads are modelled on the venues' documented and recorded responses (Bybit v5,
OKX v5, Binance USDⓈ-M; cf. ccxt's recorded fixtures, MIT,
ts/src/test/static/response/<exchange>.json): what each venue really sends, including the
traps (OKX sends `"algoId": ""` on every regular order; the order an OKX algo creates
carries the algo's id and client id but an empty clOrdId; ccxt gives that order the algo's
id).
"""

from __future__ import annotations

import ccxt
import pytest

from pmgui.domain import errors as pe
from pmgui.domain.enums import OrderStatus, OrderType, Side
from pmgui.exchange.retry import map_error
from pmgui.exchange.venues import mapping as vm
from pmgui.exchange.venues.codes import table_for
from tests.test_ccxt_bybit_okx import BYBIT_POSITION, OKX_INSTRUMENT, OKX_POSITION

BTC = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def okx() -> ccxt.okx:
    ex = ccxt.okx()
    ex.set_markets([ex.parse_market(OKX_INSTRUMENT)])
    return ex


OKX_ALGO = {  # orders-algo push / orders-algo-pending row of a conditional stop
    "actualPx": "", "actualSide": "", "actualSz": "0", "algoClOrdId": "pmgSL1",
    "algoId": "681096944655273984", "amendPxOnTriggerType": "", "attachAlgoOrds": [],
    "cTime": "1724751378980", "clOrdId": "", "closeFraction": "", "failCode": "",
    "instId": "BTC-USDT-SWAP", "instType": "SWAP", "last": "", "lever": "10",
    "ordId": "", "ordIdList": [], "ordPx": "", "ordType": "conditional", "posSide": "long",
    "reduceOnly": "false", "side": "sell", "slOrdPx": "-1", "slTriggerPx": "49500",
    "slTriggerPxType": "mark", "state": "live", "sz": "2", "tag": "", "tdMode": "isolated",
    "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "triggerPx": "",
    "triggerPxType": "", "triggerTime": "", "uTime": "1724751378980"}

OKX_CHILD = {  # orders push of the market order that algo created when it fired
    "accFillSz": "2", "algoClOrdId": "pmgSL1", "algoId": "681096944655273984",
    "attachAlgoClOrdId": "", "attachAlgoOrds": [], "avgPx": "49490", "cTime": "1724751400000",
    "category": "normal", "ccy": "", "clOrdId": "", "fee": "-0.049", "feeCcy": "USDT",
    "fillPx": "49490", "fillSz": "2", "fillTime": "1724751400001",
    "instId": "BTC-USDT-SWAP", "instType": "SWAP", "lever": "10", "ordId": "1723001",
    "ordType": "market", "pnl": "-0.2", "posSide": "long", "px": "", "reduceOnly": "false",
    "side": "sell", "state": "filled", "sz": "2", "tag": "", "tdMode": "isolated",
    "tradeId": "99", "uTime": "1724751400001"}

OKX_REGULAR = {**OKX_CHILD, "algoId": "", "algoClOrdId": "", "clOrdId": "pmgTP9",
               "ordId": "1723002", "state": "live", "accFillSz": "0", "avgPx": "",
               "ordType": "limit", "px": "51000"}


def test_okx_algo_recognised_by_value_and_its_child_mapped_back(okx: ccxt.okx) -> None:
    algo = okx.parse_order(OKX_ALGO)
    child = okx.parse_order(OKX_CHILD)
    regular = okx.parse_order(OKX_REGULAR)
    assert child["id"] == OKX_ALGO["algoId"]  # the trap: ccxt's id of the child
    assert vm.algo_id_of("okx", algo) == "681096944655273984"
    assert vm.algo_id_of("okx", child) is None and vm.algo_id_of("okx", regular) is None
    assert vm.order_id_of("okx", child) == "1723001"
    assert vm.order_id_of("okx", algo) == "681096944655273984"
    assert vm.algo_parent_of("okx", child) == ("681096944655273984", "pmgSL1")
    assert vm.algo_parent_of("okx", regular) == (None, None)
    assert vm.client_id_of("okx", algo) == "pmgSL1"
    assert vm.client_id_of("okx", regular) == "pmgTP9"
    assert vm.order_type_of("okx", algo) is OrderType.STOP_MARKET
    assert vm.status_of("okx", algo, OrderStatus.OPEN) is OrderStatus.OPEN
    fired = okx.parse_order({**OKX_ALGO, "state": "effective", "ordId": "1723001",
                             "ordIdList": ["1723001"]})
    assert vm.status_of("okx", fired, OrderStatus.OPEN) is OrderStatus.FILLED
    assert vm.algo_child_of(fired) == "1723001"
    # hedge mode: a sell on the long leg closes it although reduceOnly is "false"
    assert vm.reduce_only_of("okx", algo) is True
    assert vm.reduce_only_of("okx", okx.parse_order({**OKX_REGULAR, "side": "buy"})) is False


def test_okx_positions_margin_mode_and_legs(okx: ccxt.okx) -> None:
    iso_long = okx.parse_position({**OKX_POSITION, "posSide": "long", "pos": "2",
                                   "mgnMode": "isolated"})
    net_short = okx.parse_position(OKX_POSITION)  # net mode, pos -2, cross
    a = vm.position_from("okx", iso_long)
    b = vm.position_from("okx", net_short)
    assert a is not None and b is not None
    assert (a.symbol, a.side, a.qty, a.margin_mode, a.hedged) == \
        (BTC, Side.LONG, 2.0, "isolated", True)
    assert (b.side, b.qty, b.margin_mode, b.hedged, b.liquidation) == \
        (Side.SHORT, 2.0, "cross", False, 55200.5)


def test_bybit_hedge_leg_position_tpsl_and_account_margin_mode() -> None:
    ex = ccxt.bybit()
    short = ex.parse_position({**BYBIT_POSITION, "positionIdx": 2, "side": "Sell",
                               "stopLoss": "51000", "takeProfit": "48000"})
    one_way = ex.parse_position(BYBIT_POSITION)
    p = vm.position_from("bybit", short, account_margin_mode="isolated")
    q = vm.position_from("bybit", one_way)
    assert p is not None and q is not None
    assert (p.side, p.hedged, p.margin_mode, p.sl, p.tp) == \
        (Side.SHORT, True, "isolated", 51000.0, 48000.0)
    assert (q.side, q.hedged, q.margin_mode, q.sl, q.tp) == (Side.LONG, False, "cross", None, None)
    # conditional orders: a sell waiting for a fall is a stop, for a rise a take-profit
    row = {"orderId": "1", "orderLinkId": "pmgX", "symbol": "BTCUSDT", "side": "Sell",
           "orderType": "Market", "orderStatus": "Untriggered", "stopOrderType": "Stop",
           "triggerDirection": 2, "triggerPrice": "49000", "qty": "0.01",
           "positionIdx": 1, "reduceOnly": True, "createdTime": "1", "updatedTime": "1"}
    assert vm.order_type_of("bybit", ex.parse_order(row)) is OrderType.STOP_MARKET
    tp = ex.parse_order({**row, "triggerDirection": 1, "triggerPrice": "52000"})
    assert vm.order_type_of("bybit", tp) is OrderType.TAKE_PROFIT_MARKET
    assert vm.status_of("bybit", ex.parse_order(row), OrderStatus.PENDING) is OrderStatus.OPEN


def test_binance_hedge_isolated_position() -> None:
    ex = ccxt.binanceusdm()
    raw = {"symbol": "BTCUSDT", "positionSide": "SHORT", "positionAmt": "-0.010",
           "entryPrice": "50000", "breakEvenPrice": "50000", "markPrice": "50100",
           "unRealizedProfit": "-1", "liquidationPrice": "55000", "isolatedMargin": "50",
           "notional": "-501", "marginAsset": "USDT", "isolatedWallet": "50",
           "updateTime": 1700000000000, "leverage": "10", "maxNotionalValue": "6000000",
           "marginType": "isolated", "isAutoAddMargin": "false", "isolated": True,
           "adlQuantile": "2"}
    p = vm.position_from("binanceusdm", ex.parse_position_risk(raw))
    assert p is not None
    assert (p.side, p.qty, p.margin_mode, p.hedged, p.leverage) == \
        (Side.SHORT, 0.01, "isolated", True, 10.0)
    algo = {"id": "77", "info": {"algoId": 77, "clientAlgoId": "pmgA", "algoStatus": "NEW"}}
    regular = {"id": "78", "info": {"orderId": 78, "algoId": None}}
    assert vm.algo_id_of("binanceusdm", algo) == "77"
    assert vm.algo_id_of("binanceusdm", regular) is None


@pytest.mark.parametrize(("venue", "code", "kind"), [
    ("bybit", "10001", pe.InvalidOrder), ("bybit", "10002", pe.RetryableExchangeError),
    ("bybit", "110007", pe.InsufficientFunds), ("bybit", "110017", pe.InvalidOrder),
    ("okx", "50102", pe.RetryableExchangeError), ("okx", "51000", pe.InvalidOrder),
    ("okx", "51008", pe.InsufficientFunds), ("okx", "51169", pe.InvalidOrder),
    ("okx", "51170", pe.InvalidOrder), ("binanceusdm", "-1021", pe.RetryableExchangeError),
    ("binanceusdm", "-2019", pe.InsufficientFunds),
    ("binanceusdm", "-2021", pe.OrderWouldTriggerImmediately),
    ("binanceusdm", "-4061", pe.InvalidOrder), ("binanceusdm", "-4164", pe.InvalidOrder),
    ("binanceusdm", "-2020", pe.InvalidOrder), ("binanceusdm", "-2027", pe.InvalidOrder),
    ("binanceusdm", "-2028", pe.InsufficientFunds), ("binanceusdm", "-4131", pe.InvalidOrder),
    ("binanceusdm", "-5022", pe.InvalidOrder),
])
def test_each_venues_codes_map_to_domain_errors(venue: str, code: str, kind: type) -> None:
    assert code in table_for(venue)
    key = {"bybit": "retCode", "okx": "sCode"}.get(venue, "code")
    err = map_error(ccxt.ExchangeError(f'{venue} {{"{key}": "{code}", "msg": "x"}}'), venue)
    assert type(err) is kind
    assert table_for(venue)[code][1] in str(err)  # the trader reads what it means


@pytest.mark.parametrize(("venue", "check"), [
    ("bybit", lambda ex: ex.urls["api"]["public"].startswith("https://api-demo.")
     and "testnet" not in ex.urls["api"]["public"]),
    ("okx", lambda ex: ex.headers.get("x-simulated-trading") == "1"),
    ("binanceusdm", lambda ex: "demo-fapi" in ex.urls["api"]["fapiPrivate"]),
])
def test_demo_is_each_venues_own_demo(venue: str, check) -> None:
    """Bybit demo trading (not the testnet), OKX simulated trading, Binance demo."""
    import ccxt.pro as ccxtpro

    from pmgui.exchange.venues.factory import create_exchange

    adapter = create_exchange(venue, demo=True)
    ex = getattr(ccxtpro, venue)()
    adapter._enable_demo(ex)
    assert check(ex)


@pytest.mark.parametrize(("venue", "info", "fired"), [
    ("binanceusdm", {"algoId": 77, "algoStatus": "NEW"}, False),
    ("binanceusdm", {"algoId": 77, "algoStatus": "TRIGGERING"}, True),
    ("binanceusdm", {"algoId": 77, "algoStatus": "TRIGGERED", "actualOrderId": "90"}, True),
    ("binanceusdm", {"algoId": 77, "algoStatus": "FINISHED", "actualOrderId": "90"}, True),
    ("binanceusdm", {"aid": 77, "X": "TRIGGERED", "ai": "90"}, True),  # ALGO_UPDATE
    ("binanceusdm", {"algoId": 77, "algoStatus": "CANCELED", "actualOrderId": ""}, False),
    ("binanceusdm", {"algoId": 77, "algoStatus": "EXPIRED", "actualOrderId": "90"}, True),
    ("binanceusdm", {"orderId": 90, "status": "FILLED"}, False),  # the market order itself
    ("okx", {"algoId": "5", "ordType": "conditional", "state": "live"}, False),
    ("okx", {"algoId": "5", "ordType": "conditional", "state": "effective",
             "ordId": "9"}, True),
    ("okx", {"algoId": "5", "ordType": "conditional", "state": "partially_effective"}, True),
    ("okx", {"algoId": "5", "ordType": "market", "ordId": "9", "state": "filled",
             "accFillSz": "1"}, False),  # the market order an algo created
])
def test_a_conditional_order_that_fired_is_told_apart(venue: str, info: dict,
                                                      fired: bool) -> None:
    """A fired conditional order's fill is its market order's (the engine follows it by
    id): TRIGGERING/TRIGGERED are not "resting", FINISHED/effective carry no fill."""
    assert vm.algo_fired(venue, {"id": "x", "info": info}) is fired
