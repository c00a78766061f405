"""Price-stream recovery on a large book: the live adapter (binanceusdm through the real
ccxt.pro) against the Binance emulator in this process, no engine.

Two scenarios, each printed as one JSON line (`python -m pmgui.bench.live_resub [--json]`):

* `silent`: `symbols` symbols streaming (ccxt.pro spreads them over its 50 Binance
  connections), `rate` prices a second pushed round robin; one symbol's subscription then
  goes stuck on the connection carrying it (the venue keeps that socket open and says nothing
  more about it; a new connection works), as a venue's lost subscription does. Measured from
  the stuck moment for `window` s: the public connections the adapter closed, the healthy
  symbols whose stream it interrupted, the healthy prices the venue could not send because
  their symbol had no socket any more (`healthy_unsent`), the healthy prices pmgui received
  over websockets against those offered, the time until the stuck symbol's price was back and
  until every interrupted symbol had a price again (`all_back_s`), and this process's CPU.
* `stale`: `symbols` symbols whose public stream says nothing at all (REST only); every price
  moves once; measured: the time until pmgui had every new price, and the REST requests (one
  per symbol, or one per batch) the emulator answered for it.

Both need the source checkout (`tests/fakes`); `venue_root()` says whether it is there. The
venue shares this process and its CPU: the figures to compare are counts and recovery times,
paired with the same scenario on the other code (see COORD: A B A B …).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from pmgui.bench.live import venue_root


@dataclass
class SilentResult:
    symbols: int
    connections: int = 0  # public market sockets open before the silence
    redialled: int = 0  # of them closed by pmgui during the window
    healthy_interrupted: int = 0  # healthy symbols carried by a closed socket
    healthy_offered: int = 0  # prices of healthy symbols the venue wanted to send
    healthy_unsent: int = 0  # … that found no socket subscribed to them (lost)
    healthy_received: int = 0  # healthy prices pmgui received over websockets
    healthy_shown_down: int = 0  # healthy symbols the window showed not "up" meanwhile
    shown_down_uninterrupted: int = 0  # … of them never interrupted (an untruthful state)
    stuck_back_s: float = 0.0  # stuck moment → the stuck symbol's stream price is back
    all_back_s: float = 0.0  # → every interrupted symbol's stream price is back
    cpu_s: float = 0.0  # this process (venue included) during the window
    window_s: float = 0.0


@dataclass
class StaleResult:
    symbols: int
    move_to_all_s: float | None = None  # the move → pmgui had every new price by REST
    rest_requests: int = 0  # REST ticker requests answered meanwhile
    rest_per_symbol: int = 0  # … of them for one symbol
    cycle_max_s: float = 0.0  # the longest supervisor cycle meanwhile (its sleep excluded)


def _market_ids(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


def _venue(n: int) -> Any:
    """A `BinanceServer` with `n` markets that can leave one symbol stuck on the sockets open
    at a moment and counts what it could not send."""
    from tests.fakes.binance_server import BinanceServer, ExchangeState, FakeMarket

    state = ExchangeState()
    for mid in _market_ids(n):
        state.add_market(FakeMarket(mid, mid[:-4], min_notional="5"), price="100")

    class Venue(BinanceServer):
        def __init__(self) -> None:
            super().__init__(state)
            self.stuck: tuple[str, set[Any]] | None = None  # symbol, sockets deaf to it
            self.offered: dict[str, int] = {}
            self.unsent: dict[str, int] = {}

        async def _ticker24(self, params: dict[str, str]) -> Any:
            """As the venue's, with a base volume no stream price carries (`_Sink`)."""
            out = await super()._ticker24(params)
            for row in out if isinstance(out, list) else [out]:
                row["volume"] = _REST_VOLUME
            return out

        async def push(self, mid: str) -> None:
            """Send `mid`'s ticker to its subscribers (those deaf to it excepted)."""
            self.offered[mid] = self.offered.get(mid, 0) + 1
            stream = mid.lower() + "@miniTicker"
            sent = False
            for ws, subs in list(self._subs.items()):
                if stream not in subs or ws.closed:
                    continue
                if self.stuck is not None and self.stuck[0] == mid and ws in self.stuck[1]:
                    sent = True  # the venue thinks it is subscribed; nothing arrives
                    continue
                ev = self._market_events(mid, stream)
                if ev is not None:
                    await ws.send_json(ev)
                    sent = True
            if not sent:
                self.unsent[mid] = self.unsent.get(mid, 0) + 1

    return Venue()


