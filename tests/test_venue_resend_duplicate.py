"""A create that timed out, a lookup that did not see the order yet, a resend the venue
refuses as a duplicate client id: the order exists. Binance says -4116, Bybit 110072, OKX
51016 (51065 for an algo's algoClOrdId); on each the adapter looks the order up again and
reports it, never "rejected" while it rests on the exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pmgui.domain.enums import OrderSide, OrderStatus, OrderType
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.credentials import Credentials
from tests.fakes.bybit_server import BybitServer
from tests.fakes.okx_server import OkxServer
from tests.venue_support import BTC, FAST

pytestmark = pytest.mark.timeout(120)

VENUES = {"bybit": (BybitServer, "0.01", ("k", "s")),
          "okx": (OkxServer, "1", ("k", "s", "p"))}


@pytest.fixture(params=sorted(VENUES))
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any]]:
    srv = VENUES[request.param][0]()
    await srv.start()
    yield request.param, srv
    await srv.stop()


async def test_a_resend_refused_as_duplicate_is_looked_up_not_rejected(
        venue: tuple[str, Any]) -> None:
    name, server = venue
    _, qty, creds = VENUES[name]
    server.faults.create_timeouts = 1  # placed; the answer comes after ccxt gave up
    server.faults.response_delay = 3.0
    server.faults.lookups_blind = True  # … and the lookup does not see it yet
    ex = CcxtExchange(name, options=server.ccxt_config(), credentials=Credentials(*creds),
                      settings=FAST)
    await ex.connect()
    try:
        ex._client().timeout = 1000
        req = OrderRequest("pmgdup0001", BTC, OrderSide.BUY, OrderType.LIMIT, float(qty),
                           price=40_000.0)
        order = await ex.create_order(req)
        resting = [o for o in server.core.orders.values() if o.client_id == "pmgdup0001"]
        assert len(resting) == 1 and resting[0].is_open  # placed once, by the first send
        assert order.client_id == "pmgdup0001"
        assert order.status is OrderStatus.OPEN
        assert order.exchange_id == str(resting[0].id)
    finally:
        await ex.close()
