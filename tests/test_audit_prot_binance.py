"""Audit of protection on the Binance USDⓈ-M emulator: the real engine, the real ccxt
adapter and a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderSide, OrderType, Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import OrderRequest
from pmgui.engine import commands as cmd
from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.credentials import Credentials
from tests.fakes.binance_server import BinanceServer
from tests.venue_support import BTC, ETH, FAST, VenueRig, monitor, until

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


async def _settled(rig: VenueRig, cond) -> None:
    """Housekeeping passes until `cond` holds (a pass re-places what a fill left dirty)."""
    for _ in range(100):
        if cond():
            return
        await rig.engine.periodic()
        await until(lambda: True)
    assert cond()


async def test_protective_orders_cover_the_whole_position_after_fills_and_closes(
        server: BinanceServer, tmp_path: Path) -> None:
    """Quantities are floats: 0.02 + 0.01 - 0.02 is 0.009999999999999998 and 0.3 - 0.1 is
    0.19999999999999998, which the venue's precision truncates to 0.009 / 0.199. The
    protective orders must still cover the position to the last step (and the badge say
    so), not leave one step without a stop on the exchange."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite", monitor())
    try:
        await rig.start()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.SHORT, 0.02, 10))).position_id
        await server.set_price("BTCUSDT", "49500")
        await until(lambda: e.market.price(BTC) == 49_500.0, what="the new price")
        await e.handle(cmd.AddToPosition(pid, 0.01))
        await until(lambda: e.positions[pid].qty == pytest.approx(0.03), what="the add")
        await _settled(rig, lambda: len(algos(server)) == 4
                       and not any(o.client_id in e.ledger.creating for o in algos(server)))
        sizes = sorted(float(o.qty) for o in algos(server) if o.type == "STOP_MARKET")
        assert sizes == [0.01, 0.02]
        assert e.protection(e.positions[pid]).value == "on_exchange"
    finally:
        await rig.stop()


async def test_a_whole_position_stop_covers_the_position_after_a_partial_close(
        server: BinanceServer, tmp_path: Path) -> None:
    """A third of 0.3 closed: the stop and take-profit are re-placed for 0.2, not 0.199."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.3, 10, sl=49_000.0,
                                               tp=51_000.0, preset="manual"))).position_id
        res = await e.handle(cmd.ClosePosition(pid, 1 / 3))
        assert res.ok, res.message
        assert e.positions[pid].qty == pytest.approx(0.2)
        await _settled(rig, lambda: {float(o.qty) for o in algos(server)} != {0.3})
        assert sorted((o.type, float(o.qty)) for o in algos(server)) == [
            ("STOP_MARKET", 0.2), ("TAKE_PROFIT_MARKET", 0.2)]
        assert e.protection(e.positions[pid]).value == "on_exchange"
    finally:
        await rig.stop()


@pytest.mark.parametrize("hedge", [False, True])
async def test_per_tranche_orders_trigger_on_the_symbols_trigger_price(
        server: BinanceServer, tmp_path: Path, hedge: bool) -> None:
    """`protection.trigger = "last"` for the symbol: the per-tranche SL/TP (seed 002, after
    a second fill at another price) must trigger on the last price like the whole-position
    ones. They were sent without the symbol's trigger type: on the mark price."""
    server.state.hedge_mode = hedge
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite", monitor(trigger="last"))
    try:
        await rig.start()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.SHORT, 0.02, 10))).position_id
        assert {o.working_type for o in algos(server)} == {"CONTRACT_PRICE"}
        await server.set_price("BTCUSDT", "49500")
        await until(lambda: e.market.price(BTC) == 49_500.0, what="the new price")
        await e.handle(cmd.AddToPosition(pid, 0.01))
        await until(lambda: e.positions[pid].qty == pytest.approx(0.03), what="the add")

        def per_tranche() -> bool:
            return len(algos(server)) == 4 and {float(o.qty) for o in algos(server)} == \
                {0.02, 0.01}

        await _settled(rig, per_tranche)
        assert per_tranche(), [(o.type, o.qty, o.stop_price) for o in algos(server)]
        assert {o.working_type for o in algos(server)} == {"CONTRACT_PRICE"}, \
            [(o.type, o.qty, o.working_type) for o in algos(server)]
    finally:
        await rig.stop()


