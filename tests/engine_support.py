"""Helpers to run the real engine over the real paper exchange on a scripted price path."""

from __future__ import annotations

from pathlib import Path

from pmgui.domain.enums import Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.runtime import PositionRuntime
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.csvdata import PriceData
from pmgui.exchange.feeds import ReplayFeed
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

SYMBOL = "BTC/USDT:USDT"
MARKET = Market(SYMBOL, tick_size=0.1, amount_step=0.001, min_amount=0.001, min_notional=5.0)


def ticks(prices: list[float], start: float = 1_700_000_000.0, step: float = 1.0) -> PriceData:
    return PriceData("ticks", SYMBOL, tuple(Tick(SYMBOL, p, start + i * step)
                                            for i, p in enumerate(prices)))


class Harness:
    """Engine + paper exchange + store on one SQLite file, in simulated time."""

    def __init__(self, db: Path, prices: list[float], settings: EngineSettings | None = None,
                 slippage: float = 0.0) -> None:
        self.db_path = db
        self.store = Store.open(db)
        self.feed = ReplayFeed(ticks(prices), symbol=SYMBOL) if prices else None
        self.paper = PaperExchange({SYMBOL: MARKET}, self.feed, realtime=False,
                                   slippage=slippage, db=self.store.db)
        self.outbox = Outbox()
        self.events: list = []
        self.outbox.add_listener(self.events.append)
        self.engine = EngineCore(self.paper, self.store, self.outbox,
                                 settings or EngineSettings(default_preset="manual",
                                                            protect_throttle=0.0),
                                 clock=self.paper.now)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def one_long_open(db: Path, settings: EngineSettings | None = None,
                        at: float = 1_700_000_000.0) -> tuple[Harness, PositionRuntime]:
    """The engine over the paper venue, started, with one long open at 60,000 (its SL 58,500
    and TP 61,000 resting on the venue), and that position's runtime."""
    h = Harness(db, [], settings)
    await h.engine.start()
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, at), h.engine)
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_500.0,
                                                 tp=61_000.0))
    rt = h.engine.book.runtime(res.position_id)
    assert rt is not None
    return h, rt
