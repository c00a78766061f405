"""The demo venue: realistic markets and first-start positions that actually open."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus, OrderType, Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import OrderRequest, Tick
from pmgui.domain.money import liquidation_price
from pmgui.exchange.demo import DEMO_MARKETS, DEMO_POSITIONS, DEMO_START_PRICES, demo_feed
from pmgui.exchange.paper import PaperExchange
from tests.paper_support import RecordingSink


def test_demo_markets_are_realistic():
    assert len(DEMO_MARKETS) >= 4 and set(DEMO_START_PRICES) == set(DEMO_MARKETS)
    btc = DEMO_MARKETS["BTC/USDT:USDT"]
    assert (btc.tick_size, btc.amount_step, btc.min_notional) == (0.1, 0.001, 5.0)
    assert DEMO_MARKETS["ETH/USDT:USDT"].tick_size == 0.01
    assert 60_000 <= DEMO_START_PRICES["BTC/USDT:USDT"] <= 100_000
    assert 2_000 <= DEMO_START_PRICES["ETH/USDT:USDT"] <= 4_000
    assert 100 <= DEMO_START_PRICES["SOL/USDT:USDT"] <= 250
    for sym, m in DEMO_MARKETS.items():
        assert m.symbol == sym and m.round_price(DEMO_START_PRICES[sym]) == DEMO_START_PRICES[sym]


def test_demo_positions_cover_long_short_and_leverage_range():
    assert len(DEMO_POSITIONS) >= 4
    assert {d.side for d in DEMO_POSITIONS} == {Side.LONG, Side.SHORT}
    assert len({d.symbol for d in DEMO_POSITIONS}) == len(DEMO_POSITIONS)
    assert all(3 <= d.leverage <= 20 for d in DEMO_POSITIONS)
    assert {min(d.leverage for d in DEMO_POSITIONS), max(d.leverage for d in DEMO_POSITIONS)} \
        == {3, 20}
    total_margin = 0.0
    for d in DEMO_POSITIONS:
        m, price = DEMO_MARKETS[d.symbol], DEMO_START_PRICES[d.symbol]
        notional = d.qty * price
        assert 300 <= notional <= 5_000, d
        assert m.floor_amount(d.qty) == d.qty
        total_margin += notional / d.leverage
        sl, tp = d.targets(price, m)
        liq = liquidation_price(d.side, price, d.leverage, m.mmr)
        assert liq is not None
        if d.side is Side.LONG:
            assert liq < sl < price < tp
        else:
            assert tp < price < sl < liq
    assert total_margin < 0.3 * 10_000


def test_targets_snap_and_validate():
    d = DEMO_POSITIONS[0]
    sl, tp = d.targets(87_512.34, DEMO_MARKETS[d.symbol])
    assert d.side is Side.LONG
    assert sl == pytest.approx(87_512.34 * (1 - d.sl_pct), abs=0.05)
    assert tp == pytest.approx(87_512.34 * (1 + d.tp_pct), abs=0.05)
    assert DEMO_MARKETS[d.symbol].round_price(sl) == sl
    with pytest.raises(ValidationError):
        d.targets(0.0)


async def test_demo_positions_open_with_protection_on_the_paper_exchange():
    ex = PaperExchange(dict(DEMO_MARKETS), demo_feed(realtime=False, start_ts=0),
                       realtime=False)
    sink = RecordingSink()
    for i, (sym, p) in enumerate(DEMO_START_PRICES.items()):
        await ex.deliver(Tick(sym, p, float(i)), sink)
    for i, d in enumerate(DEMO_POSITIONS):
        m = DEMO_MARKETS[d.symbol]
        await ex.set_leverage(d.symbol, d.leverage)
        o = await ex.create_order(OrderRequest(f"open{i}", d.symbol, d.side.open_side,
                                               OrderType.MARKET, d.qty, role=OrderRole.ENTRY))
        assert o.status is OrderStatus.FILLED
        sl, tp = d.targets(o.average, m)
        for kind, otype, trig in (("sl", OrderType.STOP_MARKET, sl),
                                  ("tp", OrderType.TAKE_PROFIT_MARKET, tp)):
            r = await ex.create_order(OrderRequest(f"{kind}{i}", d.symbol, d.side.close_side,
                                                   otype, d.qty, trigger_price=trig,
                                                   reduce_only=True))
            assert r.status is OrderStatus.OPEN
    positions = await ex.fetch_positions()
    assert len(positions) == len(DEMO_POSITIONS)
    assert len(await ex.fetch_open_orders()) == 2 * len(DEMO_POSITIONS)
    bal = await ex.fetch_balance()
    assert bal.free > 0.5 * bal.total
