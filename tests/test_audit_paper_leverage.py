"""Audit of the paper venue's leverage changes with open isolated positions (DESIGN §5),
against Binance USDⓈ-M: a leverage change never takes margin away from an open isolated
position, so its liquidation price never moves towards the market by itself."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import OrderType, Side
from pmgui.domain.money import liquidation_price
from tests.paper_support import BTC, Driver, req, venue


async def test_raising_leverage_keeps_an_open_positions_margin_and_liquidation_price():
    # a long at 10x, 5 % under water; the trader then opens the other side at 20x (the
    # engine sets the symbol's leverage first, as it does for every market open)
    d = Driver(venue(slippage=0.0))
    await d.tick(60_000.0)
    await d.ex.create_order(req("long", "buy", amount=0.1))
    await d.tick(57_000.0)
    [before] = await d.ex.fetch_positions()
    assert before.liquidation == 54_240.0
    await d.ex.set_leverage(BTC, 20)
    [after] = await d.ex.fetch_positions()
    assert (after.leverage, after.liquidation) == (10.0, 54_240.0)
    assert (await d.ex.fetch_balance()).used == pytest.approx(600.0)
    # the next tick, still far above the long's liquidation price, liquidates nothing
    ups = await d.tick(56_990.0)
    assert ups == [] and not any(f.liquidation for f in d.ex.fills())
    # new fills use the new leverage: the short's margin is notional / 20
    await d.ex.create_order(req("short", "sell", amount=0.1))
    short = {p.side: p for p in await d.ex.fetch_positions()}[Side.SHORT]
    assert short.leverage == 20.0
    assert (await d.ex.fetch_balance()).used == pytest.approx(600.0 + 56_990.0 * 0.1 / 20)


async def test_an_add_at_a_higher_leverage_is_liquidated_by_the_margin_it_holds():
    d = Driver(venue(slippage=0.0))
    await d.tick(60_000.0)
    await d.ex.create_order(req("long", "buy", amount=0.1))  # margin 600 at 10x
    await d.ex.set_leverage(BTC, 20)
    await d.ex.create_order(req("add", "buy", amount=0.1))  # margin 300 at 20x
    [pos] = await d.ex.fetch_positions()
    assert pos.qty == pytest.approx(0.2)
    assert (await d.ex.fetch_balance()).used == pytest.approx(900.0)
    # isolated: 900 of margin on 12,000 of notional is 13.33x, not 10x (too far, a loss
    # beyond the margin) nor 20x (too near)
    assert pos.leverage == pytest.approx(12_000.0 / 900.0)
    expected = liquidation_price(Side.LONG, 60_000.0, 12_000.0 / 900.0, 0.004)
    assert pos.liquidation == pytest.approx(expected, abs=0.1)
    assert 54_240.0 < pos.liquidation < 57_240.0
    # a stop placed right under it is not jumped by a liquidation of the wrong size
    await d.ex.create_order(req("sl", "sell", OrderType.STOP_MARKET, 0.2,
                                trigger_price=56_000.0, reduce_only=True))
    ups = await d.tick(55_900.0)
    assert [u.fills[0].liquidation for u in ups if u.fills] == [False]


async def test_lowering_leverage_still_adds_margin_and_a_later_raise_does_not_take_it_back():
    d = Driver(venue(slippage=0.0))
    await d.ex.set_leverage(BTC, 20)
    await d.tick(60_000.0)
    await d.ex.create_order(req("long", "buy", amount=0.1))  # 300 at 20x
    await d.ex.set_leverage(BTC, 10)  # documented: the position now holds 600 (safer)
    [pos] = await d.ex.fetch_positions()
    assert (pos.leverage, pos.liquidation) == (10.0, 54_240.0)
    await d.ex.set_leverage(BTC, 15)
    [pos] = await d.ex.fetch_positions()
    assert (pos.leverage, pos.liquidation) == (10.0, 54_240.0)
    assert (await d.ex.fetch_balance()).used == pytest.approx(600.0)