async def test_an_add_is_protected_on_the_exchange_when_the_command_answers(
        server: BinanceServer, tmp_path: Path) -> None:
    """The trader's Add at market: when the command answers, the stop on the exchange covers
    the grown position (as after an open or a level change), not only the old size until
    some later tick or housekeeping pass re-places it."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                               tp=51_000.0, preset="manual"))).position_id
        res = await e.handle(cmd.AddToPosition(pid, 0.01))
        assert res.ok, res.message
        assert e.positions[pid].qty == pytest.approx(0.03)
        assert sorted((o.type, float(o.qty)) for o in algos(server)) == [
            ("STOP_MARKET", 0.03), ("TAKE_PROFIT_MARKET", 0.03)]
        assert e.protection(e.positions[pid]).value == "on_exchange"
    finally:
        await rig.stop()


async def test_a_changed_trigger_type_re_places_the_exchange_orders(
        server: BinanceServer, tmp_path: Path) -> None:
    """The trader sets `protection.trigger = "last"` on a position whose orders trigger on
    the mark price: the exchange's SL/TP must follow (re-placed on the last price), not
    keep triggering on the mark because their levels did not change."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                               tp=51_000.0, preset="manual"))).position_id
        assert {o.working_type for o in algos(server)} == {"MARK_PRICE"}
        res = await e.handle(cmd.SetPreset(pid, "manual", {"protection.trigger": "last"}))
        assert res.ok, res.message
        await _settled(rig, lambda: {o.working_type for o in algos(server)}
                       == {"CONTRACT_PRICE"} and len(algos(server)) == 2)
        assert sorted((o.type, float(o.stop_price), float(o.qty)) for o in algos(server)) == [
            ("STOP_MARKET", 49_000.0, 0.02), ("TAKE_PROFIT_MARKET", 51_000.0, 0.02)]
        assert e.protection(e.positions[pid]).value == "on_exchange"
    finally:
        await rig.stop()


async def test_flatten_still_closes_when_its_first_look_at_the_positions_fails(
        server: BinanceServer, tmp_path: Path) -> None:
    """Flatten's one shared look at the venue's positions is refused (a burst of 429s that
    outlasts the adapter's retries): each position's close then looks for itself, as a
    single close does. It closed nothing at all, a whole book left open by one error."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0, preset="manual"))
        await e.handle(cmd.OpenPosition(ETH, Side.SHORT, 0.5, 10, sl=3_100.0, preset="manual"))
        assert len(rig.open_positions()) == 2
        server.faults.http_429_paths = ("positionRisk",)
        server.faults.http_429 = 4  # the adapter's tries of that one look
        res = await e.handle(cmd.CloseAll())
        assert rig.open_positions() == []
        assert all(p.amount == 0 for p in server.state.positions.values())
        assert algos(server) == []
        assert res.residual == ()
        assert "closed 2 position(s)" in res.message, res.message
    finally:
        await rig.stop()


@pytest.mark.parametrize("order_type", ["market", "limit"])
async def test_one_way_account_refuses_an_opposite_open_that_would_net_the_position(
        server: BinanceServer, tmp_path: Path, order_type: str) -> None:
    """A one-way account nets a symbol's orders: a "short" opened while a long is open only
    reduces the long. The engine sent it and booked a short beside the whole long (two
    positions shown, one 0.01 long on the venue). It must refuse, nothing sent."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0, preset="manual"))
        sent = len(server.state.orders) + len(server.state.algo_orders)
        with pytest.raises(ValidationError, match="one-way"):
            await e.handle(cmd.OpenPosition(BTC, Side.SHORT, 0.01, 10, sl=52_000.0,
                                            preset="manual", order_type=order_type,
                                            price=None if order_type == "market" else 50_500.0))
        assert len(server.state.orders) + len(server.state.algo_orders) == sent
        assert [(p.side, p.qty) for p in rig.open_positions()] == [(Side.LONG, 0.02)]
        assert float(server.state.positions["BTCUSDT"].amount) == 0.02
    finally:
        await rig.stop()


