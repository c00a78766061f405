"""Audit of paper funding (DESIGN §5) against a perpetual venue: funding is paid by the
positions held at the funding time, whatever the first tick after it also does."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import OrderType
from pmgui.exchange.paper import FUNDING_PERIOD
from tests.paper_support import Driver, req, venue

START = 1_700_006_400.0  # an exact 8-hour boundary


async def test_a_position_stopped_out_by_the_first_tick_after_the_funding_time_pays_it():
    ex = venue(funding_rate=0.0001, taker_fee=0.0, slippage=0.0)
    d = Driver(ex)
    d.ts = START + 100
    await d.tick(50_000.0)
    await ex.create_order(req("long", "buy", amount=0.2))  # 10,000 USDT long
    await ex.create_order(req("sl", "sell", OrderType.STOP_MARKET, 0.2,
                              trigger_price=49_000.0, reduce_only=True))
    before = (await ex.fetch_balance()).total
    d.ts = START + FUNDING_PERIOD - 10  # (each tick is 1 s after `d.ts`)
    await d.tick(50_000.0)
    d.ts = START + FUNDING_PERIOD + 5  # held across 08:00; this tick stops it out
    await d.tick(48_800.0)
    assert await ex.fetch_positions() == []
    # the stop's loss (0.2 · 1,200) and the long's funding at the price of the tick
    assert (await ex.fetch_balance()).total == pytest.approx(before - 240.0 - 0.976)
    assert [f.amount for f in await ex.fetch_funding_history()] == [pytest.approx(-0.976)]


async def test_a_position_opened_by_the_first_tick_after_the_funding_time_does_not_pay_it():
    ex = venue(funding_rate=0.0001, taker_fee=0.0, maker_fee=0.0, slippage=0.0)
    d = Driver(ex)
    d.ts = START + 100
    await d.tick(50_000.0)
    await ex.create_order(req("entry", "buy", OrderType.LIMIT, 0.2, price=49_500.0))
    before = (await ex.fetch_balance()).total
    d.ts = START + FUNDING_PERIOD + 5  # it fills after 08:00: nothing was held then
    await d.tick(49_400.0)
    assert len(await ex.fetch_positions()) == 1
    assert (await ex.fetch_balance()).total == pytest.approx(before)
    assert await ex.fetch_funding_history() == []
