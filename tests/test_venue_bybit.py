"""Bybit through the whole engine: EngineCore over the Bybit adapter over the local Bybit
v5 emulator (real ccxt.pro `bybit`, REST and websockets on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.domain.enums import Protection, Side
from tests.fakes.bybit_server import BybitServer
from tests.venue_support import VenueRig, monitor, until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server() -> AsyncIterator[BybitServer]:
    srv = BybitServer()
    await srv.start()
    yield srv
    await srv.stop()


def protective(server: BybitServer, symbol: str = "BTCUSDT") -> list:
    return [o for o in server.core.open_orders(symbol) if o.conditional]


def creates(server: BybitServer) -> list[dict]:
    return server.sent("/v5/order/create")


async def test_adoption_protects_once_on_mark_price(server: BybitServer, tmp_path: Path) -> None:
    server.core.set_position("BTCUSDT", "long", "0.02", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        (pos,) = rig.open_positions()
        assert (pos.side, pos.qty) == (Side.LONG, 0.02)
        stops = sorted(protective(server), key=lambda o: o.trigger)
        assert [(o.kind, float(o.trigger), float(o.qty), o.leg) for o in stops] == [
            ("stop", 49_500.0, 0.02, "net"), ("take_profit", 51_000.0, 0.02, "net")]
        assert all(o.trigger_ref == "mark" and o.reduce_only for o in stops)
        assert {c["triggerBy"] for c in creates(server)} == {"MarkPrice"}
        assert {c["positionIdx"] for c in creates(server)} == {0}
        assert rig.engine.protection(pos) is Protection.ON_EXCHANGE
        await rig.engine.reconcile()
        assert len(protective(server)) == 2 and len(creates(server)) == 2
    finally:
        await rig.stop()
    # restart: nothing placed twice
    rig2 = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig2.start()
        assert len(rig2.open_positions()) == 1
        assert len(protective(server)) == 2 and len(creates(server)) == 2
    finally:
        await rig2.stop()


async def test_hedge_mode_both_legs_protected_and_a_stop_filling(
        server: BybitServer, tmp_path: Path) -> None:
    server.core.hedge_mode = True
    server.core.set_position("BTCUSDT", "long", "0.01", "50000")
    server.core.set_position("BTCUSDT", "short", "0.02", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        legs = {p.side: p for p in rig.open_positions()}
        assert set(legs) == {Side.LONG, Side.SHORT}
        by_leg = {(o.leg, o.kind): (float(o.trigger), float(o.qty), o.side)
                  for o in protective(server)}
        assert by_leg == {
            ("long", "stop"): (49_500.0, 0.01, "sell"),
            ("long", "take_profit"): (51_000.0, 0.01, "sell"),
            ("short", "stop"): (50_500.0, 0.02, "buy"),
            ("short", "take_profit"): (49_000.0, 0.02, "buy")}
        assert all(rig.engine.protection(p) is Protection.ON_EXCHANGE for p in legs.values())

        # a wick on the last price does not reach the mark-price stop
        await server.set_price("BTCUSDT", "49400", mark="49800")
        assert len(protective(server)) == 4
        # the mark follows: the long leg's stop fills on the venue
        sent_before = len(creates(server))
        await server.set_mark("BTCUSDT", "49450")
        await until(lambda: [p.side for p in rig.open_positions()] == [Side.SHORT],
                    what="the long leg closed by its stop")
        await until(lambda: len(protective(server)) == 2, what="the long leg's TP cancelled")
        assert float(server.core.positions[("BTCUSDT", "short")].qty) == 0.02  # untouched
        assert float(server.core.positions[("BTCUSDT", "long")].qty) == 0
        assert len(creates(server)) == sent_before  # nothing re-sent to close it
        assert {(o.leg, o.kind) for o in protective(server)} == {
            ("short", "stop"), ("short", "take_profit")}
    finally:
        await rig.stop()


async def test_isolated_account_and_last_price_trigger(server: BybitServer,
                                                       tmp_path: Path) -> None:
    server.account_margin_mode = "ISOLATED_MARGIN"
    server.core.set_position("BTCUSDT", "short", "0.01", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite", settings=monitor("last"))
    try:
        await rig.start()
        (remote,) = await rig.exchange.fetch_positions()
        assert remote.margin_mode == "isolated"
        assert {c["triggerBy"] for c in creates(server)} == {"LastPrice"}
        assert {o.trigger_ref for o in protective(server)} == {"last"}
        sent_before = len(creates(server))
        await server.set_price("BTCUSDT", "50600", mark="50100")  # last crosses the stop
        await until(lambda: not rig.open_positions(), what="short closed by its stop")
        await until(lambda: not protective(server), what="TP cancelled")
        closes = [c for c in creates(server)[sent_before:] if "triggerPrice" not in c]
        rejected = [o for o in server.core.orders.values()
                    if o.extra.get("cancel_reason") == "reduce_only"]
        assert len(closes) <= 1 and not rejected  # at most one close, never a storm
    finally:
        await rig.stop()