async def test_closing_never_cancels_the_traders_own_order_that_filled_against_it(
        server: BinanceServer, tmp_path: Path) -> None:
    """The trader's own limit sell, placed in the venue's app (not by pmgui), fills in part
    against pmgui's long: the engine books that fill on the position. When the position is
    then closed, pmgui cancelled that order too — an order it did not place (DESIGN §5:
    never touch what is not ours). It must still rest on the venue."""
    other = CcxtExchange("binanceusdm", options=server.ccxt_config(),
                         credentials=Credentials("test-key", "s"), settings=FAST)
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        await other.connect()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                               preset="manual"))).position_id
        await other.create_order(OrderRequest("web_trader_1", BTC, OrderSide.SELL,
                                              OrderType.LIMIT, 0.03, price=51_000.0))
        await server.fill_part("web_trader_1", "0.01")
        await until(lambda: e.positions[pid].qty == pytest.approx(0.01),
                    what="the trader's fill booked on the position")
        res = await e.handle(cmd.ClosePosition(pid))
        assert res.ok, res.message
        assert pid not in e.positions
        mine = next(o for o in server.state.orders.values() if o.client_id == "web_trader_1")
        assert mine.status == "PARTIALLY_FILLED"
        assert [p for m, p, q in server.requests if m == "DELETE"
                and q.get("origClientOrderId") == "web_trader_1"] == []
    finally:
        await other.close()
        await rig.stop()


async def test_an_open_whose_stop_is_already_crossed_says_it_was_closed(
        server: BinanceServer, tmp_path: Path) -> None:
    """The market falls while the entry is on its way: the long fills below its requested
    stop, the venue refuses the stop as already triggered and the engine closes the
    position at once (DESIGN §4). The command's answer must say so, not "opened"."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine

        async def market_falls(params: dict[str, str]) -> None:
            await server.set_price("BTCUSDT", "48900")  # through the stop at 49 000

        server.faults.before_create = market_falls  # as the entry arrives
        res = await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                              preset="manual"))
        assert rig.open_positions() == []
        assert float(server.state.positions["BTCUSDT"].amount) == 0
        assert "closed at once (stop_loss" in res.message, res.message
        assert res.outcomes == ()
    finally:
        await rig.stop()


async def test_a_close_filled_without_its_price_yet_is_not_reported_as_not_sent(
        server: BinanceServer, tmp_path: Path) -> None:
    """The emergency close fills, but the venue's reports carry no price and its trades are
    not visible yet: the answer said "nothing sent — its stop/TP order has fired", which
    is false on both counts (a trader would click again). It must say the close was sent,
    its fill to follow."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        pid = (await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                               preset="manual"))).position_id
        server.faults.priceless_reports = True
        server.faults.hidden_trades = 1_000
        server.faults.hold_order_events = True
        res = await e.handle(cmd.ClosePosition(pid))
        assert float(server.state.positions["BTCUSDT"].amount) == 0  # it did close
        assert "nothing sent" not in res.message and "fired" not in res.message, res.message
        assert "close sent" in res.message, res.message
    finally:
        await rig.stop()


async def test_flatten_with_one_close_refused_closes_the_others_and_keeps_its_stop(
        server: BinanceServer, tmp_path: Path) -> None:
    """One position's close is refused by the venue: the others close, that one keeps its
    stop on the exchange, and the answer names it as still open."""
    from tests.fakes.binance_server import BinanceApiError

    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0, preset="manual"))
        await e.handle(cmd.OpenPosition(ETH, Side.SHORT, 0.5, 10, sl=3_100.0, preset="manual"))
        refused: list[str] = []

        async def refuse(params: dict[str, str]) -> None:
            refused.append(params["symbol"])
            raise BinanceApiError(-1100, "Illegal characters found in a parameter.")

        server.faults.before_create = refuse  # the first close to arrive
        res = await e.handle(cmd.CloseAll())
        assert not res.ok
        assert len(refused) == 1
        left = rig.open_positions()
        assert [p.symbol.replace("/", "").split(":")[0] for p in left] == refused
        assert [p.split()[0] for p in res.residual] == [left[0].symbol]
        assert [o.symbol for o in algos(server) if o.type == "STOP_MARKET"] == refused
    finally:
        await rig.stop()


