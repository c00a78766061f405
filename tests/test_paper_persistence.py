"""The paper venue keeps its state in `paper_*` tables and gets it back after a crash."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlite_utils

from pmgui.domain.enums import OrderStatus, OrderType, Side
from pmgui.domain.errors import InvalidOrder
from pmgui.exchange.paper import SCHEMA_VERSION, PaperExchange
from tests.paper_support import BTC, ETH, MARKETS, Driver, RecordingSink, req

STOP, TP, LIMIT = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.LIMIT


def _open(path, **kw) -> PaperExchange:
    kw.setdefault("realtime", False)
    kw.setdefault("slippage", 0.0)
    return PaperExchange(dict(MARKETS), None, db=sqlite_utils.Database(path), **kw)


async def _snapshot(ex: PaperExchange) -> dict:
    orders = {cid: await ex.fetch_order_by_client_id(cid, o.symbol)
              for cid, o in ex._orders.items()}
    return {
        "positions": sorted(await ex.fetch_positions(), key=lambda p: (p.symbol, p.side)),
        "balance": await ex.fetch_balance(),
        "open": await ex.fetch_open_orders(),
        "orders": orders,
        "fills": ex.fills(),
        "leverage": {s: ex.leverage(s) for s in MARKETS},
        "prices": {s: await ex.fetch_price(s) for s in MARKETS},
    }


def _no_mark(positions: list) -> list:
    return [replace(p, mark=None, unrealized_pnl=None) for p in positions]


async def _build_state(path) -> tuple[PaperExchange, Driver]:
    ex = _open(path)
    await ex.connect()
    d = Driver(ex)
    await ex.set_leverage(BTC, 20)
    await ex.set_leverage(ETH, 5)
    await d.tick(60_000.0)
    await d.tick(3_000.0, ETH)
    await ex.create_order(req("btc-long", "buy", amount=0.1))
    await ex.create_order(req("btc-sl", "sell", STOP, 0.1, trigger_price=58_000.0,
                              reduce_only=True, position_id="P1"))
    await ex.create_order(req("btc-tp", "sell", TP, 0.1, trigger_price=63_000.0,
                              reduce_only=True, position_id="P1"))
    await ex.create_order(req("eth-short", "sell", amount=1.0, symbol=ETH))
    await ex.create_order(req("eth-limit", "sell", LIMIT, 0.5, symbol=ETH, price=3_100.0))
    cancel_me = await ex.create_order(req("eth-cancel", "buy", LIMIT, 0.5, symbol=ETH,
                                          price=2_500.0))
    await ex.cancel_order(cancel_me)
    await d.tick(3_150.0, ETH)  # fills the resting sell limit (increases the short)
    await d.tick(60_500.0)
    return ex, d


async def test_state_survives_a_kill_and_restart(db_path):
    ex, _ = await _build_state(db_path)
    before = await _snapshot(ex)
    assert len(before["positions"]) == 2 and len(before["open"]) == 2
    assert before["orders"]["eth-limit"].status is OrderStatus.FILLED
    # No close(): the process "dies" here. A fresh process opens the same file.
    again = _open(db_path, balance=123.0)  # the stored wallet wins over the constructor's
    await again.connect()
    after = await _snapshot(again)
    # Marks are market data, written at most every 5 s: the last seconds may be lost.
    assert _no_mark(after["positions"]) == _no_mark(before["positions"])
    assert after["balance"] == before["balance"]
    assert after["open"] == before["open"]
    assert after["orders"] == before["orders"]
    assert after["fills"] == before["fills"]
    assert after["leverage"] == before["leverage"]
    assert after["prices"][ETH] == before["prices"][ETH]  # written with its fill


async def test_a_clean_close_keeps_the_last_prices_too(db_path):
    ex, _ = await _build_state(db_path)
    before = await _snapshot(ex)
    await ex.close()
    again = _open(db_path)
    await again.connect()
    assert await _snapshot(again) == before


async def test_restored_venue_keeps_trading_with_fresh_ids(db_path):
    ex, _ = await _build_state(db_path)
    n_fills = len(ex.fills())
    again = _open(db_path)
    await again.connect()
    d = Driver(again)
    ups = await d.tick(57_800.0)  # the restored stop still protects the long (liq 57240)
    filled = [u for u in ups if u.fills]
    assert [u.order.client_id for u in filled] == ["btc-sl"]
    assert filled[0].fills[0].id == f"paper-fill-{n_fills + 1}"
    assert {u.order.client_id for u in ups if not u.fills} == {"btc-tp"}
    o = await again.create_order(req("new", "buy", amount=0.01))
    assert o.exchange_id not in {x.exchange_id for x in ex._orders.values()}
    with pytest.raises(InvalidOrder, match="already used"):
        await again.create_order(req("btc-long", "buy", amount=0.01))


async def test_a_refused_order_writes_nothing(db_path):
    ex = _open(db_path)
    await ex.connect()
    await Driver(ex).tick(3_200.0)
    db = sqlite_utils.Database(db_path)

    def dump() -> dict:
        return {t: list(db[t].rows) for t in ("paper_state", "paper_positions", "paper_orders",
                                               "paper_fills")}

    before = dump()
    with pytest.raises(InvalidOrder, match="below the minimum 5 USDT"):
        await ex.create_order(req("tiny", "buy", amount=0.001))
    assert dump() == before


async def test_tables_are_prefixed_and_initial_wallet_is_stored(db_path):
    ex = _open(db_path, balance=2_500.0)
    await ex.connect()
    db = sqlite_utils.Database(db_path)
    assert {t for t in db.table_names()} >= {"paper_state", "paper_positions", "paper_orders",
                                             "paper_fills", "paper_leverage", "paper_prices"}
    assert all(t.startswith("paper_") for t in db.table_names())
    state = {r["key"]: r["value"] for r in db["paper_state"].rows}
    assert float(state["balance"]) == 2_500.0


async def test_nests_inside_an_open_transaction_on_a_shared_connection(db_path):
    db = sqlite_utils.Database(db_path)
    db["engine_rows"].insert({"id": 1}, pk="id")
    ex = PaperExchange(dict(MARKETS), None, db=db, realtime=False)
    await ex.connect()
    await Driver(ex).tick(60_000.0)
    db.conn.execute("BEGIN")
    db.conn.execute("INSERT INTO engine_rows (id) VALUES (2)")
    await ex.create_order(req("a", "buy", amount=0.01))  # a savepoint, not a stray COMMIT
    assert db.conn.in_transaction
    db.conn.execute("COMMIT")
    other = sqlite_utils.Database(db_path)
    assert [r["id"] for r in other["engine_rows"].rows] == [1, 2]
    assert [r["client_id"] for r in other["paper_orders"].rows] == ["a"]


async def test_seeded_position_persists(db_path):
    ex = _open(db_path)
    await ex.connect()
    ex.seed_position(BTC, Side.LONG, 0.5, 50_000.0, 4, ts=10.0)
    again = _open(db_path)
    await again.connect()
    [p] = await again.fetch_positions()
    assert (p.symbol, p.side, p.qty, p.entry, p.leverage) == (BTC, Side.LONG, 0.5, 50_000.0,
                                                              4.0)
    assert again.leverage(BTC) == 4.0


async def test_a_failed_save_is_retryable_and_written_by_the_next_change(db_path):
    import sqlite3

    from pmgui.domain.errors import RetryableExchangeError

    ex = PaperExchange(dict(MARKETS), None, realtime=False, slippage=0.0,
                       db=sqlite_utils.Database(sqlite3.connect(db_path, timeout=0)))
    await ex.connect()
    await Driver(ex).tick(60_000.0)
    blocker = sqlite3.connect(db_path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RetryableExchangeError, match="look it up by its client id"):
            await ex.create_order(req("a", "buy", amount=0.01))
    finally:
        blocker.rollback()
        blocker.close()
    found = await ex.fetch_order_by_client_id("a", BTC)
    assert found is not None and found.status is OrderStatus.FILLED  # it did execute
    await ex.create_order(req("b", "buy", amount=0.01))
    again = _open(db_path)
    await again.connect()
    assert {o.client_id for o in again._orders.values()} == {"a", "b"}
    assert len(again.fills()) == 2
    [p] = await again.fetch_positions()
    assert p.qty == pytest.approx(0.02)


async def test_random_walk_resumes_from_the_restored_prices(db_path):
    from pmgui.exchange.feeds import RandomWalkFeed

    ex = _open(db_path)
    await ex.connect()
    await Driver(ex).tick(91_234.5)
    await ex.close()
    feed = RandomWalkFeed({BTC: 87_500.0, ETH: 3_150.0}, seed=1, start_ts=0, markets=MARKETS)
    again = PaperExchange(dict(MARKETS), feed, realtime=False,
                          db=sqlite_utils.Database(db_path))
    await again.connect()
    first = {}
    for ev in feed.events():
        if hasattr(ev, "price"):
            first.setdefault(ev.symbol, ev.price)
        if len(first) == 2:
            break
    assert first == {BTC: 91_234.5, ETH: 3_150.0}  # ETH had no stored price
    assert (await again.fetch_ohlcv(BTC, "1m", 10))[-1].close == 91_234.5


async def test_candle_history_survives_a_restart(db_path):
    """The chart's past is the venue's own: warm-up and completed candles come back after a
    restart instead of a new walk invented around the resumed price."""
    from pmgui.domain.models import Candle
    from pmgui.exchange.feeds import CandleClosed, RandomWalkFeed

    def feed():
        return RandomWalkFeed({BTC: 87_500.0, ETH: 3_150.0}, seed=1, start_ts=1_700_000_000.0,
                              markets=MARKETS)

    ex = PaperExchange(dict(MARKETS), feed(), realtime=False, db=sqlite_utils.Database(db_path))
    await ex.connect()
    warm = await ex.fetch_ohlcv(BTC, "1m", 50)
    assert len(warm) == 50
    d = Driver(ex)
    await d.tick(88_000.0)
    done = Candle(warm[-1].ts + 60, 87_500.0, 88_100.0, 87_400.0, 88_000.0, 12.5)
    await ex.deliver(CandleClosed(BTC, done), d.sink)
    await ex.close()

    again = PaperExchange(dict(MARKETS), feed(), realtime=False,
                          db=sqlite_utils.Database(db_path))
    await again.connect()
    back = await again.fetch_ohlcv(BTC, "1m", 51)
    assert back == [*warm, done]
    assert (await again.fetch_ohlcv(BTC, "5m", 3))[-1].close == 88_000.0
    # a venue without a database keeps nothing and writes nothing
    mem = PaperExchange(dict(MARKETS), feed(), realtime=False)
    await mem.connect()
    await mem.fetch_ohlcv(BTC, "1m", 50)
    assert mem._candle_rows == []


async def test_stored_candles_are_capped_per_symbol(db_path, monkeypatch):
    from pmgui.domain.models import Candle
    from pmgui.exchange import paper
    from pmgui.exchange.feeds import CandleClosed

    monkeypatch.setattr(paper, "_MAX_CANDLES", 5)
    ex = _open(db_path)
    await ex.connect()
    d = Driver(ex)
    await d.tick(60_000.0)
    for i in range(8):
        await ex.deliver(CandleClosed(BTC, Candle(60.0 * i, 1, 2, 0.5, 1.5, 1)), d.sink)
    await ex.close()
    rows = sqlite_utils.Database(db_path).execute(
        "SELECT ts FROM paper_candles WHERE symbol = ? ORDER BY ts", [BTC]).fetchall()
    assert [r[0] for r in rows] == [180.0, 240.0, 300.0, 360.0, 420.0]


async def test_the_periodic_price_write_takes_the_changed_symbols_and_restores_all(db_path):
    """Once a second only the symbols that ticked since are written (the others' rows hold
    their prices already); a restart restores every symbol's last written price."""
    ex = _open(db_path)
    await ex.connect()
    d = Driver(ex)
    await d.tick(60_000.0)
    await d.tick(3_000.0, ETH)
    ex._write_prices(force=True)  # both written
    await d.tick(61_000.0)  # BTC only
    assert ex._prices_dirty == {BTC}
    ex._last_price_write -= 10.0  # the second has passed (white-box: no waiting)
    ex._write_prices()
    assert ex._prices_dirty == set()
    rows = {r["symbol"]: r["price"] for r in ex.db["paper_prices"].rows}
    assert rows == {BTC: 61_000.0, ETH: 3_000.0}
    again = _open(db_path)
    await again.connect()
    assert (await again.fetch_price(BTC)).price == 61_000.0
    assert (await again.fetch_price(ETH)).price == 3_000.0


