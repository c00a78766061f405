"""Price-stream recovery on a large book, through the real ccxt.pro against the Binance
emulator: a silent symbol re-dials only the connection carrying it (ccxt.pro spreads Binance's
streams over several, `streamLimits`), the connection state says what really happened, and
stale symbols are REST-polled in one batch instead of one round trip each."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any

import pytest

from pmgui.exchange.base import ConnectionState
from pmgui.exchange.ccxt_adapter import AdapterSettings, CcxtExchange
from pmgui.exchange.credentials import Credentials
from pmgui.exchange.retry import Backoff
from tests.fakes.binance_server import BinanceServer, ExchangeState, FakeMarket
from tests.fakes.recording_sink import RecordingSink

# the silence is found (resubscribe_after) well before anything counts as stale: a healthy
# stream shows "up" in every state unless the machine stalls for seconds
SETTINGS = AdapterSettings(stale_after=4.0, poll_interval=0.2, resubscribe_after=1.0,
                           order_poll_interval=0.3, supervisor_interval=0.05,
                           order_stream_check=0.1, backoff=Backoff(0.05, 2.0, 0.3, 0.0))
BASES = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE")


def _sym(base: str) -> str:
    return f"{base}/USDT:USDT"


def _state(bases: Iterable[str]) -> ExchangeState:
    state = ExchangeState()
    for i, base in enumerate(bases):
        state.add_market(FakeMarket(f"{base}USDT", base), price=str(100 + i))
    return state


@contextlib.asynccontextmanager
async def _running(bases: tuple[str, ...], streams: int, settings: AdapterSettings = SETTINGS,
                   stalled: bool = False, refused: tuple[str, ...] = (),
                   sink: RecordingSink | None = None, **clocks: Any,
                   ) -> AsyncIterator[tuple[BinanceServer, CcxtExchange, RecordingSink]]:
    """The adapter on the emulator, running into `sink` (a RecordingSink by default);
    `clocks`: the adapter's `clock` and `sleep`, where a test simulates time."""
    server = BinanceServer(_state(bases))
    server.faults.market_data_stalled = stalled
    server.faults.refused_paths = refused
    await server.start()
    config: dict[str, Any] = server.ccxt_config()
    config["options"]["streamLimits"] = {"linear": streams}
    ex = CcxtExchange("binanceusdm", options=config, credentials=Credentials("test-key", "s"),
                      settings=settings, **clocks)
    await ex.connect()
    ex.subscribe([_sym(b) for b in bases])
    sink = RecordingSink() if sink is None else sink
    task = asyncio.create_task(ex.run(sink))
    try:
        yield server, ex, sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()
        await server.stop()


async def _pump(server: BinanceServer, bases: tuple[str, ...]) -> None:
    """Every symbol's price moves all the time (a silenced one's stream says nothing)."""
    step = 0
    while True:
        step += 1
        for i, base in enumerate(bases):
            await server.set_price(_sym(base), Decimal(100 + i) + Decimal(step % 50) / 100)
        await asyncio.sleep(0.02)  # the market's pace, not a wait for a condition


@contextlib.asynccontextmanager
async def _pumping(server: BinanceServer, bases: tuple[str, ...]) -> AsyncIterator[None]:
    """Every symbol's price moving all the time (`_pump`) until the block's end."""
    pump = asyncio.create_task(_pump(server, bases))
    try:
        yield
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _ticking_again(sink: RecordingSink, bases: tuple[str, ...]) -> None:
    """Waits until a price of every symbol has come in since the call."""
    n = len(sink.ticks)
    await sink.wait_for(lambda: {t.symbol for t in sink.ticks[n:]} == {_sym(b) for b in bases})


def _stream_states(state: ConnectionState) -> dict[str, str]:
    return {name.removeprefix("price "): s for name, s in state.streams
            if name.startswith("price ")}


def _path_of(server: BinanceServer) -> dict[str, str]:
    """Exchange id (BTCUSDT) → the URL path of the market connection carrying its ticker."""
    return {stream.split("@")[0].upper(): path
            for path, streams in server.ws_subscriptions_by_path().items()
            for stream in streams}


