"""The fee of a fired OKX stop that pmgui booked itself, with an estimate, is corrected after
a restart.

OKX serves stops as algo orders: the journal holds the stop's `algoId`, and the executions
of its fill are under the market order the trigger created (the algo's `ordId`). When a
lookup found the stop fired and filled without a record of the venue's (nothing told it
before pmgui stopped), the ledger booked it with a record of its own and an estimated fee;
the next start reads the market order's id off the algo order, looks up that order's fills
and corrects the closed position once.

The real engine, adapter and ccxt.pro `okx` over the local OKX v5 emulator (its account pays
4 bp, the market lists 5), on a real SQLite journal; a restart is a new engine over the same
file. The stop is found fired by a lookup by client id (a second adapter that recalled the
stop, without a sink), applied by the engine's own entry — on an engine without streams, so
that nothing but that lookup tells it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderType
from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.credentials import Credentials
from tests.binance_rig import records, waiting_fees
from tests.fakes.okx_server import OkxServer
from tests.venue_support import BTC, FAST, VenueRig, monitor, until

pytestmark = pytest.mark.timeout(120)
INST = "BTC-USDT-SWAP"
FILL = 49400.0  # where the stop's market order fills (1 contract: 0.01 BTC)
ESTIMATE = FILL * 0.01 * 0.0005  # the ledger's estimate: the market's listed taker rate


@pytest.fixture
async def server() -> AsyncIterator[OkxServer]:
    srv = OkxServer()
    srv.core.taker_fee = Decimal("0.0004")
    await srv.start()
    yield srv
    await srv.stop()


def _lookups(server: OkxServer) -> int:
    """How often the emulator was asked for an algo order or an order's fills."""
    return sum(1 for method, path, _ in server.requests if method == "GET" and path in
               ("/api/v5/trade/order-algo", "/api/v5/trade/fills-history"))


async def test_a_fired_okx_stop_s_estimated_fee_is_corrected_once_after_a_restart(
        server: OkxServer, tmp_path: Path) -> None:
    db = tmp_path / "pmgui.db"
    server.core.set_position(INST, "long", "1", "50000")
    rig = VenueRig("okx", server, db, settings=monitor("last"))
    try:
        await rig.start()  # adopted, its stop (49,500) placed as an algo order
        (pos,) = rig.open_positions()
        pid = pos.id
        (stop,) = [o for o in rig.engine.orders.values() if o.role is OrderRole.STOP_LOSS]
        stop_cid = stop.client_id
    finally:
        await rig.stop()
    rig = VenueRig("okx", server, db, settings=monitor("last"))
    try:
        await rig.start(stream=False)
        stop = rig.engine.ledger.get(stop_cid)
        assert stop is not None and stop.type is OrderType.STOP_MARKET
        await server.set_price(INST, FILL)  # the stop fires, its market order fills
        lookup = CcxtExchange("okx", options=server.ccxt_config(),
                              credentials=Credentials("test-key", "s", "pass"), settings=FAST)
        await lookup.connect()
        try:
            lookup.recall_orders([stop])
            found = await lookup.fetch_order_by_client_id(stop_cid, BTC)
        finally:
            await lookup.close()
        assert found is not None and found.type is OrderType.STOP_MARKET
        assert (found.filled, found.average) == (pytest.approx(1.0), pytest.approx(FILL))
        await rig.engine.apply_order(found, ())
        (own,) = records(rig.engine, stop_cid)
        assert own.id.startswith(stop_cid + "#") and own.fee == pytest.approx(ESTIMATE)
        assert own.exchange_order_id == stop.exchange_id  # the algo id
        booked = rig.store.load_position(pid)
        assert booked is not None and not booked.is_open
        assert booked.fees_paid == pytest.approx(ESTIMATE)
    finally:
        await rig.stop()
    (algo,) = [o for o in server.core.orders.values() if o.algo and o.client_id == stop_cid]
    venue_fee = float(server.core.orders[str(algo.child)].fee)
    assert venue_fee == pytest.approx(FILL * 0.01 * 0.0004)
    rig = VenueRig("okx", server, db, settings=monitor("last"))
    try:
        await rig.start()
        await until(lambda: not waiting_fees(rig.engine), what="looked up and settled")
        (record,) = records(rig.engine, stop_cid)
        assert record.fee == pytest.approx(venue_fee)
        row = rig.store.load_position(pid)
        assert row is not None and row.fees_paid == pytest.approx(venue_fee)
        assert row.realized_pnl == pytest.approx(booked.realized_pnl + ESTIMATE - venue_fee)
    finally:
        await rig.stop()
    looked = _lookups(server)
    rig = VenueRig("okx", server, db, settings=monitor("last"))  # nothing looked up again
    try:
        await rig.start()
        row = rig.store.load_position(pid)
        assert row is not None and row.fees_paid == pytest.approx(venue_fee)
        assert not waiting_fees(rig.engine)
    finally:
        await rig.stop()
    assert _lookups(server) == looked
