"""pmgui as a trader runs it, against the local Binance emulator, in real subprocesses.

The emulator (`ThreadedBinanceServer`) runs in the test process; pmgui runs as
`python -m pmgui.cli --headless` (or the scripted `tests.engine_driver`) with a real
config.toml whose `[exchange.options]` carries the emulator's URLs, credentials from
PMGUI_API_KEY/SECRET, and a real SQLite file. `problems()` compares the three views that
must agree: the store, the emulator's book and what `pmgui positions --json` prints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pmgui.domain.enums import OrderStatus
from pmgui.engine.ids import is_ours
from pmgui.store.db import Store
from tests.engine_driver import FORKS, cli_forked
from tests.fakes.binance_server import ExchangeState, ThreadedBinanceServer

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "pmgui-KEY-3f9a1c7e5b2d8a40"
API_SECRET = "pmgui-SECRET-d41e8b6a2f1c9e77"
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def _toml_lines(prefix: list[str], table: Mapping[str, Any], out: list[str]) -> list[str]:
    """Dotted-key TOML for a nested mapping (TOML basic strings are JSON strings here)."""
    for key, value in table.items():
        path = [*prefix, json.dumps(key)]
        if isinstance(value, Mapping):
            _toml_lines(path, value, out)
        elif isinstance(value, (bool, int, float, str)):
            out.append(f"{'.'.join(path)} = {json.dumps(value)}")
        else:
            raise TypeError(f"cannot write {value!r} as TOML")
    return out


def write_config(path: Path, server: ThreadedBinanceServer,
                 symbols: Mapping[str, Mapping[str, Any]]) -> Path:
    """config.toml pointing binanceusdm at the emulator through `[exchange.options]`."""
    lines = ["[exchange]", 'id = "binanceusdm"', "", "[exchange.options]"]
    _toml_lines([], server.ccxt_config(), lines)
    for symbol, spec in symbols.items():
        lines += ["", f"[symbols.{json.dumps(symbol)}]"]
        if "preset" in spec:
            lines.append(f"preset = {json.dumps(spec['preset'])}")
        if spec.get("set"):
            lines.append("[symbols." + json.dumps(symbol) + ".set]")
            _toml_lines([], spec["set"], lines)
    text = "\n".join(lines) + "\n"
    # what pmgui will read back is exactly what the emulator asked for
    assert tomllib.loads(text)["exchange"]["options"] == server.ccxt_config()
    path.write_text(text, encoding="utf-8")
    return path


def start_server() -> ThreadedBinanceServer:
    srv = ThreadedBinanceServer(ExchangeState.default())
    srv.start()
    srv.state.api_keys.add(API_KEY)
    return srv


def env() -> dict[str, str]:
    return {**os.environ, "PMGUI_API_KEY": API_KEY, "PMGUI_API_SECRET": API_SECRET,
            "PMGUI_NO_KEYRING": "1", "PMGUI_CONFIG_DIR": "/nonexistent-pmgui",
            "PYTHONUNBUFFERED": "1", "QT_QPA_PLATFORM": "offscreen"}


def run_cli(*args: str, ready: Callable[[str, int], object] | None = None,
            timeout: float = 60.0, environ: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """`pmgui ARGS` to its end, or — with `ready` — until `ready(its stderr so far, the
    number of its engine's housekeeping passes done)` holds, then Ctrl+C (SIGINT: the clean
    stop a trader's terminal sends); its exit code, stdout and stderr. `environ` is the
    process's environment (default: `env()`, the emulator's credentials).

    The process is a child of the fork server (tests.engine_driver.cli_forked): it runs
    pmgui.cli's main from the start; only the imports (ccxt: ~2-3 s of CPU a start) are
    shared. pmgui's own start-up as a fresh interpreter is tested in test_cli/test_startup.
    """
    tag = os.urandom(6).hex()
    out, err, passes = (Path(tempfile.gettempdir(), f"pmgui-cli-{tag}.{n}")
                        for n in ("out", "err", "passes"))
    proc = FORKS.Process(target=cli_forked, daemon=True, args=(
        list(args), dict(env() if environ is None else environ), str(ROOT), str(out),
        str(err), str(passes)))

    def text(path: Path) -> str:
        return path.read_text(encoding="utf-8") if path.exists() else ""

    proc.start()
    try:
        if ready is not None:
            try:
                wait_until(lambda: not proc.is_alive() or ready(text(err), len(text(passes))),
                           timeout, "")
            except AssertionError:
                raise AssertionError(f"pmgui {' '.join(args)}: not ready after {timeout} s"
                                     f"\n{text(err)[-3000:]}") from None
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        proc.join(timeout)
        if proc.is_alive():
            raise subprocess.TimeoutExpired(["pmgui", *args], timeout, text(out), text(err))
        return subprocess.CompletedProcess(["pmgui", *args], proc.exitcode, text(out),
                                           text(err))
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(10)
        for path in (out, err, passes):
            path.unlink(missing_ok=True)


def run_headless(config: Path, db: Path, ready: Callable[[str, int], object],
                 *extra: str) -> subprocess.CompletedProcess[str]:
    """`pmgui --headless` on `config` and `db` until `ready` (see run_cli and settled)."""
    # a live venue starts on a new database only when told so (--new-db)
    new = () if db.exists() else ("--new-db",)
    return run_cli("--headless", "--config", str(config), "--db", str(db), *new, *extra,
                   ready=ready)


def settled(server: ThreadedBinanceServer) -> Callable[[str, int], bool]:
    """For run_headless: the run's engine started (connected, reconciled, protecting: it
    logs "engine running on"), its order and market streams are connected to the emulator
    (a user-stream handshake and a market websocket since this call) and a housekeeping
    pass (pending orders, orphans, the protection sync) has run after the start — what a
    run left on for a while has done, counted instead of waited for."""
    srv = server.server
    users, markets = len(srv.user_ws_keys), sum(srv.ws_connects_by_path.values())

    def ready(stderr: str, passes: int) -> bool:
        return ("engine running on" in stderr and passes >= 1
                and len(srv.user_ws_keys) > users
                and sum(srv.ws_connects_by_path.values()) > markets)
    return ready


def positions_json(db: Path) -> list[dict[str, Any]]:
    r = run_cli("positions", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_until(cond: Callable[[], object], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """Poll `cond` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------- the three views

