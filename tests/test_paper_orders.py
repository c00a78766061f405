"""Order semantics of the paper exchange: the real PaperExchange driven tick by tick."""

from __future__ import annotations

import random

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus, OrderType, Side
from pmgui.domain.errors import (
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderWouldTriggerImmediately,
)
from pmgui.domain.models import Order, Tick
from pmgui.exchange.base import Exchange
from tests.paper_support import BTC, ETH, Driver, req, venue

STOP, TP, LIMIT = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.LIMIT


async def _long(d: Driver, qty: float = 0.1, price: float = 60_000.0, cid: str = "open") -> None:
    await d.tick(price)
    await d.ex.create_order(req(cid, "buy", amount=qty))


async def _short(d: Driver, qty: float = 0.1, price: float = 60_000.0) -> None:
    await d.tick(price)
    await d.ex.create_order(req("open-short", "sell", amount=qty))


def _positions(ex) -> dict[Side, float]:
    return {(p.side): p.qty for p in ex._positions.values()}


async def test_implements_the_exchange_protocol():
    ex = venue()
    assert isinstance(ex, Exchange)
    assert ex.id == "paper"
    assert ex.capabilities.stop_orders and ex.capabilities.take_profit_orders


async def test_market_buy_opens_long_and_charges_taker_fee():
    d = Driver(venue(slippage=0.0))
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("c1", "buy", amount=0.1))
    assert o.status is OrderStatus.FILLED and o.filled == 0.1 and o.average == 60_000.0
    [pos] = await d.ex.fetch_positions()
    assert (pos.side, pos.qty, pos.entry, pos.leverage) == (Side.LONG, 0.1, 60_000.0, 10.0)
    bal = await d.ex.fetch_balance()
    assert bal.total == pytest.approx(10_000.0 - 3.0)  # 60000 · 0.1 · 0.0005
    assert bal.used == pytest.approx(600.0)  # isolated margin: notional / 10x
    assert bal.free == pytest.approx(10_000.0 - 3.0 - 600.0)
    [fill] = d.ex.fills()
    assert fill.fee == pytest.approx(3.0) and fill.price == 60_000.0


async def test_slippage_makes_buys_dearer_and_sells_cheaper():
    d = Driver(venue(slippage=0.0002))
    await d.tick(60_000.0)
    buy = await d.ex.create_order(req("b", "buy", amount=0.01))
    sell = await d.ex.create_order(req("s", "sell", amount=0.01))
    assert buy.average == pytest.approx(60_012.0)
    assert sell.average == pytest.approx(59_988.0)


async def test_realized_pnl_and_both_fees_settle_into_the_wallet():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.tick(61_000.0)
    o = await d.ex.create_order(req("close", "sell", amount=0.1, reduce_only=True))
    assert o.status is OrderStatus.FILLED
    bal = await d.ex.fetch_balance()
    # +100 profit, −3.00 entry fee, −3.05 exit fee
    assert bal.total == pytest.approx(10_000.0 + 100.0 - 3.0 - 3.05)
    assert bal.used == pytest.approx(0.0) and await d.ex.fetch_positions() == []


async def test_short_loss_settles_into_the_wallet():
    d = Driver(venue(slippage=0.0, taker_fee=0.0))
    await _short(d)
    await d.tick(61_000.0)
    await d.ex.create_order(req("close", "buy", amount=0.1, reduce_only=True))
    assert (await d.ex.fetch_balance()).total == pytest.approx(10_000.0 - 100.0)


async def test_average_entry_is_recomputed_on_increase():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.tick(62_000.0)
    await d.ex.create_order(req("add", "buy", amount=0.1))
    [pos] = await d.ex.fetch_positions()
    assert pos.qty == pytest.approx(0.2) and pos.entry == pytest.approx(61_000.0)


async def test_hedge_mode_keeps_long_and_short_apart():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.ex.create_order(req("short", "sell", amount=0.05))
    assert _positions(d.ex) == {Side.LONG: 0.1, Side.SHORT: 0.05}


# --- stops and take-profits ---------------------------------------------------------------