class _SteppingClock:
    """`time` for the paper module with a monotonic clock that moves 1 ms per reading (a
    write takes 1 ms) and can be moved on by the test: pacing without waiting."""

    def __init__(self) -> None:
        import time

        self._time = time
        self.t = 1000.0

    def monotonic(self) -> float:
        self.t += 0.001
        return self.t

    def __getattr__(self, name: str):
        return getattr(self._time, name)


async def test_a_due_price_write_over_many_symbols_goes_a_paced_chunk_per_commit(
        db_path, monkeypatch):
    """A large book's once-a-second price write is one chunk of rows per commit, the next
    chunk only after a pause (a write of 1,000 rows in one commit stalled the tick path for
    ~10 ms); every row ends with its symbol's last price, and a symbol that ticks during the
    write is written again by the next one."""
    import pmgui.exchange.paper as paper

    clock = _SteppingClock()
    monkeypatch.setattr(paper, "time", clock)
    monkeypatch.setattr(paper, "_PRICE_CHUNK", 1)
    ex = _open(db_path)
    await ex.connect()
    d = Driver(ex)
    await d.tick(60_000.0)
    await d.tick(3_000.0, ETH)
    ex._write_prices(force=True)  # both written at once
    clock.t += 10.0  # the second has passed
    await d.tick(61_000.0)  # due: the write takes what ticked (BTC) — one chunk
    await d.tick(3_100.0, ETH)
    ex._write_prices(force=True)

    def rows() -> dict:
        return {r["symbol"]: r["price"] for r in ex.db["paper_prices"].rows}

    await d.tick(62_000.0)
    await d.tick(3_200.0, ETH)
    assert rows() == {BTC: 61_000.0, ETH: 3_100.0}  # not due yet: nothing written
    clock.t += 10.0
    ex._write_prices()  # due: {BTC, ETH} taken, one row written
    assert len(ex._price_pass) == 1
    assert sorted(rows().values()) in ([3_100.0, 62_000.0], [3_200.0, 61_000.0])
    ex._write_prices()  # right after the chunk: paced, nothing
    assert len(ex._price_pass) == 1
    await d.tick(63_000.0)  # a tick during the write: its symbol waits for the next one
    clock.t += 0.1
    ex._write_prices()  # the pause is over: the rest
    assert ex._price_pass == []
    assert ex._prices_dirty == {BTC}
    got = rows()
    assert got[ETH] == 3_200.0 and got[BTC] in (62_000.0, 63_000.0)
    clock.t += 10.0
    ex._write_prices()
    assert rows() == {BTC: 63_000.0, ETH: 3_200.0}
    again = _open(db_path)
    await again.connect()
    assert (await again.fetch_price(BTC)).price == 63_000.0


