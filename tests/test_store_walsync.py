"""The journal's fsyncs on the store's own sync thread, with group commit (`WalSyncer`).

A sync that STARTED after a journal's commit covers it; the journals waiting while a sync
runs share the next one. No sleeps: the sync is gated by events the test opens."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderType
from pmgui.domain.errors import StoreError
from pmgui.domain.models import OrderRequest
from pmgui.engine.ledger import OrderLedger
from pmgui.engine.outbox import Outbox
from pmgui.store import Store


def _req(cid: str) -> OrderRequest:
    return OrderRequest(cid, "BTC/USDT:USDT", OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                        trigger_price=90.0, reduce_only=True, role=OrderRole.STOP_LOSS)


class GatedSync:
    """Wraps the store's `sync_wal`: each sync records its thread and the orders committed
    when it began, then waits for the test to open its gate."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.real = store.sync_wal
        self.began: list[set[str]] = []  # per sync: the journal's client ids at its start
        self.threads: set[str] = set()
        self.entered = threading.Semaphore(0)
        self.gates: list[threading.Event] = []
        self.fail: BaseException | None = None
        store.sync_wal = self  # type: ignore[method-assign]

    def __call__(self) -> None:
        self.threads.add(threading.current_thread().name)
        with _reader(self.store) as ids:
            self.began.append(ids)
        gate = threading.Event()
        self.gates.append(gate)
        self.entered.release()
        gate.wait(30)
        if self.fail is not None:
            raise self.fail
        self.real()

    async def wait_entered(self) -> None:
        assert await asyncio.get_running_loop().run_in_executor(
            None, self.entered.acquire, True, 30)


class _reader:
    """The client ids committed to the journal, read through a connection of its own."""

    def __init__(self, store: Store) -> None:
        import sqlite3
        self.conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)

    def __enter__(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT client_id FROM orders")}

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


@pytest.fixture
def ledger(tmp_path: Path):
    store = Store.open(tmp_path / "s.db")
    yield OrderLedger(store, Outbox(buffered=False), clock=lambda: 1.0)
    store.close()


async def test_journals_waiting_while_a_sync_runs_share_the_next_one(ledger) -> None:
    """Six journals: the first one's sync begins alone; the five journaled while it runs
    are not covered by it (it began before their commits) and share one sync after it — two
    fsyncs, both on the store's one sync thread, each begun after every commit it covers."""
    gated = GatedSync(ledger.store)
    first = asyncio.ensure_future(ledger.journal_synced(_req("c-0")))
    await gated.wait_entered()
    rest = [asyncio.ensure_future(ledger.journal_synced(_req(f"c-{i}"))) for i in range(1, 6)]
    while not all(ledger.state(f"c-{i}") is not None for i in range(6)):
        await asyncio.sleep(0)  # the five are journaled (a loop turn)
    gated.gates[0].set()
    await first
    await gated.wait_entered()  # the second sync began ...
    assert not any(f.done() for f in rest)  # ... and only it can release the five
    gated.gates[1].set()
    await asyncio.gather(*rest)
    assert len(gated.began) == 2
    assert gated.began[0] >= {"c-0"}
    assert gated.began[1] >= {f"c-{i}" for i in range(6)}
    assert gated.threads == {"pmgui-wal-sync"}
    syncer = ledger.store._syncer
    assert syncer.syncs == 2 and syncer.waiters == 6


async def test_a_failed_sync_rejects_every_journal_it_covered(ledger) -> None:
    """A sync that fails fails each of its waiters: none of their orders is sent (they are
    rejected); the next sync serves the next journal."""
    gated = GatedSync(ledger.store)
    first = asyncio.ensure_future(ledger.journal_synced(_req("c-0")))
    await gated.wait_entered()
    rest = [asyncio.ensure_future(ledger.journal_synced(_req(f"c-{i}"))) for i in (1, 2)]
    while not all(ledger.state(c) is not None for c in ("c-1", "c-2")):
        await asyncio.sleep(0)
    gated.gates[0].set()
    await first
    await gated.wait_entered()
    gated.fail = OSError(5, "Input/output error")
    gated.gates[1].set()
    for f in rest:
        with pytest.raises(StoreError, match="Input/output error"):
            await f
    assert {str(ledger.state(c)) for c in ("c-1", "c-2")} == {"rejected"}
    gated.fail = None
    nxt = asyncio.ensure_future(ledger.journal_synced(_req("c-3")))
    await gated.wait_entered()
    gated.gates[2].set()
    await nxt
    assert str(ledger.state("c-3")) == "intended"


async def test_closing_the_store_serves_the_syncs_asked_for_then_refuses(tmp_path) -> None:
    """`close()` waits for the syncs already asked for (they complete), ends the thread;
    a sync asked for afterwards fails instead of hanging."""
    store = Store.open(tmp_path / "c.db")
    gated = GatedSync(store)
    store.journal_order(_req("c-0"), 1.0, sync=False)
    assert store.can_sync_wal
    fut = store.wal_synced()
    loop = asyncio.get_running_loop()
    await gated.wait_entered()
    closing = loop.run_in_executor(None, store.close)
    gated.gates[0].set()
    await closing
    await fut
    thread = store._syncer._thread
    assert thread is not None and not thread.is_alive()
    with pytest.raises(StoreError):
        store._syncer.synced()
