"""Durability: SIGKILL a process that writes in a loop; every acknowledged write survives.

A child process writes through the real Store and prints an acknowledgement after each call
returns. The parent kills it with SIGKILL at an arbitrary moment, then reopens the file (which
runs quick_check and the schema checks) and verifies that every acknowledged write is there and
that each multi-write transaction is either complete or absent. The crash is repeated on the
same file, so reopening a database with a leftover WAL after a kill is exercised too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pmgui.store import Store

CHILD = textwrap.dedent("""
    import sys
    from pmgui.domain.enums import OrderSide, OrderType, OrderRole, Side, ActionType, Reason
    from pmgui.domain.models import Fill, OrderRequest, Position, Action
    from pmgui.store import Store

    path, prefix = sys.argv[1], sys.argv[2]
    store = Store.open(path)
    i = 0
    while True:
        pid = f"{prefix}-{i}"
        with store.transaction():  # three writes that must land together or not at all
            store.save_position(Position(
                id=pid, symbol="BTC/USDT:USDT", side=Side.LONG, qty=1.0 + i, entry=100.0,
                leverage=5, opened_at=float(i), initial_qty=1.0 + i, sl=90.0))
            store.journal_order(OrderRequest(
                client_id=f"c-{pid}", symbol="BTC/USDT:USDT", side=OrderSide.SELL,
                type=OrderType.STOP_MARKET, amount=1.0 + i, trigger_price=90.0,
                reduce_only=True, position_id=pid, role=OrderRole.STOP_LOSS), ts=float(i))
            store.record_fill(Fill(id=f"f-{pid}", order_client_id=None,
                                   symbol="BTC/USDT:USDT", side=OrderSide.BUY, qty=1.0 + i,
                                   price=100.0, fee=0.05, ts=float(i)), pid)
        print(f"T {pid}", flush=True)
        store.record_action(Action(type=ActionType.OPEN, reason=Reason.MANUAL,
                                   position_id=pid, price=100.0, ts=float(i)), symbol="BTC")
        print(f"A {pid}", flush=True)
        store.set_setting(f"last-{prefix}", i)
        print(f"S {i}", flush=True)
        # relaxed commits (WAL, not fsynced: the engine loop's hot path): a venue's report
        # with its fill, an intended order journaled for a worker thread's sync, an equity
        # point; a killed process loses none of them
        with store.relaxed(), store.transaction(whole=True):
            store.record_fill(Fill(id=f"g-{pid}", order_client_id=None,
                                   symbol="BTC/USDT:USDT", side=OrderSide.SELL, qty=0.5,
                                   price=101.0, fee=0.05, ts=float(i)), pid)
            store.journal_order(OrderRequest(
                client_id=f"r-{pid}", symbol="BTC/USDT:USDT", side=OrderSide.SELL,
                type=OrderType.TAKE_PROFIT_MARKET, amount=1.0, trigger_price=110.0,
                reduce_only=True, position_id=pid, role=OrderRole.TAKE_PROFIT), ts=float(i),
                sync=False)
        print(f"R {pid}", flush=True)
        store.record_equity(float(i), 100.0 + i, 100.0)
        print(f"E {i}", flush=True)
        i += 1
""")


def run_and_kill(path: Path, prefix: str, acks_before_kill: int) -> list[str]:
    """Start the writer, SIGKILL it after `acks_before_kill` acknowledgements; all ack lines."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while len(lines) < acks_before_kill:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.stderr.read() if proc.stderr else ''}")
            lines.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    lines.extend(x.strip() for x in rest.splitlines() if x.strip())
    return lines


def check(path: Path, prefix: str, acks: list[str]) -> None:
    with Store.open(path) as s:  # runs quick_check; raises StoreError on any corruption
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        positions = {p.id: p for p in s.load_open_positions()}
        orders = {o.client_id for o in s.open_orders()}
        fills = {f.id: f for f in s.fills()}
        actions = {a["position_id"] for a in s.actions(limit=1_000_000)}
        equity = {ts for ts, _ in s.equity_curve()}
        ours = [pid for pid in positions if pid.startswith(prefix + "-")]
        for pid in ours:  # atomic groups: all three writes or none
            assert f"c-{pid}" in orders and f"f-{pid}" in fills, pid
            assert fills[f"f-{pid}"].qty == positions[pid].qty
        for line in acks:
            kind, what = line.split(" ", 1)
            if kind == "T":
                assert what in positions, f"acknowledged transaction {what} lost"
            elif kind == "A":
                assert what in actions, f"acknowledged action {what} lost"
            elif kind == "S":
                assert s.get_setting(f"last-{prefix}") >= int(what)
            elif kind == "R":
                assert f"g-{what}" in fills and f"r-{what}" in orders, \
                    f"acknowledged relaxed write {what} lost"
            elif kind == "E":
                assert float(what) in equity, f"acknowledged equity point {what} lost"
        acked = [ln.split()[1] for ln in acks if ln.startswith("T ")]
        # nothing beyond the one write in flight at the moment of the kill
        assert len(ours) <= len(acked) + 1


def test_sigkill_loses_no_acknowledged_write(tmp_path):
    path = tmp_path / "crash.db"
    for round_no, n in enumerate((150, 90)):
        prefix = f"r{round_no}"
        acks = run_and_kill(path, prefix, n)
        assert len(acks) >= n
        check(path, prefix, acks)
    with Store.open(path, readonly=True) as s:  # both rounds are there, readable read-only
        ids = {p.id for p in s.load_open_positions()}
        assert any(i.startswith("r0-") for i in ids) and any(i.startswith("r1-") for i in ids)
