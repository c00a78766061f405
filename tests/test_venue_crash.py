"""SIGKILL crash loop per venue: the headless engine (tests.engine_driver, a real process,
config.toml pointing at the emulator through [exchange.options]) is killed at random moments
against the Bybit and OKX emulators in hedge mode; after every restart the store and the
emulator agree: the same legs and quantities, at most one stop and one take-profit per leg
at the venue (position TP/SL on Bybit, algo orders on OKX), each sized to its leg, and no
client id used twice."""

from __future__ import annotations

import os
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.emulator_support import _toml_lines, store_view, wait_until
from tests.fakes.bybit_server import BybitServer
from tests.fakes.okx_server import OkxServer
from tests.fakes.threaded_venue import ThreadedVenue
from tests.test_engine_emulator_crash import Driver

pytestmark = pytest.mark.timeout(300)

BTC = "BTC/USDT:USDT"
VENUES = {"bybit": (BybitServer, "BTCUSDT", "0.01"),
          "okx": (OkxServer, "BTC-USDT-SWAP", "1")}


def write_config(path: Path, venue: str, server: Any) -> Path:
    lines = ["[exchange]", f'id = "{venue}"', "", "[exchange.options]"]
    _toml_lines([], server.ccxt_config(), lines)
    lines += ["", f'[symbols."{BTC}"]', 'preset = "monitor"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problems(tv: ThreadedVenue, inst: str, db: Path) -> list[str]:
    def snapshot() -> tuple[dict, list, list]:
        core = tv.server.core
        legs = {("long" if p.signed > 0 else "short"): (float(abs(p.qty)), float(p.sl),
                                                        float(p.tp))
                for p in core.open_positions() if p.symbol == inst}
        cond = [(o.leg, o.kind, float(o.qty), o.client_id) for o in core.open_orders(inst)
                if o.conditional]
        ids = [o.client_id for o in core.orders.values() if o.client_id and not o.parent]
        return legs, cond, ids

    legs, cond, ids = tv.run(snapshot)
    out: list[str] = []
    try:
        local, _orders = store_view(db)
    except Exception as exc:  # a locked or half-written file is "not yet"
        return [f"store unreadable: {exc}"]
    remote = {(BTC, leg): q for leg, (q, _sl, _tp) in legs.items()}
    if remote != local:
        out.append(f"positions: emulator {remote} vs store {local}")
    if len(ids) != len(set(ids)):
        out.append(f"duplicate client ids: {sorted(ids)}")
    for leg, (qty, sl, tp) in legs.items():
        for kind in ("stop", "take_profit"):
            mine = [c for c in cond if c[1] == kind and
                    (c[0] == leg or (c[0] == "net"))]
            own = (sl if kind == "stop" else tp) > 0
            if len(mine) + own > 1:
                out.append(f"{leg}: {len(mine) + own} {kind} levels")
            if any(abs(c[2] - qty) > 1e-9 for c in mine):
                out.append(f"{leg}: {kind} sized {[c[2] for c in mine]} for {qty}")
    return out


def agree(tv: ThreadedVenue, inst: str, db: Path, log: Path, when: str) -> None:
    last: list[str] = []

    def ok() -> bool:
        last[:] = problems(tv, inst, db)
        return not last

    try:
        wait_until(ok, 30.0, when, interval=0.2)
    except AssertionError:
        raise AssertionError(f"{when}: {last}\n--- engine log ---\n"
                             f"{log.read_text()[-4000:]}") from None


def walk(tv: ThreadedVenue, inst: str, rng: random.Random, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        price = float(tv.run(lambda: tv.server.core.prices[inst]))
        step = rng.gauss(0.0, 0.003) if rng.random() > 0.05 else rng.choice((-0.012, 0.012))
        new = min(max(price * (1 + step), 45_000.0), 55_000.0)
        tv.call(tv.server.set_price, inst, str(Decimal(round(new, 1)).quantize(Decimal("0.1"))))
        time.sleep(0.08)


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_sigkill_crash_loop_per_venue(venue: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMGUI_API_PASSWORD", "pmgui-PASS-1")
    cls, inst, qty = VENUES[venue]
    rng = random.Random(20261130)
    tv = ThreadedVenue(cls)
    tv.start()
    try:
        def setup() -> None:
            tv.server.core.hedge_mode = True
            tv.server.core.set_position(inst, "long", qty, "50000")
            tv.server.core.set_position(inst, "short", qty, "50000")
        tv.run(setup)
        cfg = write_config(tmp_path / "config.toml", venue, tv.server)
        db, log = tmp_path / "pmgui.db", tmp_path / "engine.log"
        env_pw = os.environ.get("PMGUI_API_PASSWORD")
        assert env_pw
        for i in range(6):
            driver = Driver(cfg, db, log)
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.5, 2.0))
                driver.kill()
                continue
            driver.wait_ready()
            agree(tv, inst, db, log, f"run {i}: after restart")
            legs = tv.run(lambda: {p.side for p in tv.server.core.open_positions()})
            for leg in ("long", "short"):
                if leg not in legs and rng.random() < 0.5:
                    driver.send(f"open {BTC} {leg} {qty} 5")
            walk(tv, inst, rng, rng.uniform(0.2, 1.5))
            driver.kill()
        driver = Driver(cfg, db, log)
        driver.wait_ready()
        agree(tv, inst, db, log, "final restart")
        assert driver.stop() == 0
        agree(tv, inst, db, log, "after a clean stop")
    finally:
        tv.stop()