async def _all_streaming(server: BinanceServer, sink: RecordingSink,
                         bases: tuple[str, ...]) -> dict[str, str]:
    ids = {f"{b}USDT" for b in bases}
    await sink.wait_for(lambda: set(_path_of(server)) == ids and sink.connections and all(
        s == "up" for s in _stream_states(sink.connections[-1]).values()))
    return _path_of(server)


async def test_a_silent_symbol_redials_only_its_own_connection() -> None:
    bases = BASES[:4]
    async with _running(bases, streams=2) as (server, ex, sink):
        async with _pumping(server, bases):
            paths = await _all_streaming(server, sink, bases)
            assert len(set(paths.values())) == 2  # spread over two connections
            silent_path = paths["BTCUSDT"]
            neighbours = {i for i, p in paths.items() if p == silent_path}
            healthy = {i for i, p in paths.items() if p != silent_path}
            assert healthy and len(neighbours) >= 2
            first = len(sink.connections)

            server.faults.silent_symbols = {"BTCUSDT"}
            await sink.wait_for(lambda: server.ws_connects_by_path[silent_path] >= 2)
            # the trader is told the truth: the torn-down connection's symbols are not "up"
            # until their stream is back; the healthy connection's symbols stay "up"
            await sink.wait_for(lambda: any(
                _stream_states(c)[_sym(i[:-4])] != "up"
                for c in sink.connections[first:] for i in neighbours))
            server.faults.silent_symbols = set()
            await _ticking_again(sink, bases)
            await sink.wait_for(lambda: all(
                s == "up" for s in _stream_states(sink.connections[-1]).values()))

        healthy_path = paths[next(iter(healthy))]
        assert server.ws_connects_by_path[healthy_path] == 1  # never re-dialled
        assert server.ws_closed_by_path.get(healthy_path, 0) == 0  # never interrupted
        assert ex.public_redials >= 1
        for state in sink.connections[first:]:
            streams = _stream_states(state)
            assert all(streams[_sym(i[:-4])] == "up" for i in healthy), streams


async def test_symbols_silent_together_redial_each_connection_once() -> None:
    async with _running(BASES, streams=3) as (server, ex, sink):
        async with _pumping(server, BASES):
            paths = await _all_streaming(server, sink, BASES)
            by_path: dict[str, set[str]] = {}
            for sid, path in paths.items():
                by_path.setdefault(path, set()).add(sid)
            assert len(by_path) == 3 and all(len(s) == 2 for s in by_path.values())
            first, second, quiet = sorted(by_path)
            # both symbols of one connection and one of another fall silent at once
            server.faults.silent_symbols = by_path[first] | {min(by_path[second])}
            await sink.wait_for(lambda: server.ws_connects_by_path[first] >= 2
                                and server.ws_connects_by_path[second] >= 2)
            redials = ex.public_redials if hasattr(ex, "public_redials") else None
            server.faults.silent_symbols = set()
            await _ticking_again(sink, BASES)
        # one re-dial per affected connection, not one per silent symbol; the third never
        assert server.ws_connects_by_path[quiet] == 1
        assert server.ws_closed_by_path.get(quiet, 0) == 0
        assert server.ws_connects_by_path[first] == 2
        assert server.ws_connects_by_path[second] == 2
        assert redials == 2


def _price_requests(server: BinanceServer) -> tuple[int, int]:
    """(REST price requests for one symbol, for many at once) the emulator has answered."""
    one = many = 0
    for method, path, params in server.requests:
        if method == "GET" and ("ticker/24hr" in path or "ticker/price" in path):
            if "symbol" in params:
                one += 1
            else:
                many += 1
    return one, many


