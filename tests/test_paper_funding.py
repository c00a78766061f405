"""Funding on the paper exchange: every 8 h at the configured rate of the value at the mark."""

from __future__ import annotations

import pytest
import sqlite_utils

from pmgui.domain.errors import ExchangeError
from pmgui.exchange.paper import FUNDING_PERIOD, PaperExchange
from tests.paper_support import ETH, MARKETS, Driver, req, venue

START = 1_700_006_400.0  # an exact 8-hour boundary (2023-11-15 00:00 UTC)


async def test_longs_pay_and_shorts_receive_at_each_boundary():
    ex = venue(funding_rate=0.0001, taker_fee=0.0, slippage=0.0)
    d = Driver(ex)
    d.ts = START + 100
    await d.tick(50_000.0)
    await ex.create_order(req("long", "buy", amount=0.2))  # 10,000 USDT long
    await d.tick(3_000.0, ETH)
    await ex.create_order(req("short", "sell", amount=1.0, symbol=ETH))  # 3,000 USDT short
    before = (await ex.fetch_balance()).total
    d.ts = START + FUNDING_PERIOD - 10
    await d.tick(50_000.0)
    assert (await ex.fetch_balance()).total == pytest.approx(before)  # not yet
    d.ts = START + FUNDING_PERIOD + 1
    await d.tick(50_000.0)  # the long pays 1.00, the short receives 0.30
    bal = await ex.fetch_balance()
    assert bal.total == pytest.approx(before - 1.0 + 0.3)
    assert bal.funding == pytest.approx(-0.7)
    await d.tick(50_000.0)  # the same period is charged once
    assert (await ex.fetch_balance()).total == pytest.approx(before - 0.7)


async def test_no_funding_when_the_rate_is_zero_and_bad_rates_are_refused():
    ex = venue(taker_fee=0.0, slippage=0.0)  # replay and tests: 0 unless configured
    d = Driver(ex)
    d.ts = START
    await d.tick(50_000.0)
    await ex.create_order(req("long", "buy", amount=0.2))
    before = (await ex.fetch_balance()).total
    d.ts = START + 3 * FUNDING_PERIOD
    await d.tick(50_000.0)
    assert (await ex.fetch_balance()).total == before
    for bad in (0.5, float("nan"), "0.01"):
        with pytest.raises(ExchangeError, match="funding rate"):
            venue(funding_rate=bad)


async def test_funding_state_survives_a_restart(tmp_path):
    path = tmp_path / "paper.db"
    ex = PaperExchange(dict(MARKETS), None, db=sqlite_utils.Database(path), realtime=False,
                       funding_rate=0.0001, taker_fee=0.0, slippage=0.0)
    d = Driver(ex)
    d.ts = START + 1
    await d.tick(50_000.0)
    await ex.create_order(req("long", "buy", amount=0.2))
    d.ts = START + FUNDING_PERIOD + 1
    await d.tick(50_000.0)
    await ex.close()
    again = PaperExchange(dict(MARKETS), None, db=sqlite_utils.Database(path), realtime=False,
                          funding_rate=0.0001, taker_fee=0.0, slippage=0.0)
    await again.connect()
    assert (await again.fetch_balance()).funding == pytest.approx(-1.0)
    d2 = Driver(again)
    d2.ts = START + FUNDING_PERIOD + 5
    await d2.tick(50_000.0)  # the period already charged before the restart: not again
    assert (await again.fetch_balance()).funding == pytest.approx(-1.0)


def test_the_rate_comes_from_the_config_file(tmp_path):
    from pmgui.config import load_config
    from pmgui.domain.errors import PmguiError

    cfg = tmp_path / "c.toml"
    cfg.write_text("[paper]\nfunding_rate = 0.0003\n")
    assert load_config(cfg).paper.funding_rate == 0.0003
    cfg.write_text("[paper]\nfunding_rate = 0.5\n")
    with pytest.raises(PmguiError, match="paper.funding_rate"):
        load_config(cfg)
    cfg.write_text("[paper]\nbalance = 5000\n")
    assert load_config(cfg).paper.funding_rate == 0.0001  # the default
