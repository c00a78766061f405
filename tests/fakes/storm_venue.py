"""The Binance emulator as a process of its own, pushing a price storm (`pmgui.bench.live`).

`python -m tests.fakes.storm_venue --symbols N --probes P` starts a `BinanceServer` in hedge
mode with N storm symbols (a long and a short of 1 each, opened "elsewhere", so pmgui adopts
them) and P probe symbols (one long each), prints one JSON line (`port`, `ccxt_config`) and then
reads commands from stdin, one per line, answering one JSON line each:

    status                  → open positions, open conditional orders (stops / TPs), subscriptions
    storm RATE SECONDS PROBE_EVERY SEED
                            → push tickers at RATE per second for SECONDS (a random storm symbol
                              each, prices on `pmgui.bench.storm.PricePath`); every PROBE_EVERY s
                              a probe whose stop rests here gets a price through it (the stop
                              triggers here, as on the venue), then its price goes back to 100.
                              Answers what was pushed, how late the pusher ran, and the time of
                              each probe crossing (time.time()).
    quit

Its CPU is its own: the process that measures pmgui reads pmgui's process only. Two indexes
keep the emulator O(1) per pushed price (subscribers by symbol, orders by symbol), so it keeps
2,000 prices a second with hundreds of symbols and a thousand resting orders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakes.binance_server import BinanceServer, ExchangeState, FakeMarket, FakeOrder

API_KEY = "bench-live-key"
PROBE_SL = Decimal("0.99")  # pmgui's probe stops sit 1 % under 100 (see pmgui.bench.live)


def storm_ids(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


def probe_ids(n: int) -> list[str]:
    return [f"P{i:02d}USDT" for i in range(n)]


class StormServer(BinanceServer):
    """`BinanceServer` with per-symbol indexes of its subscribers and orders."""

    def __init__(self, state: ExchangeState) -> None:
        super().__init__(state)
        self._orders_of: dict[str, list[FakeOrder]] = {}

    def _index(self, order: FakeOrder) -> None:
        self._orders_of.setdefault(order.symbol, []).append(order)

    async def _place(self, m: FakeMarket, params: dict[str, str], algo: bool) -> FakeOrder:
        order = await super()._place(m, params, algo)
        self._index(order)
        return order

    async def _trigger(self, algo: FakeOrder, price: Decimal) -> None:
        await super()._trigger(algo, price)
        child = self.state.orders.get(algo.actual_order_id or -1)
        if child is not None:
            self._index(child)

    async def _match(self, symbol: str) -> None:
        price = self.state.prices[symbol]
        orders = self._orders_of.get(symbol)
        if not orders:
            return
        live = [o for o in orders if o.is_open]
        self._orders_of[symbol] = live
        for order in live:
            if not order.is_open:
                continue
            if order.algo:
                ref = self.state.mark(symbol) if order.working_type == "MARK_PRICE" else price
                if self._would_trigger(order.type, order.side, order.stop_price, ref):
                    await self._trigger(order, price)
            elif order.type == "LIMIT" and self._limit_crosses(order, price):
                await self._fill(order, order.price, maker=True)

    async def _push_market(self, sym: str, only: web.WebSocketResponse | None = None) -> None:
        if self.faults.market_data_stalled or sym in self.faults.silent_symbols:
            return
        stream = sym.lower()
        for ws, subs in list(self._subs.items()):
            if only is not None and ws is not only:
                continue
            for kind in ("@ticker", "@miniTicker", "@bookTicker", "@trade", "@aggTrade"):
                name = stream + kind
                if name in subs and not ws.closed:
                    ev = self._market_events(sym, name)
                    if ev is not None:
                        await ws.send_json(ev)

    def stop_ready(self, sym: str) -> bool:
        """The probe's long is open here and its stop rests here."""
        pos = self.state.positions.get(f"{sym}:LONG")
        if pos is None or pos.amount <= 0:
            return False
        return any(o.algo and o.is_open and o.type == "STOP_MARKET"
                   for o in self._orders_of.get(sym, ()))

    def status(self) -> dict[str, Any]:
        st = self.state
        algos = [o for o in st.algo_orders.values() if o.is_open]
        return {"positions": sum(1 for p in st.positions.values() if p.amount != 0),
                "stops": sum(1 for o in algos if o.type == "STOP_MARKET"),
                "tps": sum(1 for o in algos if o.type == "TAKE_PROFIT_MARKET"),
                "subscriptions": len(self.ws_subscriptions()),
                "user_streams": self.user_stream_connected,
                "probes_ready": [s for s in st.markets if s.startswith("P")
                                 and self.stop_ready(s)]}