async def test_stale_symbols_are_polled_in_one_batch() -> None:
    bases = tuple(f"T{i:02d}" for i in range(30))
    async with _running(bases, streams=50, stalled=True) as (server, _ex, sink):
        every = {_sym(b) for b in bases}
        # no stream ever says anything: the first poll covers every symbol in one call —
        # its answer is the first price of each symbol, before any symbol's second. (A
        # second round may already be under way when the wait ends: the next one is due
        # `poll_interval` after the first began, and on a busy machine the first can take
        # that long; the count of batch calls is not what this asserts.)
        await sink.wait_for(lambda: {t.symbol for t in sink.ticks} == every)
        assert {t.symbol for t in sink.ticks[:len(bases)]} == every
        one, many = _price_requests(server)
        assert one == 0 and many >= 1
        assert all(p.endswith("v2/ticker/price") for _, p, q in server.requests
                   if "ticker" in p)
        # the market moves; REST polling keeps up with it, still in batches
        for i, base in enumerate(bases):
            server.state.prices[f"{base}USDT"] = Decimal(200 + i)
        n = len(sink.ticks)
        await sink.wait_for(lambda: {t.symbol for t in sink.ticks[n:]
                                     if t.price >= 200} == every)
        one, many = _price_requests(server)
        assert many >= 2 and one < len(bases)
        # the window says where the prices come from: REST, not a stream
        assert set(_stream_states(sink.connections[-1]).values()) <= {"REST polling", "stale"}


