"""Assemble an engine from a configuration: store, exchange, core, manager thread."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from pmgui.config import Config
from pmgui.domain.enums import Side
from pmgui.engine.core import DemoSpec, EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.thread import EngineThread
from pmgui.store.db import Store

log = logging.getLogger("pmgui")


def demo_specs() -> list[DemoSpec]:
    from pmgui.exchange.demo import DEMO_POSITIONS

    return [DemoSpec(d.symbol, Side(d.side), d.qty, d.leverage, d.sl_pct, d.tp_pct,
                     getattr(d, "preset", None)) for d in DEMO_POSITIONS]


def make_exchange(config: Config, store: Store, clock_holder: dict | None = None):
    """The venue named by the config; created on the manager thread."""
    ex = config.exchange
    if ex.id == "paper":
        from pmgui.exchange.demo import DEMO_MARKETS, demo_feed
        from pmgui.exchange.paper import PaperExchange

        seed = config.paper.seed if config.paper.seed is not None else random.randrange(2**31)
        feed = demo_feed(seed, realtime=True, tick_interval=0.5)
        return PaperExchange(dict(DEMO_MARKETS), feed, balance=config.paper.balance,
                             db=store.db, realtime=True)
    from pmgui.exchange.ccxt_adapter import CcxtExchange
    from pmgui.exchange.credentials import load_credentials

    return CcxtExchange(ex.id, demo=ex.demo, options=dict(ex.options),
                        credentials=load_credentials(ex.id))


def build_engine(config: Config, db_path: Path) -> EngineThread:
    def factory(outbox: Outbox) -> EngineCore:
        store = Store.open(db_path)
        try:
            exchange = make_exchange(config, store)
        except BaseException:
            store.close()
            raise
        demo = demo_specs() if (config.exchange.id == "paper"
                                and config.engine.demo_positions) else []
        return EngineCore(exchange, store, outbox, config.engine, demo=demo)

    return EngineThread(factory, db_path=db_path, exchange_id=config.exchange.id)
