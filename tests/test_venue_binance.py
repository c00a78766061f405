"""Binance USDⓈ-M account modes through the whole engine: hedge mode (both legs of a
symbol, positionSide on every order, no reduceOnly), isolated margin, MARK_PRICE stops
that a last-price wick does not fire, a stop filling with nothing re-sent, restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.domain.enums import Protection, Side
from tests.fakes.binance_server import BinanceServer
from tests.venue_support import VenueRig, monitor, until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    srv = BinanceServer()
    await srv.start()
    srv.state.api_keys.add("test-key")
    yield srv
    await srv.stop()


def algos(server: BinanceServer) -> list:
    return [o for o in server.state.algo_orders.values() if o.is_open]


def posted(server: BinanceServer, path: str) -> list[dict]:
    return [p for m, q, p in server.requests if m == "POST" and q == path]


async def test_hedge_isolated_mark_stop_fills_and_restart(server: BinanceServer,
                                                          tmp_path: Path) -> None:
    st = server.state
    st.hedge_mode = True
    st.margin_types["BTCUSDT"] = "isolated"
    st.set_position("BTCUSDT", "0.010", "50000", leverage=10, side="LONG")
    st.set_position("BTCUSDT", "-0.020", "50000", leverage=10, side="SHORT")
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        legs = {p.side: p for p in rig.open_positions()}
        assert set(legs) == {Side.LONG, Side.SHORT}
        remote = {(p.side, p.margin_mode, p.hedged) for p in
                  await rig.exchange.fetch_positions()}
        assert remote == {(Side.LONG, "isolated", True), (Side.SHORT, "isolated", True)}
        got = {(o.position_side, o.type): (float(o.stop_price), float(o.qty), o.working_type)
               for o in algos(server)}
        assert got == {
            ("LONG", "STOP_MARKET"): (49_500.0, 0.01, "MARK_PRICE"),
            ("LONG", "TAKE_PROFIT_MARKET"): (51_000.0, 0.01, "MARK_PRICE"),
            ("SHORT", "STOP_MARKET"): (50_500.0, 0.02, "MARK_PRICE"),
            ("SHORT", "TAKE_PROFIT_MARKET"): (49_000.0, 0.02, "MARK_PRICE")}
        assert all("reduceOnly" not in p for p in posted(server, "/fapi/v1/algoOrder"))
        assert all(rig.engine.protection(p) is Protection.ON_EXCHANGE for p in legs.values())

        st.marks["BTCUSDT"] = st.prices["BTCUSDT"]
        await server.set_price("BTCUSDT", "49400")  # last wicks through, the mark holds
        assert len(algos(server)) == 4 and len(rig.open_positions()) == 2
        before = len(posted(server, "/fapi/v1/order"))
        await server.set_mark("BTCUSDT", "49450")  # the long leg's stop fires
        await until(lambda: [p.side for p in rig.open_positions()] == [Side.SHORT],
                    what="the long leg closed by its stop")
        await until(lambda: {(o.position_side, o.type) for o in algos(server)} ==
                    {("SHORT", "STOP_MARKET"), ("SHORT", "TAKE_PROFIT_MARKET")},
                    what="the long leg's TP cancelled")
        assert len(posted(server, "/fapi/v1/order")) == before  # no close re-sent
        assert float(st.positions["BTCUSDT:SHORT"].amount) == -0.02
    finally:
        await rig.stop()
    rig2 = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig2.start()
        assert [p.side for p in rig2.open_positions()] == [Side.SHORT]
        assert len(algos(server)) == 2
        ids = [o.client_id for o in server.state.algo_orders.values()]
        assert len(ids) == len(set(ids))
    finally:
        await rig2.stop()


async def test_last_price_trigger_is_sent_as_contract_price(server: BinanceServer,
                                                            tmp_path: Path) -> None:
    server.state.set_position("BTCUSDT", "0.010", "50000", leverage=10)
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite", settings=monitor("last"))
    try:
        await rig.start()
        assert {o.working_type for o in algos(server)} == {"CONTRACT_PRICE"}
        assert {o.position_side for o in algos(server)} == {"BOTH"}
    finally:
        await rig.stop()
