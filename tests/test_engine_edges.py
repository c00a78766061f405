"""The engine at the edges (issue 8), through the real ccxt adapter over the local Binance
emulator with a real SQLite store: honest command results, start-up without a blind spot,
never closing what may not be ours, flatten."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pmgui.domain.enums import Protection
from pmgui.domain.models import Tick, frozen_map
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken
from pmgui.engine.settings import EngineSettings, SymbolRules
from tests.fakes.binance_server import BinanceServer
from tests.test_engine_emulator_faults import BTC, Rig, rig_fixture  # noqa: F401 (fixture `rig`)


async def test_set_targets_answers_local_only_with_the_venues_reason(server, rig):
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    await rig.start()
    pos = rig.position()
    await rig.engine.on_tick(Tick(BTC, 50_100.0, time.time()))
    ok = await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_700.0))
    assert ok.outcome("sl") == cmd.ProtectionOutcome("sl", 49_700.0, "on_exchange")
    assert ok.outcome("tp").protection == "on_exchange"

    # the venue refuses the new stop (a rate-limit storm on order placement)
    server.faults.http_429 = 10_000
    server.faults.http_429_paths = ("algoOrder",)
    server.faults.http_429_methods = ("POST",)
    res = await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_800.0))
    sl = res.outcome("sl")
    assert (sl.level, sl.protection) == (49_800.0, "local_only")
    assert "429" in sl.reason or "rate" in sl.reason.lower(), sl.reason
    assert "local only" in res.message and "49800" in res.message
    assert res.outcome("tp").protection == "on_exchange"  # the TP was not touched
    assert rig.engine.positions[pos.id].sl == 49_800.0  # guarded locally meanwhile
    # the manual move took the rules' path: one MOVE_SL action, journaled with the level
    moves = [a for a in rig.store.actions(pos.id) if a["type"] == "move_sl"]
    assert sorted(m["sl"] for m in moves) == [49_700.0, 49_800.0]
    assert [e.action.sl for e in rig.of(ActionTaken) if e.action.type.value == "move_sl"] \
        == [49_700.0, 49_800.0]

    server.faults.http_429 = 0
    await rig.engine.periodic()  # housekeeping finishes the move
    assert [float(o.stop_price) for o in rig.stops()] == [49_800.0]
    again = await rig.engine.handle(cmd.SetTargets(pos.id))  # nothing to change: just ask
    assert again.outcome("sl").protection == "on_exchange"
    assert rig.engine.protection(rig.position()) is Protection.ON_EXCHANGE
    rig.agree()


def closes_sent(server: BinanceServer) -> list[dict[str, str]]:
    """Every reduce-only market order pmgui asked the emulator for (accepted or not)."""
    return [p for m, path, p in server.requests
            if m == "POST" and path.endswith("/order") and p.get("type") == "MARKET"
            and p.get("reduceOnly", "false").lower() == "true"]


async def test_stop_filling_during_start_up_then_a_manual_reopen(server, tmp_path):
    """The issue's first defect: the exchange's stop fills after pmgui's first look at the
    exchange and its events never arrive; then the trader reopens the same symbol and side by
    hand. pmgui books the fired stop, sends no close, and leaves the new position alone."""
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    first = Rig(server, tmp_path / "pmgui.db")
    await first.start()
    old = first.position()
    (stop,) = [o for o in first.engine.orders.values() if o.role.value == "stop_loss"]
    await first.stop()  # the app is closed; the exchange keeps the stop

    server.faults.hold_order_events = True  # the stop's events never reach pmgui
    rig = Rig(server, tmp_path / "pmgui.db")
    looked = rig.exchange.fetch_positions

    async def first_look_then_the_stop_fires():
        snapshot = await looked()
        if server.state.positions["BTCUSDT"].amount:
            await server.set_price(BTC, 49_400)  # through the 49 500 stop: it fills now
        return snapshot

    rig.exchange.fetch_positions = first_look_then_the_stop_fires  # type: ignore[method-assign]
    try:
        await rig.start()
        assert server.state.positions["BTCUSDT"].amount == 0  # the stop did fire
        # the rules see the price through the stop: the stop's state is looked up first
        await rig.engine.on_tick(Tick(BTC, 49_400.0, time.time()))
        await rig.engine.periodic()
        if rig.engine.positions:  # its fill not known yet: the next pass settles it
            await rig.engine.reconcile()
        assert not rig.engine.positions
        assert closes_sent(server) == []

        # the trader opens the same symbol and side by hand
        server.state.set_position("BTCUSDT", "0.03", "49400", leverage=10)
        await rig.engine.reconcile()  # adopted as a new position
        (new,) = rig.engine.positions.values()
        assert new.id != old.id and new.qty == 0.03
        for price in (49_400.0, 49_300.0):  # below the old stop, above the new one
            await rig.engine.on_tick(Tick(BTC, price, time.time()))
        await rig.engine.periodic()
        await rig.engine.reconcile()
        assert float(server.state.positions["BTCUSDT"].amount) == 0.03  # untouched
        assert closes_sent(server) == []  # no close was ever sent
        # the stop that actually fired is in the journal, and closed the old position
        fired = rig.store.order(stop.client_id)
        assert fired is not None and fired.status.value == "filled" and fired.filled == 0.02
        (closed,) = rig.store.closed_positions()
        assert closed.id == old.id and closed.exit_reason == "stop_loss"
        assert closed.exit_price == pytest.approx(49_400.0, rel=0.01)
    finally:
        server.faults.hold_order_events = False
        await rig.stop()


# ------------------------------------------------------------------ flatten (paper + latency)

def paper_venue(n: int, latency: float = 0.0):
    """n markets on the real paper exchange, one long position on each, behind a latency."""
    from pmgui.domain.enums import Side
    from pmgui.domain.models import Market
    from pmgui.exchange.paper import PaperExchange
    from tests.fakes.latency import LatentExchange

    markets = {f"C{i:02d}/USDT:USDT": Market(f"C{i:02d}/USDT:USDT", tick_size=0.01,
                                             amount_step=0.001, min_amount=0.001)
               for i in range(n)}
    paper = PaperExchange(markets, None, realtime=False, slippage=0.0, balance=1e7,
                          clock=lambda: T0)
    for sym in markets:
        paper.seed_position(sym, Side.LONG, 1.0, 100.0, 5, ts=T0)
    return paper, LatentExchange(paper, latency)


T0 = 1_700_000_000.0


async def flatten(n: int, tmp_path: Path, latency: float = 0.05):
    from pmgui.engine.core import EngineCore
    from pmgui.engine.outbox import Outbox
    from pmgui.engine.settings import EngineSettings, SymbolRules
    from pmgui.store.db import Store

    paper, venue = paper_venue(n)
    store = Store.open(tmp_path / f"flat{n}.db")
    symbols = {s: SymbolRules("monitor") for s in paper.markets()}
    engine = EngineCore(venue, store, Outbox(),
                        EngineSettings(default_preset="manual", protect_throttle=0.0,
                                       symbols=symbols), clock=lambda: T0)
    await engine.start()  # adopts every position, SL and TP on the exchange
    for sym in paper.markets():
        await paper.deliver(Tick(sym, 101.0, T0), engine)
    assert len(engine.positions) == n
    assert len(await paper.fetch_open_orders()) == 2 * n
    venue.latency = latency
    venue.hold("create_order", n)  # concurrent closes all meet there; serial ones fail below
    venue.calls.clear()
    started = time.monotonic()
    res = await engine.handle(cmd.CloseAll())
    took = time.monotonic() - started
    try:
        assert res.ok and not res.residual, res.message
        assert await paper.fetch_positions() == []
        assert await paper.fetch_open_orders() == []
        assert not engine.positions
        closes = [c for c in venue.calls if c.name == "create_order" and "reduce" in c.detail
                  and "market" in c.detail]
        assert len(closes) == n  # one close per position, nothing re-sent
        flat_at = max(c.ended for c in closes) - started
        # protection is never stripped first: each position's SL/TP are cancelled only
        # after its close has filled
        for c in [c for c in venue.calls if c.name == "cancel_order"]:
            (close,) = [x for x in closes if x.detail.split()[0] == c.detail.split()[0]] or \
                [None]
            assert close is not None and c.started >= close.ended, c
        assert len(res.fills) == n and {f.price for f in res.fills} == {101.0}
        pnl = sum(p.realized_pnl for p in store.closed_positions())
        assert res.realized_pnl == pytest.approx(pnl) and res.realized_pnl > 0
        return took, flat_at, venue.max_in_flight.get("create_order", 0)
    finally:
        await engine.shutdown()


async def test_flatten_50_positions_at_once_never_stripping_protection_first(tmp_path):
    took, flat_at, concurrent = await flatten(50, tmp_path)
    # all 50 closes were in flight together: time-to-flat does not grow with the count
    assert concurrent == 50
    print(f"flatten 50 positions at 50 ms latency: flat after {flat_at:.3f} s, "
          f"command done after {took:.3f} s")


async def test_a_429_storm_leaves_no_unretrieved_future_exception(server, rig, caplog):
    import gc
    import logging

    caplog.set_level(logging.WARNING)
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    await rig.start()
    pid = rig.position().id
    server.faults.http_429 = 10_000  # every REST request: 429
    for i in range(3):
        await server.set_price(BTC, 50_000 + 10 * i)
        await rig.engine.periodic()
        res = await rig.engine.handle(cmd.SetTargets(pid, sl=49_600.0 + i))
        assert res.outcome("sl").protection == "local_only"
    flat = await rig.engine.handle(cmd.CloseAll())
    assert not flat.ok and rig.engine.positions  # nothing closed blind during the storm
    assert closes_sent(server) == []
    server.faults.http_429 = 0
    await rig.engine.stop_stream()
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.mark.parametrize("side", ["long", "short"])
def test_replay_guardian_reports_no_fault_for_its_own_replace(side, capsys):
    """pmgui's own stop replace (new order first, then cancel the old) is never reported
    as a protective order cancelled outside pmgui."""
    from pmgui.cli import main
    from pmgui.resources import resource_path

    csv = resource_path("data", "BTCUSD-1h-coinbase-2019.csv")
    assert main(["replay", str(csv), "--side", side, "--entry", "8554.06", "--qty", "0.5",
                 "--preset", "guardian", "--json"]) == 0
    out = capsys.readouterr()
    assert "outside pmgui" not in out.out + out.err
    assert '"type": "summary"' in out.out and '"errors"' not in out.out


def _rig_triggering_on(server: BinanceServer, db: Path, trigger: str) -> Rig:
    rules = SymbolRules("monitor", frozen_map({"protection.trigger": trigger}))
    return Rig(server, db, EngineSettings(default_preset="manual", protect_throttle=0.0,
                                          symbols=frozen_map({BTC: rules})))


async def test_a_crossed_stop_is_left_to_the_exchange_order_for_its_grace(server, tmp_path):
    """The exchange's own stop at the crossed level closes the position; a market close
    racing it is sent only when it has not filled within `exchange_stop_grace`. (A stop that
    triggers on the last price: the price the engine sees is the one it triggers on.)"""
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    rig = _rig_triggering_on(server, tmp_path / "pmgui.db", "last")
    try:
        await _stop_crossed_then_closed_after_grace(server, rig)
    finally:
        await rig.stop()


async def _stop_crossed_then_closed_after_grace(server: BinanceServer, rig: Rig) -> None:
    await rig.start()
    pid = rig.position().id
    grace = rig.engine.settings.exchange_stop_grace
    # the engine sees a price through its 49 500 stop the exchange has not acted on
    await rig.engine.on_tick(Tick(BTC, 49_400.0, time.time() + rig.offset))
    assert closes_sent(server) == [] and rig.engine.positions[pid].is_open
    rig.offset += grace / 2
    await rig.engine.on_tick(Tick(BTC, 49_400.0, time.time() + rig.offset))
    assert closes_sent(server) == []  # still the exchange's turn
    rig.offset += grace
    await rig.engine.on_tick(Tick(BTC, 49_400.0, time.time() + rig.offset))
    assert len(closes_sent(server)) == 1  # its stop did not fill: closed at market, once
    assert pid not in rig.engine.positions
    (closed,) = rig.store.closed_positions()
    assert closed.exit_reason == "stop_loss"


async def test_a_mark_triggered_stop_on_the_exchange_is_never_raced_on_the_last_price(
        server, tmp_path):
    """protection.trigger = "mark" (the default): the last price wicking through the level is
    not a stop-out. The venue's acknowledged mark-price stop decides; the engine sends no
    market close however long the last price stays through it."""
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    rig = _rig_triggering_on(server, tmp_path / "pmgui.db", "mark")
    try:
        await rig.start()
        pid = rig.position().id
        grace = rig.engine.settings.exchange_stop_grace
        for _ in range(3):
            await rig.engine.on_tick(Tick(BTC, 49_400.0, time.time() + rig.offset))
            rig.offset += grace
        assert closes_sent(server) == [] and rig.engine.positions[pid].is_open
    finally:
        await rig.stop()