async def test_sell_stop_triggers_only_when_price_crosses_it():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    sl = await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=59_000.0,
                                     reduce_only=True, role=OrderRole.STOP_LOSS))
    assert sl.status is OrderStatus.OPEN
    assert [u for u in await d.tick(59_500.0) if u.fills] == []
    assert [u for u in await d.tick(59_000.1) if u.fills] == []
    assert _positions(d.ex) == {Side.LONG: 0.1}
    ups = await d.tick(58_990.0)
    filled = [u for u in ups if u.fills]
    assert len(filled) == 1 and filled[0].order.client_id == "sl"
    assert filled[0].order.status is OrderStatus.FILLED
    assert filled[0].fills[0].price == 58_990.0  # the triggering tick's price
    assert await d.ex.fetch_positions() == []


async def test_stop_triggers_when_price_touches_the_trigger_exactly():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=59_000.0,
                                reduce_only=True))
    ups = await d.tick(59_000.0)
    assert [u.order.client_id for u in ups if u.fills] == ["sl"]


async def test_buy_stop_for_a_short_triggers_on_rising_through():
    d = Driver(venue(slippage=0.0))
    await _short(d)
    await d.ex.create_order(req("sl", "buy", STOP, 0.1, trigger_price=61_000.0,
                                reduce_only=True))
    assert [u for u in await d.tick(60_999.9) if u.fills] == []
    ups = await d.tick(61_050.0)
    assert [u.fills[0].price for u in ups if u.fills] == [61_050.0]
    assert await d.ex.fetch_positions() == []


async def test_take_profits_trigger_on_the_favourable_side():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.ex.create_order(req("tp", "sell", TP, 0.1, trigger_price=62_000.0,
                                reduce_only=True))
    assert [u for u in await d.tick(61_999.9) if u.fills] == []
    assert [u.order.client_id for u in await d.tick(62_000.5) if u.fills] == ["tp"]

    await _short(d)
    await d.ex.create_order(req("tp2", "buy", TP, 0.1, trigger_price=58_000.0,
                                reduce_only=True))
    assert [u for u in await d.tick(58_000.1) if u.fills] == []
    assert [u.order.client_id for u in await d.tick(58_000.0) if u.fills] == ["tp2"]


async def test_triggered_stop_fills_with_slippage_and_taker_fee():
    d = Driver(venue(slippage=0.001, taker_fee=0.0005))
    await _long(d)
    await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=59_000.0,
                                reduce_only=True))
    [u] = [u for u in await d.tick(58_000.0) if u.fills]
    assert u.fills[0].price == pytest.approx(58_000.0 * 0.999)
    assert u.fills[0].fee == pytest.approx(58_000.0 * 0.999 * 0.1 * 0.0005)


@pytest.mark.parametrize(("side", "otype", "trigger"), [
    ("sell", STOP, 60_500.0),  # a sell stop above the price
    ("buy", STOP, 59_500.0),  # a buy stop below the price
    ("sell", TP, 59_500.0),  # a sell take-profit below the price
    ("buy", TP, 60_500.0),  # a buy take-profit above the price
])
async def test_conditional_order_that_would_trigger_at_once_is_refused(side, otype, trigger):
    d = Driver(venue())
    await _long(d)
    await _short(d)
    before = await d.ex.fetch_balance()
    with pytest.raises(OrderWouldTriggerImmediately, match="would trigger immediately"):
        await d.ex.create_order(req("x", side, otype, 0.1, trigger_price=trigger,
                                    reduce_only=True))
    assert await d.ex.fetch_open_orders() == []
    assert await d.ex.fetch_order_by_client_id("x", BTC) is None
    assert await d.ex.fetch_balance() == before


async def test_other_protective_orders_are_canceled_when_the_position_closes():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=59_000.0,
                                reduce_only=True))
    await d.ex.create_order(req("tp", "sell", TP, 0.1, trigger_price=62_000.0,
                                reduce_only=True))
    ups = await d.tick(58_000.0)
    status = {u.order.client_id: u.order.status for u in ups}
    assert status == {"sl": OrderStatus.FILLED, "tp": OrderStatus.CANCELED}
    assert await d.ex.fetch_open_orders() == []


# --- reduce-only --------------------------------------------------------------------------

async def test_reduce_only_market_is_clipped_and_never_flips():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    o = await d.ex.create_order(req("close", "sell", amount=0.5, reduce_only=True))
    assert o.status is OrderStatus.FILLED and o.filled == pytest.approx(0.1)
    assert await d.ex.fetch_positions() == []  # closed, no short opened
    assert d.ex.fills()[-1].qty == pytest.approx(0.1)