_STREAM_VOLUME = 1000.0  # the emulator's miniTicker base volume
_REST_VOLUME = "7"  # its REST tickers' here (a REST last price has none: 0)
_MOVED = 200.0  # the price every symbol moves to in the stale scenario (from ~100)


class _Sink:
    """Receipt times per symbol of the prices that came over a stream (told from the REST
    polled ones by their volume), the REST ones counted apart, with the last REST price: a
    poll answered before a move and received after it is not the move arriving."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.rest: dict[str, list[float]] = {}
        self.rest_price: dict[str, float] = {}
        self.shown_down: set[str] | None = None  # symbols a state showed not "up" (armed)

    async def on_tick(self, tick: Any) -> None:
        stream = tick.volume == _STREAM_VOLUME
        into = self.times if stream else self.rest
        into.setdefault(tick.symbol, []).append(time.monotonic())
        if not stream:
            self.rest_price[tick.symbol] = tick.price

    async def on_candle(self, symbol: str, candle: Any, closed: bool) -> None:
        return None

    async def on_order_update(self, update: Any) -> None:
        return None

    async def on_connection(self, state: Any) -> None:
        if self.shown_down is not None:
            self.shown_down.update(name[6:] for name, st in state.streams
                                   if name.startswith("price ") and st != "up")


async def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _running(n: int, settings: Any, stalled: bool = False,
                   sleep: Any = asyncio.sleep) -> Any:
    from pmgui.exchange.ccxt_adapter import CcxtExchange
    from pmgui.exchange.credentials import Credentials

    venue = _venue(n)
    venue.faults.market_data_stalled = stalled
    await venue.start()
    ex = CcxtExchange("binanceusdm", options=venue.ccxt_config(),
                      credentials=Credentials("test-key", "s"), settings=settings,
                      sleep=sleep)
    await ex.connect()
    symbols = [f"{mid[:-4]}/USDT:USDT" for mid in _market_ids(n)]
    ex.subscribe(symbols)
    sink = _Sink()
    task = asyncio.create_task(ex.run(sink))
    try:
        yield venue, ex, sink, symbols
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()
        await venue.stop()


async def run_silent(symbols: int = 500, rate: float = 1000.0, window: float = 12.0,
                     resubscribe_after: float = 3.0) -> SilentResult:
    from pmgui.exchange.ccxt_adapter import AdapterSettings

    settings = AdapterSettings(resubscribe_after=resubscribe_after)
    res = SilentResult(symbols)
    async with _running(symbols, settings) as (venue, _ex, sink, syms):
        await _wait(lambda: len(sink.times) == symbols, 120, "every symbol's first price")
        ids = _market_ids(symbols)
        stop = asyncio.Event()

        async def pump() -> None:
            i, start, step = 0, time.monotonic(), 1.0 / rate
            while not stop.is_set():
                mid = ids[i % symbols]
                venue.state.prices[mid] = Decimal(100) + Decimal(i % 97) / 100
                await venue.push(mid)
                i += 1
                late = start + i * step - time.monotonic()
                if late > 0:
                    await asyncio.sleep(late)
                elif i % 64 == 0:
                    await asyncio.sleep(0)

        pumper = asyncio.create_task(pump())
        await asyncio.sleep(2.0)  # the storm settles (the market's pace, not a condition)
        stuck_id, stuck_sym = ids[0], syms[0]
        sockets = {ws for ws, subs in venue._subs.items() if f"{stuck_id.lower()}@miniTicker"
                   in subs}
        before = {ws: set(subs) for ws, subs in venue._subs.items()}
        dials = venue.ws_connects["market"]
        res.connections = len(before)
        venue.offered.clear()
        venue.unsent.clear()
        seen = {s: len(t) for s, t in sink.times.items()}
        cpu0, t0 = time.process_time(), time.monotonic()
        venue.stuck = (stuck_id, sockets)
        sink.shown_down = set()
        await asyncio.sleep(window)  # the window measured (its length is the parameter)
        stop.set()
        await pumper
        res.cpu_s = round(time.process_time() - cpu0, 3)
        res.window_s = round(time.monotonic() - t0, 3)
        res.redialled = venue.ws_connects["market"] - dials
        interrupted: set[str] = set()
        for ws, streams in before.items():
            if ws.closed or ws not in venue._subs:
                interrupted |= {s.split("@")[0].upper() for s in streams}
        healthy = set(ids) - {stuck_id}
        res.healthy_interrupted = len(interrupted & healthy)
        res.healthy_offered = sum(v for k, v in venue.offered.items() if k in healthy)
        res.healthy_unsent = sum(v for k, v in venue.unsent.items() if k in healthy)
        res.healthy_received = sum(len(t) - seen.get(s, 0) for s, t in sink.times.items()
                                   if s != stuck_sym)
        shown = {f"{sym[:-10]}USDT" for sym in sink.shown_down or ()} & healthy
        res.healthy_shown_down = len(shown)
        res.shown_down_uninterrupted = len(shown - interrupted)
        period = symbols / rate
        res.stuck_back_s = round(_back(sink, seen, stuck_id, t0, period), 3)
        res.all_back_s = round(max(_back(sink, seen, mid, t0, period)
                                   for mid in interrupted | {stuck_id}), 3)
    return res


def _back(sink: _Sink, seen: dict[str, int], mid: str, t0: float, period: float) -> float:
    """Stuck moment → the end of `mid`'s longest silence on its stream in the window, where
    that silence is longer than twice its pace (`period`: it was interrupted); 0: it was not.
    Infinite: no stream price after the stuck moment at all."""
    sym = f"{mid[:-4]}/USDT:USDT"
    ts = [t0, *sink.times.get(sym, [])[seen.get(sym, 0):]]
    if len(ts) == 1:
        return float("inf")
    gap, end = max((b - a, b) for a, b in itertools.pairwise(ts))
    return end - t0 if gap > 2 * period else 0.0


async def run_stale(symbols: int = 500) -> StaleResult:
    from pmgui.exchange.ccxt_adapter import AdapterSettings

    res = StaleResult(symbols)
    settings = AdapterSettings()
    cycles: list[float] = []  # supervisor cycle work, from one of its sleeps to the next
    woke = [0.0]

    async def sleep(delay: float) -> None:
        if delay == settings.supervisor_interval:
            if woke[0]:
                cycles.append(time.monotonic() - woke[0])
            await asyncio.sleep(delay)
            woke[0] = time.monotonic()
        else:
            await asyncio.sleep(delay)

    async with _running(symbols, settings, stalled=True, sleep=sleep) as (venue, _ex, sink,
                                                                          syms):
        await _wait(lambda: len(sink.rest) == symbols, 120, "every symbol's first price")
        await asyncio.sleep(1.0)  # a poll round or so in between (pace, not a condition)
        n0 = len(venue.requests)
        cycles.clear()
        t0 = time.monotonic()
        for mid in _market_ids(symbols):
            venue.state.prices[mid] = Decimal(_MOVED)
        # The new price itself, not just another REST price: a poll answered just before
        # the prices moved arrives after it with the old ones (seen on a busy machine:
        # "every symbol moved" in 52 ms with no request sent since). The venue logs a
        # request and reads its prices in one step of its loop, so the poll that brings the
        # new price is one logged after `n0`.
        await _wait(lambda: all(sink.rest_price.get(s) == _MOVED for s in syms), 120,
                    "every new price by REST")
        res.move_to_all_s = round(time.monotonic() - t0, 3)
        reqs = [r for r in venue.requests[n0:] if "ticker" in r[1]]
        res.rest_requests = len(reqs)
        res.rest_per_symbol = sum("symbol" in r[2] for r in reqs)
        res.cycle_max_s = round(max(cycles, default=0.0), 3)
    return res


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pmgui.bench.live_resub")
    ap.add_argument("scenario", choices=("silent", "stale"))
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--window", type=float, default=12.0)
    args = ap.parse_args(argv)
    if venue_root() is None:
        print("needs the source checkout's tests/fakes (run from it)", file=sys.stderr)
        return 2
    import pmgui.exchange.ccxt_adapter as adapter

    if args.scenario == "silent":
        res: Any = asyncio.run(run_silent(args.symbols, args.rate, args.window))
    else:
        res = asyncio.run(run_stale(args.symbols))
    print(json.dumps({"scenario": args.scenario, "adapter": adapter.__file__, **asdict(res)}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