async def test_a_price_write_over_many_symbols_takes_its_chunks_in_key_order(
        db_path, monkeypatch):
    """A large book's once-a-second price write goes chunk by chunk in the symbols' key
    order, so each commit's rows sit on a few neighbouring pages of the table and its key
    index (taken in set order, every chunk of a 1,000-symbol write touched nearly every page:
    63 WAL frames per write instead of 15): after the first chunk exactly one contiguous run
    of the sorted symbols holds the new prices. Every row still ends with its last price."""
    import pmgui.exchange.paper as paper
    from pmgui.domain.models import Market

    clock = _SteppingClock()
    monkeypatch.setattr(paper, "time", clock)
    monkeypatch.setattr(paper, "_PRICE_CHUNK", 8)
    symbols = [f"S{i:03d}/USDT:USDT" for i in range(64)]
    ex = PaperExchange({s: Market(s, 0.01, 0.001) for s in symbols}, None,
                       db=sqlite_utils.Database(db_path), realtime=False, slippage=0.0)
    await ex.connect()
    d = Driver(ex)
    for s in symbols:
        await d.tick(100.0, s)
    ex._write_prices(force=True)
    for s in reversed(symbols):
        await d.tick(101.0, s)
    clock.t += 10.0  # the second has passed

    def moved() -> list[str]:
        return sorted(r["symbol"] for r in ex.db["paper_prices"].rows if r["price"] == 101.0)

    ex._write_prices()  # due: the first chunk of 8
    first = moved()
    assert len(first) == 8
    start = symbols.index(first[0])
    assert first == symbols[start:start + 8]  # neighbours in key order, not any 8
    while ex._price_pass:
        clock.t += 1.0  # past the pause
        ex._write_prices()
    assert moved() == symbols