def make_state(n_symbols: int, n_probes: int) -> ExchangeState:
    state = ExchangeState(hedge_mode=True, wallet=Decimal("1e12"))
    state.api_keys.add(API_KEY)
    for sym in storm_ids(n_symbols) + probe_ids(n_probes):
        state.add_market(FakeMarket(sym, sym[:-4], tick_size="0.000001", step_size="0.001",
                                    min_qty="0.001", min_notional="5", price_precision=6),
                         price="100")
        state.leverage[sym] = 5
    for sym in storm_ids(n_symbols):
        state.set_position(sym, "1", "100", side="LONG")
        state.set_position(sym, "-1", "100", side="SHORT")
    for sym in probe_ids(n_probes):
        state.set_position(sym, "1", "100", side="LONG")
    return state


async def storm(server: StormServer, rate: float, seconds: float, probe_every: float,
                seed: int) -> dict[str, Any]:
    from pmgui.bench.storm import PricePath

    syms = [s for s in server.state.markets if s.startswith("S")]
    probes = [s for s in server.state.markets if s.startswith("P")]
    path = PricePath(syms, seed)
    rng = random.Random(seed + 1)
    crossings: list[tuple[str, float]] = []
    skipped = 0
    pushed = 0
    max_late = 0.0
    turn = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    next_probe = probe_every
    i = 0
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        due = i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        max_late = max(max_late, now - due)
        if probes and due >= next_probe:
            next_probe += probe_every
            order = [probes[(turn + k) % len(probes)] for k in range(len(probes))]
            turn += 1
            sym = next((p for p in order if server.stop_ready(p)), None)
            if sym is None:
                skipped += 1
            else:
                crossings.append((sym, time.time()))
                await server.set_price(sym, str(100 * PROBE_SL - Decimal("0.05")))
                server.state.prices[sym] = Decimal(100)  # back, for the re-open
                await server.push_ticker(sym)
                i += 1
                pushed += 2  # the crossing price, then 100 again
                continue
        sym = syms[rng.randrange(len(syms))]
        server.state.prices[sym] = Decimal(repr(path.next(sym)))
        await server._push_market(sym)
        i += 1
        pushed += 1
        if i % 64 == 0:
            await asyncio.sleep(0)
    wall = time.perf_counter() - t0
    return {"pushed": pushed, "wall": wall, "max_late": max_late, "crossings": crossings,
            "cpu": time.process_time() - cpu0,
            "probes_skipped": skipped}


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fakes.storm_venue")
    ap.add_argument("--symbols", type=int, default=250)
    ap.add_argument("--probes", type=int, default=8)
    args = ap.parse_args(argv)
    server = StormServer(make_state(args.symbols, args.probes))
    await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"port": server.port, "ccxt_config": server.ccxt_config(), "api_key": API_KEY})
    try:
        while True:
            line = (await reader.readline()).decode()
            if not line:
                break
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "quit":
                break
            if parts[0] == "status":
                say(server.status())
            elif parts[0] == "storm":
                rate, seconds, every, seed = (float(parts[1]), float(parts[2]),
                                              float(parts[3]), int(parts[4]))
                say(await storm(server, rate, seconds, every, seed))
            else:
                say({"error": f"unknown command {line.strip()!r}"})
    finally:
        await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
