"""Property: whatever the order of an order's reports — lookups that find it filled without
its records (booked by a record of the ledger's own with an estimated fee), the venue's
trade records, restarts, and the lookup after a restart that tells the venue's fee of each
estimate still waiting — the order's fill records never add up to more than it filled, the
fee booked on the position is the records' fee (never a correction applied twice), and once
everything is told the position holds the venue's fees exactly, nothing left waiting.

The real ledger on a real SQLite journal (a restart: a new ledger over the same file). The
engine's part is its hook, which books each correction of the open position (recorded); the
venue's is what it tells: its reports, and after a restart the fee of each estimate whose
span its trades cover (as the adapter's lookup, `recall_fee_estimates`, tells it).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType
from pmgui.domain.models import Fill, Order, OrderRequest
from pmgui.engine.ledger import FEE_ESTIMATES_KEY, Correction, OrderLedger
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store

SYM = "BTC/USDT:USDT"
CID = "pmg-e"
# the entry's two trades on the venue: (quantity, price, the venue's fee: 2 bp)
TRADES = ((0.4, 49500.0, 0.4 * 49500.0 * 0.0002), (0.6, 49400.0, 0.6 * 49400.0 * 0.0002))
CUM = (0.0, 0.4, 1.0)  # what the order had filled after each
VENUE_FEES = TRADES[0][2] + TRADES[1][2]


def _ledger(path: Path, corrections: list[Correction]) -> OrderLedger:
    led = OrderLedger(Store.open(path), Outbox(), lambda: 1_700_000_000.0)
    led.fee_estimated = lambda fill: False  # the venue's records say their fee
    led.rebook = lambda c: corrections.append(c) is None  # the engine holds it open
    led.load()
    return led


def _report(order: Order, k: int) -> Order:
    """The venue's report of the order after its `k` first trades."""
    value = sum(q * p for q, p, _ in TRADES[:k])
    return replace(order, status=OrderStatus.FILLED if k == 2 else OrderStatus.OPEN,
                   filled=CUM[k], average=value / CUM[k])


def _record(since: int, k: int) -> Fill:
    """The venue's record of trades `since`+1 … `k`, as the adapter tells a report: the
    quantity since the last it told, under the id of the order's filled after it."""
    qty = CUM[k] - CUM[since]
    value = sum(q * p for q, p, _ in TRADES[since:k])
    fee = sum(f for _, _, f in TRADES[since:k])
    return Fill(f"binanceusdm:o:x1:{CUM[k]:.12g}", CID, SYM, OrderSide.BUY, qty, value / qty,
                fee, 1.0, "x1")


def _venue_fee(before: float, end: float) -> float | None:
    """The fee of the trades that took the order from `before` to `end` (None: no trades
    make up that span, as the adapter's lookup finds)."""
    lo = next((i for i, c in enumerate(CUM) if abs(c - before) < 1e-9), None)
    hi = next((i for i, c in enumerate(CUM) if abs(c - end) < 1e-9), None)
    if lo is None or hi is None or hi <= lo:
        return None
    return sum(fee for _, _, fee in TRADES[lo:hi])


class _Run:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.corrections: list[Correction] = []
        self.led = _ledger(path, self.corrections)
        self.booked = 0.0  # the fees booked on the position: each delta's, then corrections
        self.told = 0  # the trades the adapter told records of (from the journal at a start)
        order = self.led.journal(OrderRequest(CID, SYM, OrderSide.BUY, OrderType.LIMIT, 1.0,
                                              price=49500.0, position_id="P1",
                                              role=OrderRole.ENTRY, reason="manual"))
        self.led.mark_sent(CID)
        self.acked = replace(order, status=OrderStatus.OPEN, exchange_id="x1")
        self.led.apply(self.acked, ())

    def apply(self, order: Order, fills: tuple[Fill, ...]) -> None:
        applied = self.led.apply(order, fills)
        assert applied is not None
        if applied.delta > 0:
            self.booked += applied.fee or 0.0

    def step(self, op: tuple[str, int]) -> None:
        kind, k = op
        if kind in ("lookup", "answer"):  # a lookup's answer, or the order's filled and
            self.apply(_report(self.acked, k), ())  # average alone: no records either way
        elif kind == "trade":  # the stream's report after trade k: a record since the last
            fills = (_record(self.told, k),) if k > self.told else ()
            self.told = max(self.told, k)
            self.apply(_report(self.acked, k), fills)
        elif kind == "restart":
            self.led.store.close()
            self.led = _ledger(self.path, self.corrections)
            journaled = self.led.store.order(CID)
            assert journaled is not None  # the adapter's progress: what the journal booked
            self.told = next(i for i, c in enumerate(CUM) if abs(c - journaled.filled) < 1e-9)
            self.recall()

    def recall(self) -> None:
        """What the adapter's lookup after a restart tells: each estimate's fill again, under
        its id, with the venue's fee, when the trades cover its span."""
        for order, fill, before in self.led.fee_estimates():
            fee = _venue_fee(before, before + fill.qty)
            if fee is not None:
                self.apply(order, (replace(fill, fee=fee),))

    def check(self) -> None:
        store = self.led.store
        records = [f for f in store.fills() if f.order_client_id == CID]
        journaled = store.order(CID)
        assert journaled is not None
        assert sum(f.qty for f in records) <= journaled.filled + 1e-9
        fees = self.booked + sum(c.fee_delta for c in self.corrections)
        assert abs(fees - sum(f.fee for f in records)) <= 1e-9
        waiting = store.get_setting(FEE_ESTIMATES_KEY, {}) or {}
        assert all(store.fill(fid) is not None for fid in waiting)