def test_a_venue_sharing_the_stores_connection_commits_relaxed_without_asking(tmp_path):
    """Given the store's `relaxed`, the paper venue's commits run inside it: not fsynced, and
    without reading the level back (`PRAGMA synchronous`) before each; a synced write of the
    store afterwards still commits at FULL."""
    import asyncio

    from pmgui.domain.models import Tick
    from pmgui.store import Store
    from tests.paper_support import RecordingSink

    store = Store.open(tmp_path / "v.db")
    ex = PaperExchange(dict(MARKETS), None, realtime=False, db=store.db,
                       relaxed=store.relaxed)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)

    async def go() -> None:
        await ex.connect()
        await ex.deliver(Tick(BTC, 100.0, 1.0), RecordingSink())
        await ex.create_order(req("c-1", "buy"))

    asyncio.run(go())
    store.set_setting("k", 1)
    store.close()
    assert "PRAGMA synchronous" not in statements  # never read back
    assert statements.count("COMMIT") >= 2
    first_full = statements.index("PRAGMA synchronous = FULL")
    assert "COMMIT" in statements[:first_full]  # the venue's commits came before it
    assert statements[first_full + 1:].count("COMMIT") >= 1


async def test_setting_the_leverage_a_symbol_has_writes_nothing_and_keeps_it(db_path):
    """Every market open sets the symbol's leverage first: when it is the one the venue
    already holds and no position of the symbol has margin to re-size, nothing is written
    (no commit in the open's step of the loop); a new value is written and survives."""
    ex = _open(db_path)
    await ex.connect()
    await ex.set_leverage(BTC, 20)
    commits: list[str] = []
    ex.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    await ex.set_leverage(BTC, 20)
    assert commits == []
    await ex.set_leverage(BTC, 15)
    assert commits == ["COMMIT"]
    ex.db.conn.set_trace_callback(None)
    again = _open(db_path)
    await again.connect()
    assert again.leverage(BTC) == 15.0