async def test_reduce_only_stop_larger_than_position_closes_it_exactly():
    d = Driver(venue(slippage=0.0))
    await _long(d, qty=0.05)
    await d.ex.create_order(req("sl", "sell", STOP, 0.3, trigger_price=59_000.0,
                                reduce_only=True))
    await d.tick(58_500.0)
    assert await d.ex.fetch_positions() == []
    assert d.ex.fills()[-1].qty == pytest.approx(0.05)


async def test_reduce_only_without_a_position_is_rejected():
    d = Driver(venue())
    await d.tick(60_000.0)
    with pytest.raises(InvalidOrder, match="no long position on BTC/USDT:USDT"):
        await d.ex.create_order(req("r", "sell", amount=0.1, reduce_only=True))
    await _long(d)
    with pytest.raises(InvalidOrder, match="no short position"):
        await d.ex.create_order(req("r2", "buy", amount=0.1, reduce_only=True))
    assert _positions(d.ex) == {Side.LONG: 0.1}


async def test_random_reduce_only_sequences_never_flip_or_over_close():
    rng = random.Random(11)
    d = Driver(venue(slippage=0.0))
    await _long(d, qty=1.0)
    for i in range(40):
        if not d.ex._positions:
            break
        amount = round(rng.uniform(0.001, 0.6), 3)
        await d.tick(60_000.0 + rng.uniform(-500, 500))
        await d.ex.create_order(req(f"r{i}", "sell", amount=amount, reduce_only=True))
        qty = _positions(d.ex).get(Side.LONG, 0.0)
        assert qty >= 0 and Side.SHORT not in _positions(d.ex)
    sold = sum(f.qty for f in d.ex.fills() if f.side.value == "sell")
    assert sold == pytest.approx(1.0)


async def test_reduce_only_allows_a_value_below_min_notional():
    d = Driver(venue(slippage=0.0))
    await _long(d, qty=0.01, price=3_200.0)
    o = await d.ex.create_order(req("part", "sell", amount=0.001, reduce_only=True))
    assert o.status is OrderStatus.FILLED  # 3.20 USDT, allowed because it only reduces


# --- precision and limits -----------------------------------------------------------------

async def test_min_notional_is_rejected_with_a_clear_error_and_nothing_changes():
    d = Driver(venue())
    await d.tick(3_200.0)
    with pytest.raises(InvalidOrder) as e:
        await d.ex.create_order(req("tiny", "buy", amount=0.001))
    assert str(e.value) == ("order value 3.20 USDT is below the minimum 5 USDT "
                            "for BTC/USDT:USDT")
    assert await d.ex.fetch_positions() == []
    assert (await d.ex.fetch_balance()).total == 10_000.0
    assert await d.ex.fetch_order_by_client_id("tiny", BTC) is None


async def test_amount_is_floored_to_the_step_and_prices_rounded_to_the_tick():
    d = Driver(venue(slippage=0.0))
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("m", "buy", amount=0.0159))
    assert o.amount == 0.015 and o.filled == 0.015
    lim = await d.ex.create_order(req("l", "buy", LIMIT, 0.01, price=59_000.06))
    assert lim.price == 59_000.1
    st = await d.ex.create_order(req("s", "sell", STOP, 0.01, trigger_price=58_000.04,
                                     reduce_only=True))
    assert st.trigger_price == 58_000.0


async def test_amount_below_the_minimum_is_rejected():
    d = Driver(venue())
    await d.tick(60_000.0)
    with pytest.raises(InvalidOrder, match="below the minimum 0.001 BTC"):
        await d.ex.create_order(req("m", "buy", amount=0.0004))


@pytest.mark.parametrize("amount", [0.0, -1.0, float("nan"), float("inf")])
async def test_bad_amounts_are_rejected(amount):
    d = Driver(venue())
    await d.tick(60_000.0)
    with pytest.raises(InvalidOrder, match="positive number"):
        await d.ex.create_order(req("m", "buy", amount=amount))


async def test_unknown_symbol_duplicate_client_id_and_missing_price_are_clear_errors():
    d = Driver(venue())
    with pytest.raises(InvalidOrder, match="no price for BTC/USDT:USDT yet"):
        await d.ex.create_order(req("a", "buy", amount=0.01))
    await d.tick(60_000.0)
    with pytest.raises(InvalidOrder, match="unknown symbol 'DOGE/USDT:USDT'"):
        await d.ex.create_order(req("a", "buy", amount=1, symbol="DOGE/USDT:USDT"))
    await d.ex.create_order(req("a", "buy", amount=0.01))
    with pytest.raises(InvalidOrder, match="client order id a is already used"):
        await d.ex.create_order(req("a", "buy", amount=0.01))
    with pytest.raises(InvalidOrder, match="needs a positive price"):
        await d.ex.create_order(req("b", "buy", LIMIT, 0.01))
    with pytest.raises(InvalidOrder, match="needs a positive trigger price"):
        await d.ex.create_order(req("c", "sell", STOP, 0.01, reduce_only=True))