def ccxt_symbol(exchange_symbol: str) -> str:
    return f"{exchange_symbol[:-4]}/USDT:USDT"


def emulator_positions(state: ExchangeState) -> dict[tuple[str, str], float]:
    return {(ccxt_symbol(p.symbol), "long" if p.amount > 0 else "short"): float(abs(p.amount))
            for p in list(state.positions.values()) if p.amount != 0}


def store_view(db: Path) -> tuple[dict[tuple[str, str], float], dict[str, Any]]:
    """(open positions by (symbol, side) → qty, orders by client id) from the SQLite file."""
    store = Store.open(db, readonly=True)
    try:
        positions: dict[tuple[str, str], float] = {}
        for p in store.load_open_positions():
            key = (p.symbol, p.side.value)
            assert key not in positions, f"two open positions for {key} in the store"
            positions[key] = p.qty
        orders = {}
        for o in store.open_orders():
            orders[o.client_id] = o
        return positions, orders
    finally:
        store.close()


def problems(server: ThreadedBinanceServer, db: Path) -> list[str]:
    """Everything on which the store and the emulator disagree (empty: they agree).

    - the store's open positions are the emulator's positions (symbol, side, quantity);
    - per position at most one reduce-only SL and one TP of ours, sized to the position;
    - no two of our orders share a client id (a triggered stop's market child aside);
    - every open emulator order of ours is open in the store, and vice versa.
    """
    out: list[str] = []
    state = server.state
    remote = emulator_positions(state)
    if not db.exists():
        return ["no database yet"]
    try:
        local, local_orders = store_view(db)
    except Exception as exc:  # a locked or half-written file is "not yet"
        return [f"store unreadable: {exc}"]
    for key in set(remote) | set(local):
        r, lq = remote.get(key), local.get(key)
        if r is None or lq is None or abs(r - lq) > 1e-9:
            out.append(f"position {key}: emulator {r} vs store {lq}")
    algo = list(state.algo_orders.values())
    regular = list(state.orders.values())
    algo_ids = [o.client_id for o in algo if is_ours(o.client_id)]
    if len(algo_ids) != len(set(algo_ids)):
        out.append(f"duplicate conditional client ids: {sorted(algo_ids)}")
    children = {o.actual_order_id for o in algo if o.actual_order_id}
    reg_ids = [o.client_id for o in regular if is_ours(o.client_id)
               and o.order_id not in children]
    if len(reg_ids) != len(set(reg_ids)):
        out.append(f"duplicate order client ids: {sorted(reg_ids)}")
    open_remote = [o for o in algo + regular if o.is_open and is_ours(o.client_id)]
    for o in open_remote:
        known = local_orders.get(o.client_id)
        if known is None or known.status is not OrderStatus.OPEN:
            out.append(f"emulator order {o.client_id} {o.type} unknown to the store "
                       f"({known.status.value if known else 'absent'})")
    remote_open_ids = {o.client_id for o in open_remote}
    for cid, o in local_orders.items():
        if o.status is OrderStatus.OPEN and cid not in remote_open_ids:
            out.append(f"store order {cid} {o.type.value} open but not on the emulator")
        if o.status is OrderStatus.PENDING:
            out.append(f"store order {cid} still pending")
    for (symbol, _side), qty in remote.items():
        sym = symbol.replace("/", "").split(":")[0]
        for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            mine = [o for o in algo if o.is_open and o.symbol == sym and o.type == kind
                    and is_ours(o.client_id)]
            if len(mine) > 1:
                out.append(f"{symbol}: {len(mine)} {kind} orders")
            for o in mine:
                if not o.reduce_only or abs(float(o.qty) - qty) > 1e-9:
                    out.append(f"{symbol}: {kind} {o.client_id} qty {o.qty} for a {qty} "
                               f"position (reduce_only={o.reduce_only})")
    for o in open_remote:  # protective orders of positions that are gone
        if o.algo and (ccxt_symbol(o.symbol), "long" if o.side == "SELL" else "short") \
                not in remote:
            out.append(f"orphaned {o.type} {o.client_id} on {o.symbol}")
    return out


def protective(state: ExchangeState, symbol: str) -> dict[str, list[Any]]:
    """Open conditional orders on `symbol` (exchange id, e.g. BTCUSDT) by type."""
    out: dict[str, list[Any]] = {"STOP_MARKET": [], "TAKE_PROFIT_MARKET": []}
    for o in state.algo_orders.values():
        if o.is_open and o.symbol == symbol:
            out.setdefault(o.type, []).append(o)
    return out


def secrets_absent(*blobs: bytes | str) -> bool:
    for blob in blobs:
        data = blob.encode() if isinstance(blob, str) else blob
        if API_KEY.encode() in data or API_SECRET.encode() in data:
            return False
    return True


def db_bytes(db: Path) -> bytes:
    """The database file and its WAL/SHM companions, as stored on disk."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(db) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out