@pytest.mark.parametrize("batch", [True, False])
async def test_a_failing_batch_poll_is_said_once(batch: bool,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A refused batch is one outage ("REST price poll"), said once and its end said once;
    without a batch call the tickers go per symbol, a few at a time."""
    bases = tuple(f"T{i:02d}" for i in range(12))
    caplog.set_level(logging.DEBUG, logger="pmgui.exchange.ccxt_adapter")
    async with _running(bases, streams=50, stalled=True) as (server, ex, sink):
        if not batch:
            ex._client().has["fetchLastPrices"] = False
            ex._client().has["fetchTickers"] = False
        server.faults.http_429 = 10_000
        server.faults.http_429_paths = ("ticker",)
        await sink.wait_for(lambda: len(_failed(server)) >= 3 * (1 if batch else len(bases)))
        server.faults.http_429 = 0
        every = {_sym(b) for b in bases}
        await sink.wait_for(lambda: {t.symbol for t in sink.ticks} == every)
        await sink.wait_for(lambda: any("works again after" in r.getMessage()
                                        for r in caplog.records))
    one, many = _price_requests(server)
    assert (one == 0) if batch else (many == 0)
    polls = [r for r in caplog.records if "REST price poll" in r.getMessage()]
    warned = [r.getMessage() for r in polls if r.levelno >= logging.WARNING]
    assert len(warned) == (1 if batch else len(bases)), warned


def _failed(server: BinanceServer) -> list[str]:
    return [p for _, p, _ in server.requests if "ticker" in p]


async def test_okx_a_silent_ticker_leaves_the_order_streams_alone() -> None:
    """OKX: one public connection for every ticker; its algo orders stream on `business`,
    a URL without "/private". A silent ticker re-dials the public connection only: the order
    streams (private `orders`, business `orders-algo`) are never interrupted."""
    from tests.fakes.okx_server import OkxServer

    server = OkxServer()
    await server.start()
    ex = CcxtExchange("okx", options=server.ccxt_config(),
                      credentials=Credentials("test-key", "s", "p"), settings=SETTINGS)
    await ex.connect()
    btc, eth = _sym("BTC"), _sym("ETH")
    ex.subscribe([btc, eth])
    sink = RecordingSink()
    task = asyncio.create_task(ex.run(sink))

    async def pump() -> None:
        step = 0
        while True:
            step += 1
            await server.set_price("BTC-USDT-SWAP", 50_000 + step % 50)
            await server.set_price("ETH-USDT-SWAP", 3_000 + step % 50)
            await asyncio.sleep(0.02)  # the market's pace, not a wait for a condition

    pumper = asyncio.create_task(pump())
    try:
        await sink.wait_for(lambda: sink.connections and sink.connections[-1].orders
                                    and server.ws_connects.get("business", 0) >= 1
                                    and server.ws_connects.get("private", 0) >= 1
                                    and all(s == "up" for s in
                                            _stream_states(sink.connections[-1]).values()))
        private = dict(server.ws_connects)
        server.faults.silent_insts = {"BTC-USDT-SWAP"}
        await sink.wait_for(lambda: server.ws_connects["public"] >= private["public"] + 1)
        server.faults.silent_insts = set()
        n = len(sink.ticks)
        await sink.wait_for(lambda: {t.symbol for t in sink.ticks[n:]} == {btc, eth})
        await sink.wait_for(lambda: all(
            s == "up" for s in _stream_states(sink.connections[-1]).values()))
    finally:
        pumper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumper
        closed = dict(server.ws_closed)  # before the teardown below closes everything
        connects = dict(server.ws_connects)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()
        await server.stop()
    assert closed.get("business", 0) == 0 and connects["business"] == private["business"]
    assert closed.get("private", 0) == 0 and connects["private"] == private["private"]
    assert connects["public"] == private["public"] + 1


async def test_a_connection_that_cannot_be_told_redials_every_public_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """A venue whose subscriptions name no symbol (here: the real clients' keys made opaque)
    gets the old full re-dial, and the log says why."""
    bases = BASES[:4]
    caplog.set_level(logging.INFO, logger="pmgui.exchange.ccxt_adapter")
    async with _running(bases, streams=2) as (server, ex, sink):
        async with _pumping(server, bases):
            paths = await _all_streaming(server, sink, bases)
            for url, client in list(ex._client().clients.items()):
                if "listenKey" not in url and "/private" not in url:
                    client.subscriptions = {f"opaque{i}": v for i, v in
                                            enumerate(client.subscriptions.values())}
            server.faults.silent_symbols = {"BTCUSDT"}
            await sink.wait_for(lambda: all(server.ws_connects_by_path[p] >= 2
                                            for p in set(paths.values())))
            server.faults.silent_symbols = set()
            await _ticking_again(sink, bases)
    said = [r.getMessage() for r in caplog.records if "cannot be told" in r.getMessage()]
    assert said and "BTC/USDT:USDT" in said[0] and "re-dialling every public" in said[0]


async def test_a_refused_batch_call_falls_back_to_tickers_per_symbol(
        caplog: pytest.LogCaptureFixture) -> None:
    """The batch endpoint refused outright (not rate-limited, not down): the stale prices
    still come, one ticker per symbol, and the refusal is said once."""
    bases = tuple(f"T{i:02d}" for i in range(6))
    caplog.set_level(logging.DEBUG, logger="pmgui.exchange.ccxt_adapter")
    async with _running(bases, streams=50, stalled=True,
                        refused=("ticker/price",)) as (server, _ex, sink):
        every = {_sym(b) for b in bases}
        await sink.wait_for(lambda: {t.symbol for t in sink.ticks} == every)
        one, _ = _price_requests(server)
        assert one >= len(bases)
    said = [r for r in caplog.records if r.getMessage().startswith("binanceusdm REST price "
                                                                   "poll:")]
    assert len([r for r in said if r.levelno >= logging.WARNING]) == 1


async def test_a_batch_poll_stays_one_batch_round_after_round() -> None:
    """The symbols of one poll are received one after another; their receipt times must not
    decide when each is polled next, or the batch splits (the first symbols due a round before
    the last) and stays split, a request per part. On a clock that moves a millisecond per
    price received and a supervisor round each 50 ms (both simulated, so the split is certain
    where it can happen at all), every round polls all the symbols in one call."""
    bases = tuple(f"T{i:02d}" for i in range(60))
    now = [1_000_000.0]

    def clock() -> float:
        return now[0]

    async def sleep(delay: float) -> None:
        now[0] += delay
        await asyncio.sleep(0.001)  # a real pause for the loop (pace, not a condition)

    # no re-dials and no order polls in the simulated clock's quick rounds: price polls only
    settings = dataclasses.replace(SETTINGS, resubscribe_after=1e9, order_poll_interval=1e9)

    class Sink(RecordingSink):
        async def on_tick(self, tick: Any) -> None:
            now[0] += 0.001  # each price received a moment after the one before
            await super().on_tick(tick)

    every = [_sym(b) for b in bases]
    async with _running(bases, streams=50, settings=settings, stalled=True, sink=Sink(),
                        clock=clock, sleep=sleep) as (server, ex, sink):
        await sink.wait_for(lambda: len(sink.ticks) >= 6 * len(bases))
        one, many = _price_requests(server)
        counts = {s: sum(1 for t in sink.ticks if t.symbol == s) for s in every}
        polled_at = {ex._last_poll_at[s] for s in every}
    assert one == 0 and many >= 6
    assert len(polled_at) == 1  # every symbol polled in the same round, every round
    assert max(counts.values()) - min(counts.values()) <= 1  # ... and as often as the others