def _stored_state(db_path) -> dict[str, str]:
    return {r["key"]: r["value"] for r in sqlite_utils.Database(db_path)["paper_state"].rows}


def _venue_state(ex: PaperExchange) -> dict[str, str]:
    """`paper_state` as the venue in memory would have it: what a restart restores."""
    return {"balance": repr(ex._balance), "order_seq": str(ex._seq),
            "fill_seq": str(ex._fill_seq), "funding_paid": repr(ex.funding_paid),
            "funding_slot": str(ex._funding_slot if ex._funding_slot is not None else ""),
            "schema_version": str(SCHEMA_VERSION)}


async def _long_with_a_resting_stop(db_path) -> tuple[PaperExchange, Driver]:
    """A venue at 60,000 with a 0.1 long and its stop resting at 59,000."""
    ex = _open(db_path)
    await ex.connect()
    d = Driver(ex)
    await d.tick(60_000.0)
    await ex.create_order(req("long", "buy", amount=0.1))
    await ex.create_order(req("sl", "sell", STOP, 0.1, trigger_price=59_000.0,
                              reduce_only=True, position_id="P1"))
    return ex, d


async def test_a_stops_fill_rewrites_only_the_state_rows_it_changed(db_path):
    """A resting stop's fill changes the balance and the fill counter: only those two
    `paper_state` rows are written in the commit before its report, and the stored state
    is still the whole of the venue's (a restart restores it)."""
    ex, d = await _long_with_a_resting_stop(db_path)
    written: list[str] = []
    ex.db.conn.set_trace_callback(
        lambda sql: written.append(sql.split("VALUES ('")[1].split("'")[0])
        if "INTO paper_state" in sql else None)
    await d.tick(58_900.0)  # through the stop
    ex.db.conn.set_trace_callback(None)
    assert (await ex.fetch_order_by_client_id("sl", BTC)).status is OrderStatus.FILLED
    assert sorted(written) == ["balance", "fill_seq"]
    assert _stored_state(db_path) == _venue_state(ex)