_op = st.one_of(st.tuples(st.sampled_from(["lookup", "answer", "trade"]), st.integers(1, 2)),
                st.just(("restart", 0)))


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_op, max_size=8))
def test_records_never_exceed_the_fill_and_no_fee_is_corrected_twice(
        ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = _Run(Path(tmp) / "j.db")
        try:
            for op in ops:
                run.step(op)
                run.check()
            # everything told: the trades' reports, a restart and its lookup
            for op in (("trade", 1), ("trade", 2), ("restart", 0)):
                run.step(op)
                run.check()
            records = [f for f in run.led.store.fills() if f.order_client_id == CID]
            assert abs(sum(f.qty for f in records) - 1.0) <= 1e-9
            assert abs(sum(f.fee for f in records) - VENUE_FEES) <= 1e-9
            fees = run.booked + sum(c.fee_delta for c in run.corrections)
            assert abs(fees - VENUE_FEES) <= 1e-9
            assert not run.led.store.get_setting(FEE_ESTIMATES_KEY, {})
        finally:
            run.led.store.close()


def test_a_lookup_s_estimate_is_corrected_once_after_a_restart() -> None:
    """The case the property starts from: found filled by a lookup, a restart, the lookup
    of its trades (once), and a restart more: the venue's fees, corrected once."""
    with tempfile.TemporaryDirectory() as tmp:
        run = _Run(Path(tmp) / "j.db")
        try:
            run.step(("lookup", 2))
            assert abs(run.booked - 1.0 * (49500 * 0.4 + 49400 * 0.6) * 0.0005) <= 1e-9
            run.step(("restart", 0))
            run.step(("restart", 0))
            run.check()
            assert len(run.corrections) == 1
            assert abs(run.booked + run.corrections[0].fee_delta - VENUE_FEES) <= 1e-9
        finally:
            run.led.store.close()


def test_a_venue_record_at_the_estimate_s_own_rate_is_no_correction(tmp_path: Path) -> None:
    """The paper venue's record at the rate the ledger estimated with, its fee rounded to 10
    decimals, takes the place of the ledger's own record: no correction of the position
    (nor an announcement of a closed one) for a difference that is no money."""
    corrections: list[Correction] = []
    led = _ledger(tmp_path / "j.db", corrections)
    try:
        order = led.journal(OrderRequest(CID, SYM, OrderSide.BUY, OrderType.MARKET, 0.0137,
                                         position_id="P1", role=OrderRole.ADD,
                                         reason="manual"))
        led.mark_sent(CID)
        price = 61234.573
        answer = replace(order, status=OrderStatus.FILLED, exchange_id="paper-7",
                         filled=0.0137, average=price)
        first = led.apply(answer, ())  # the create answer: booked with the estimate
        assert first is not None and first.fee == 0.0137 * price * 0.0005
        fee = round(0.0137 * price * 0.0005, 10)
        assert fee != first.fee  # (the venue's rounding)
        led.apply(answer, (Fill("paper-fill-7", CID, SYM, OrderSide.BUY, 0.0137, price, fee,
                                1.0, "paper-7"),))
        (record,) = [f for f in led.store.fills() if f.order_client_id == CID]
        assert record.id == "paper-fill-7"
        assert corrections == []
    finally:
        led.store.close()