async def test_flatten_withdraws_working_entries_before_the_market_moves_them_into_fills(
        server: BinanceServer, tmp_path: Path) -> None:
    """Flatten with a resting buy-the-dip entry on another symbol: the market falls as the
    closes go out and would fill that entry. It was withdrawn only after the closes, so it
    filled first and the flatten left a new position open. Withdrawn first, nothing opens."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=48_000.0, preset="manual"))
        entry = await e.handle(cmd.OpenPosition(ETH, Side.LONG, 0.5, 10, order_type="limit",
                                                price=2_900.0, preset="manual"))
        assert entry.ok and "working" in entry.message, entry.message

        async def market_falls(params: dict[str, str]) -> None:
            await server.set_price("ETHUSDT", "2850")  # through the entry's limit

        server.faults.before_create = market_falls  # as the first close arrives
        res = await e.handle(cmd.CloseAll())
        assert res.ok, res.message
        assert rig.open_positions() == []
        assert all(p.amount == 0 for p in server.state.positions.values())
        assert not [o for o in server.state.orders.values() if o.is_open]
    finally:
        await rig.stop()


@pytest.mark.parametrize("order_type", ["market", "limit"])
async def test_an_open_at_another_leverage_never_changes_an_open_positions_leverage(
        server: BinanceServer, tmp_path: Path, order_type: str) -> None:
    """The venue's leverage is per symbol: opening the other leg (hedge mode) or a resting
    entry at 20x set the symbol to 20x under the open 10x long, whose ROI, emergency tiers
    and liquidation pmgui still computed at 10x. Refused instead, nothing changed."""
    server.state.hedge_mode = True
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0, preset="manual"))
        assert server.state.leverage["BTCUSDT"] == 10
        with pytest.raises(ValidationError, match="10x"):
            await e.handle(cmd.OpenPosition(BTC, Side.SHORT, 0.01, 20, sl=51_000.0,
                                            preset="manual", order_type=order_type,
                                            price=None if order_type == "market" else 50_500.0))
        assert server.state.leverage["BTCUSDT"] == 10
        assert [(p.side, p.leverage) for p in rig.open_positions()] == [(Side.LONG, 10)]
        # at the position's own leverage it is fine
        res = await e.handle(cmd.OpenPosition(BTC, Side.SHORT, 0.01, 10, sl=51_000.0,
                                              preset="manual", order_type=order_type,
                                              price=None if order_type == "market"
                                              else 50_500.0))
        assert res.ok, res.message
    finally:
        await rig.stop()


async def test_one_way_account_refuses_an_open_beside_a_working_entry_of_the_other_side(
        server: BinanceServer, tmp_path: Path) -> None:
    """A resting short entry on a one-way account nets with a long opened after it: once it
    fills it reduces the long instead of opening a short beside it. The long is refused while
    the entry works, nothing sent; cancelled, the long may open."""
    rig = VenueRig("binanceusdm", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        e = rig.engine
        res = await e.handle(cmd.OpenPosition(BTC, Side.SHORT, 0.01, 10, sl=52_000.0,
                                              preset="manual", order_type="limit",
                                              price=50_500.0))
        assert res.ok, res.message
        sent = len(server.state.orders) + len(server.state.algo_orders)
        with pytest.raises(ValidationError, match="short entry order is working"):
            await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                            preset="manual"))
        assert len(server.state.orders) + len(server.state.algo_orders) == sent
        assert rig.open_positions() == []
        (entry,) = e.entries.working()
        await e.handle(cmd.CancelOrder(entry.client_id))
        res = await e.handle(cmd.OpenPosition(BTC, Side.LONG, 0.02, 10, sl=49_000.0,
                                              preset="manual"))
        assert res.ok, res.message
    finally:
        await rig.stop()