async def test_a_stops_fill_updates_the_venues_rows_in_place(db_path):
    """The stop's fill, its take-profit's cancel and the state they change are written over
    the rows that hold them (each keeps its rowid: no delete and insert under a new one),
    and what is stored is what the venue holds (a restart restores it)."""
    ex, d = await _long_with_a_resting_stop(db_path)
    await ex.create_order(req("tp", "sell", TP, 0.1, trigger_price=70_000.0,
                              reduce_only=True, position_id="P1"))
    db = sqlite_utils.Database(db_path)

    def rowids(table: str, key: str) -> dict[str, int]:
        return {k: r for r, k in db.execute(f"SELECT rowid, {key} FROM {table}").fetchall()}

    orders, state = rowids("paper_orders", "client_id"), rowids("paper_state", "key")
    await d.tick(58_900.0)  # through the stop: it fills, the take-profit is cancelled
    assert (await ex.fetch_order_by_client_id("sl", BTC)).status is OrderStatus.FILLED
    assert (await ex.fetch_order_by_client_id("tp", BTC)).status is OrderStatus.CANCELED
    assert rowids("paper_orders", "client_id") == orders
    assert rowids("paper_state", "key") == state
    again = _open(db_path)
    await again.connect()
    assert await _snapshot(again) == await _snapshot(ex)


async def test_a_due_price_write_comes_after_the_reports_of_a_matched_tick(db_path,
                                                                           monkeypatch):
    """A tick through a stop on which the once-a-second price write is due: the stop's
    report reaches the sink before that write (market data, not venue state: a chunk of
    upserts and a commit between a fill and its report was part of tick → close
    acknowledged), and the write is still done on that tick."""
    import pmgui.exchange.paper as paper

    clock = _SteppingClock()
    monkeypatch.setattr(paper, "time", clock)
    ex, d = await _long_with_a_resting_stop(db_path)
    await d.tick(3_000.0, ETH)
    ex._write_prices(force=True)
    await d.tick(3_100.0, ETH)  # waits for the next write
    clock.t += 10.0  # the write is due

    def eth_row() -> float:
        return ex.db["paper_prices"].get(ETH)["price"]

    seen: list[tuple[OrderStatus, float]] = []

    class Sink(RecordingSink):
        async def on_order_update(self, update) -> None:
            seen.append((update.order.status, eth_row()))
            await super().on_order_update(update)

    d.sink = Sink()
    await d.tick(58_900.0)  # through the stop
    assert seen == [(OrderStatus.FILLED, 3_000.0)]  # reported before the price write
    assert eth_row() == 3_100.0  # written on the same tick, after the report


async def test_state_written_inside_a_transaction_that_rolled_back_is_written_again(db_path):
    """The venue's write nested in someone else's transaction is not known to be stored
    (the transaction may roll back): its next own commit writes every row again."""
    ex, d = await _long_with_a_resting_stop(db_path)
    ex.db.conn.execute("BEGIN")
    await ex.create_order(req("rest", "buy", LIMIT, 0.01, price=50_000.0))  # order_seq + 1
    ex.db.conn.execute("ROLLBACK")
    await d.tick(58_900.0)  # the stop fills: balance and fill_seq change, order_seq not
    assert _stored_state(db_path) == _venue_state(ex)