async def test_insufficient_margin_is_refused_and_nothing_changes():
    d = Driver(venue(balance=100.0))
    await d.tick(60_000.0)
    with pytest.raises(InsufficientFunds, match="insufficient margin: this order needs 603"):
        await d.ex.create_order(req("big", "buy", amount=0.1))
    assert await d.ex.fetch_positions() == []
    assert (await d.ex.fetch_balance()).total == 100.0


# --- limit orders -------------------------------------------------------------------------

async def test_limit_order_rests_reserves_margin_and_fills_at_its_price_as_maker():
    d = Driver(venue(slippage=0.0))
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("l", "buy", LIMIT, 0.1, price=59_000.0))
    assert o.status is OrderStatus.OPEN
    bal = await d.ex.fetch_balance()
    assert bal.used == pytest.approx(590.0 + 59_000 * 0.1 * 0.0005)  # 10x + fee
    assert [u for u in await d.tick(59_500.0) if u.fills] == []
    [u] = [u for u in await d.tick(58_900.0) if u.fills]
    assert u.fills[0].price == 59_000.0
    assert u.fills[0].fee == pytest.approx(59_000.0 * 0.1 * 0.0002)
    [pos] = await d.ex.fetch_positions()
    assert pos.entry == 59_000.0 and pos.qty == pytest.approx(0.1)


async def test_marketable_limit_fills_at_once_as_taker_never_worse_than_its_limit():
    d = Driver(venue(slippage=0.01))
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("l", "sell", LIMIT, 0.1, price=59_800.0))
    assert o.status is OrderStatus.FILLED
    assert o.average == 59_800.0  # 60000 − 1 % slippage would be 59400: capped at the limit
    assert d.ex.fills()[-1].fee == pytest.approx(59_800.0 * 0.1 * 0.0005)


# --- liquidation --------------------------------------------------------------------------

async def test_long_is_liquidated_at_the_isolated_liquidation_price():
    d = Driver(venue(slippage=0.0))
    await _long(d)  # 10x, mmr 0.4 %: liquidation 60000·(1 − 0.1 + 0.004) = 54240
    [pos] = await d.ex.fetch_positions()
    assert pos.liquidation == pytest.approx(54_240.0)
    await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=50_000.0,
                                reduce_only=True))
    assert await d.tick(54_300.0) == []
    ups = await d.tick(54_200.0)
    liq = [u for u in ups if u.fills]
    assert len(liq) == 1
    order, fill = liq[0].order, liq[0].fills[0]
    assert order.reason == "liquidation" and order.role is OrderRole.REDUCE
    assert order.status is OrderStatus.FILLED and fill.liquidation
    assert fill.price == 54_240.0 and fill.qty == pytest.approx(0.1)
    assert {u.order.client_id: u.order.status for u in ups if not u.fills} == {
        "sl": OrderStatus.CANCELED}
    assert await d.ex.fetch_positions() == []
    bal = await d.ex.fetch_balance()
    assert bal.total == pytest.approx(10_000 - 3.0 - 576.0 - 54_240 * 0.1 * 0.0005)


async def test_short_is_liquidated_on_a_rise_through_its_liquidation_price():
    d = Driver(venue(slippage=0.0))
    await d.ex.set_leverage(BTC, 20)
    await _short(d)  # 20x: 60000·(1 + 0.05 − 0.004) = 62760
    [pos] = await d.ex.fetch_positions()
    assert pos.liquidation == pytest.approx(62_760.0)
    ups = await d.tick(63_000.0)
    assert [u.fills[0].price for u in ups if u.fills] == [62_760.0]
    assert await d.ex.fetch_positions() == []


# --- cancel, lookup, leverage -------------------------------------------------------------

async def test_cancel_releases_reserved_margin_and_is_idempotent():
    d = Driver(venue())
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("l", "buy", LIMIT, 0.1, price=50_000.0))
    c = await d.ex.cancel_order(o)
    assert c.status is OrderStatus.CANCELED
    assert (await d.ex.fetch_balance()).used == 0.0
    assert await d.ex.cancel_order(o) == c  # already final: returned unchanged
    ghost = Order("nope", BTC, o.side, o.type, 0.1, OrderStatus.OPEN)
    with pytest.raises(InvalidOrder, match="unknown order nope"):
        await d.ex.cancel_order(ghost)


