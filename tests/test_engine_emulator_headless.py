"""`pmgui --headless` against the Binance emulator, configured through `[exchange.options]`.

Real processes, a real config.toml, real SQLite files, the real ccxt client: what a trader
runs. The store, the emulator's book and `pmgui positions --json` must agree afterwards, and
the API key must appear nowhere pmgui writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pmgui.store.db import Store
from tests.emulator_support import (
    API_KEY,
    API_SECRET,
    BTC,
    db_bytes,
    positions_json,
    problems,
    protective,
    run_headless,
    secrets_absent,
    settled,
    start_server,
    write_config,
)
from tests.fakes.binance_server import ThreadedBinanceServer


@pytest.fixture
def server() -> Iterator[ThreadedBinanceServer]:
    srv = start_server()
    yield srv
    srv.stop()


def _adopted(server: ThreadedBinanceServer, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """BTC long 0.02 @ 50 000 opened elsewhere, adopted by a first headless run."""
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    cfg = write_config(tmp_path / "config.toml", server, {BTC: {"preset": "monitor"}})
    db = tmp_path / "pmgui.db"
    r = run_headless(cfg, db, settled(server), "-v")
    assert r.returncode == 0, r.stderr
    return cfg, db, [r.stdout, r.stderr]


def test_headless_adopts_with_the_symbol_preset_and_protects_once(server, tmp_path):
    cfg, db, outputs = _adopted(server, tmp_path)
    prot = protective(server.state, "BTCUSDT")
    (sl,) = prot["STOP_MARKET"]
    (tp,) = prot["TAKE_PROFIT_MARKET"]
    # monitor: stop_loss.pct 1 %, take_profit.pct 2 % of the entry, reduce-only, full size
    assert (float(sl.stop_price), float(tp.stop_price)) == (49_500.0, 51_000.0)
    assert sl.reduce_only and tp.reduce_only
    assert float(sl.qty) == float(tp.qty) == 0.02
    assert (sl.side, tp.side) == ("SELL", "SELL")

    (p,) = positions_json(db)
    assert (p["symbol"], p["side"], p["qty"], p["entry"], p["preset"]) == \
        (BTC, "long", 0.02, 50_000.0, "monitor")
    assert (p["sl"], p["tp"]) == (49_500.0, 51_000.0)
    assert sorted((o["role"], o["client_id"], o["trigger_price"]) for o in p["orders"]) == \
        sorted([("stop_loss", sl.client_id, 49_500.0), ("take_profit", tp.client_id, 51_000.0)])
    with Store.open(db, readonly=True) as store:
        opens = [a for a in store.actions(p["id"]) if a["type"] == "open"]
    assert [(a["reason"], a["rule"]) for a in opens] == [("reconcile", "reconcile")]
    assert problems(server, db) == []

    # a restart changes nothing: the same two orders, nothing re-sent
    r = run_headless(cfg, db, settled(server))
    assert r.returncode == 0, r.stderr
    again = protective(server.state, "BTCUSDT")
    assert [o.client_id for o in again["STOP_MARKET"]] == [sl.client_id]
    assert [o.client_id for o in again["TAKE_PROFIT_MARKET"]] == [tp.client_id]
    assert len(server.state.algo_orders) == 2
    assert problems(server, db) == []

    # the key and secret reach the exchange but nothing pmgui writes
    assert API_KEY in server.state.api_keys and API_SECRET not in cfg.read_text()
    assert secrets_absent(db_bytes(db), r.stdout, r.stderr, *outputs)
    # and the order stream's listen keys (each grants the account's order feed) neither,
    # although the -v run logged every request and response ccxt made
    keys = server.server.issued_listen_keys
    assert keys and any("listenKey" in o and "***" in o for o in outputs)
    assert not any(k in o for k in keys for o in [r.stdout, r.stderr, *outputs])


def test_position_closed_on_the_exchange_while_down(server, tmp_path):
    cfg, db, _ = _adopted(server, tmp_path)
    (p,) = positions_json(db)
    server.state.set_position("BTCUSDT", "0", "0")  # the trader closed it on the website
    assert len(protective(server.state, "BTCUSDT")["STOP_MARKET"]) == 1  # still resting

    r = run_headless(cfg, db, settled(server))
    assert r.returncode == 0, r.stderr
    assert "closed outside pmgui" in r.stderr
    assert positions_json(db) == []
    with Store.open(db, readonly=True) as store:
        closed = store.load_position(p["id"])
        logged = store.actions(p["id"])
    assert closed is not None and not closed.is_open and closed.exit_reason == "reconcile"
    assert [(a["type"], a["reason"]) for a in logged if a["type"] == "close"] == \
        [("close", "reconcile")]
    # the protective orders it left behind are cancelled, not orphaned
    assert protective(server.state, "BTCUSDT") == {"STOP_MARKET": [], "TAKE_PROFIT_MARKET": []}
    assert problems(server, db) == []


def test_partial_close_on_the_exchange_while_down(server, tmp_path):
    cfg, db, _ = _adopted(server, tmp_path)
    old = {o.client_id for o in server.state.algo_orders.values()}
    server.state.set_position("BTCUSDT", "0.005", "50000")  # the trader sold 0.015

    r = run_headless(cfg, db, settled(server))
    assert r.returncode == 0, r.stderr
    assert "quantity 0.020 → 0.005" in r.stderr
    (p,) = positions_json(db)
    assert p["qty"] == 0.005 and (p["sl"], p["tp"]) == (49_500.0, 51_000.0)
    prot = protective(server.state, "BTCUSDT")
    (sl,) = prot["STOP_MARKET"]
    (tp,) = prot["TAKE_PROFIT_MARKET"]
    # re-sized: new orders for the remaining quantity, the old ones cancelled
    assert float(sl.qty) == float(tp.qty) == 0.005
    assert not ({sl.client_id, tp.client_id} & old)
    with Store.open(db, readonly=True) as store:
        pos = store.load_position(p["id"])
    assert pos is not None and sum(t.qty for t in pos.tranches) == pytest.approx(0.005)
    assert problems(server, db) == []