async def test_fetch_order_by_client_id():
    d = Driver(venue())
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("known", "buy", amount=0.01))
    assert await d.ex.fetch_order_by_client_id("known", BTC) == o
    assert await d.ex.fetch_order_by_client_id("unknown", BTC) is None
    assert await d.ex.fetch_order_by_client_id("known", ETH) is None


async def test_leverage_sets_isolated_margin_and_is_validated():
    d = Driver(venue(slippage=0.0, balance=1_000.0))
    with pytest.raises(InvalidOrder, match="between 1x and 125x"):
        await d.ex.set_leverage(BTC, 200)
    with pytest.raises(InvalidOrder, match="between 1x and 125x"):
        await d.ex.set_leverage(BTC, 0)
    await d.ex.set_leverage(BTC, 20)
    await _long(d)
    assert (await d.ex.fetch_balance()).used == pytest.approx(300.0)
    await d.ex.set_leverage(BTC, 10)
    assert (await d.ex.fetch_balance()).used == pytest.approx(600.0)
    with pytest.raises(InsufficientFunds, match="needs 5,400.00 USDT more margin"):
        await d.ex.set_leverage(BTC, 1)
    assert d.ex.leverage(BTC) == 10.0


async def test_fill_ids_and_exchange_ids_are_unique():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    for i in range(5):
        await d.ex.create_order(req(f"x{i}", "buy", amount=0.01))
    await d.ex.create_order(req("close", "sell", amount=1, reduce_only=True))
    ids = [f.id for f in d.ex.fills()]
    assert len(ids) == 7 and len(set(ids)) == 7
    xids = [d.ex._orders[c].exchange_id for c in d.ex._orders]
    assert len(set(xids)) == len(xids)


async def test_seed_position_places_a_position_without_a_fill():
    ex = venue()
    pos = ex.seed_position(BTC, Side.SHORT, 0.2, 60_000.0, 5, ts=123.0)
    assert (pos.side, pos.qty, pos.entry, pos.leverage) == (Side.SHORT, 0.2, 60_000.0, 5.0)
    assert (await ex.fetch_balance()).used == pytest.approx(2_400.0)
    assert ex.fills() == []
    with pytest.raises(InvalidOrder, match="already a short position"):
        ex.seed_position(BTC, Side.SHORT, 0.1, 60_000.0, 5)
    with pytest.raises(InsufficientFunds):
        ex.seed_position(ETH, Side.LONG, 100.0, 3_000.0, 1)


# --- delivery to the sink -----------------------------------------------------------------

async def test_created_order_update_is_delivered_before_the_next_tick():
    d = Driver(venue())
    await d.tick(60_000.0)
    o = await d.ex.create_order(req("m", "buy", amount=0.01))
    assert d.sink.updates() == []  # never from inside the caller's own await
    await d.ex.deliver(Tick(BTC, 60_010.0, d.ts + 1), d.sink)
    kinds = [c[0] for c in d.sink.calls]
    assert kinds == ["tick", "update", "tick"]
    [u] = d.sink.updates()
    assert u.order == o and len(u.fills) == 1


async def test_matched_updates_precede_the_tick_that_caused_them():
    d = Driver(venue())
    await _long(d)
    await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=59_000.0,
                                reduce_only=True))
    await d.ex.deliver(Tick(BTC, 60_000.0, d.ts + 1), d.sink)  # delivers the creations
    n = len(d.sink.calls)
    await d.ex.deliver(Tick(BTC, 58_000.0, d.ts + 2), d.sink)
    assert [c[0] for c in d.sink.calls[n:]] == ["update", "tick"]


async def test_subscription_filters_ticks_but_not_symbols_with_positions():
    d = Driver(venue())
    d.ex.subscribe([BTC])
    await d.ex.deliver(Tick(ETH, 3_000.0, 1.0), d.sink)
    assert d.sink.ticks() == []
    await d.ex.create_order(req("e", "buy", amount=0.01, symbol=ETH))
    await d.ex.deliver(Tick(ETH, 3_001.0, 2.0), d.sink)
    assert [t.price for t in d.sink.ticks()] == [3_001.0]
    with pytest.raises(ExchangeError, match="no market XRP"):
        d.ex.subscribe(["XRP/USDT:USDT"])


async def test_non_finite_tick_prices_are_ignored():
    d = Driver(venue())
    await _long(d)
    await d.ex.deliver(Tick(BTC, float("nan"), 5.0), d.sink)
    await d.ex.deliver(Tick(BTC, -1.0, 6.0), d.sink)
    assert all(t.price == 60_000.0 for t in d.sink.ticks())
    assert (await d.ex.fetch_price(BTC)).price == 60_000.0
    assert _positions(d.ex) == {Side.LONG: 0.1}


def test_bad_configuration_is_refused():
    with pytest.raises(ExchangeError, match="taker fee"):
        venue(taker_fee=-0.1)
    with pytest.raises(ExchangeError, match="balance"):
        venue(balance=float("nan"))
    with pytest.raises(ExchangeError, match="at least one market"):
        from pmgui.exchange.paper import PaperExchange
        PaperExchange({}, None)



async def test_a_gap_through_stop_and_liquidation_liquidates_losing_at_most_the_margin():
    d = Driver(venue(slippage=0.0))
    await _long(d)  # 10x: margin 600, liquidation 54240
    await d.ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=58_000.0,
                                reduce_only=True))
    ups = await d.tick(40_000.0)  # a crash straight through both
    [liq] = [u for u in ups if u.fills]
    assert liq.fills[0].liquidation and liq.fills[0].price == 54_240.0
    assert {u.order.client_id: u.order.status for u in ups if not u.fills} == {
        "sl": OrderStatus.CANCELED}
    lost = 10_000.0 - (await d.ex.fetch_balance()).total
    assert lost < 600.0 + 3.0 + 3.0  # the margin and the two fees, not 2000


async def test_an_opening_stop_that_cannot_be_paid_for_at_execution_is_rejected():
    d = Driver(venue(slippage=0.0, balance=100.0))
    await d.tick(60_000.0)
    await d.ex.create_order(req("breakout", "buy", STOP, 0.01, trigger_price=61_000.0))
    ups = await d.tick(100_000.0)  # gaps far above the trigger: 100 USDT margin + fee > 100
    [u] = ups
    assert u.order.status is OrderStatus.REJECTED and "insufficient margin" in u.order.error
    assert u.fills == () and await d.ex.fetch_positions() == []
    assert (await d.ex.fetch_balance()).total == 100.0


async def test_lowering_leverage_counts_the_margin_of_resting_opening_orders():
    d = Driver(venue(slippage=0.0, balance=1_000.0))
    await d.tick(60_000.0)
    await d.ex.create_order(req("l", "buy", LIMIT, 0.1, price=59_000.0))  # 590 at 10x
    with pytest.raises(InsufficientFunds, match="needs 590.00 USDT more margin"):
        await d.ex.set_leverage(BTC, 5)  # would reserve 1180
    assert d.ex.leverage(BTC) == 10.0
    await d.ex.set_leverage(BTC, 20)
    assert (await d.ex.fetch_balance()).used == pytest.approx(295.0 + 2.95)


async def test_simulated_clock_is_the_last_tick_and_stamps_orders_and_fills():
    d = Driver(venue())
    assert d.ex.now() == 0.0
    await d.tick(60_000.0)
    assert d.ex.now() == d.ts
    o = await d.ex.create_order(req("m", "buy", amount=0.01))
    assert o.created_at == d.ts and d.ex.fills()[-1].ts == d.ts
    assert venue(realtime=True, clock=lambda: 42.0).now() == 42.0


async def test_stop_crossed_on_a_continuous_path_fills_at_its_level_a_gap_at_the_price():
    d = Driver(venue(slippage=0.0))
    await _long(d)
    await d.ex.create_order(req("sl", "sell", STOP, 0.05, trigger_price=59_000.0,
                                reduce_only=True))
    await d.ex.flush(d.sink)
    # inside a replayed candle (open → low): the price passed 59000 on its way to 58000
    await d.ex.deliver(Tick(BTC, 58_000.0, d.ts + 1, continuous=True), d.sink)
    assert d.ex.fills()[-1].price == 59_000.0
    await d.ex.create_order(req("sl2", "sell", STOP, 0.05, trigger_price=57_000.0,
                                reduce_only=True))
    await d.ex.flush(d.sink)
    await d.ex.deliver(Tick(BTC, 56_000.0, d.ts + 2), d.sink)  # a real gap
    assert d.ex.fills()[-1].price == 56_000.0
