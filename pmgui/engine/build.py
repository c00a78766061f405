"""Assemble an engine from a configuration: store, exchange, core, manager thread."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from pmgui.config import Config
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.thread import EngineThread
from pmgui.exchange.demo import DEMO_POSITIONS
from pmgui.redact import REDACTOR, SecretRedactor, protect_logs
from pmgui.store.db import Store

log = logging.getLogger("pmgui")


# the redactor lives in pmgui.redact (the exchange adapter registers listen keys with it)
__all__ = ["REDACTOR", "SecretRedactor", "build_engine", "make_exchange", "protect_logs"]


def make_exchange(config: Config, store: Store, clock_holder: dict | None = None):
    """The venue named by the config; created on the manager thread."""
    ex = config.exchange
    if ex.id == "paper":
        from pmgui.exchange.demo import DEMO_MARKETS, demo_feed
        from pmgui.exchange.paper import PaperExchange

        seed = config.paper.seed if config.paper.seed is not None else random.randrange(2**31)
        feed = demo_feed(seed, realtime=True, tick_interval=0.5)
        return PaperExchange(dict(DEMO_MARKETS), feed, balance=config.paper.balance,
                             db=store.db, relaxed=store.relaxed, realtime=True,
                             funding_rate=config.paper.funding_rate)
    from pmgui.exchange.credentials import load_credentials
    from pmgui.exchange.venues.factory import create_exchange

    credentials = load_credentials(ex.id)
    if credentials is not None:
        protect_logs(credentials.api_key, credentials.secret, credentials.password)
    return create_exchange(ex.id, demo=ex.demo, options=dict(ex.options),
                           credentials=credentials)


def build_engine(config: Config, db_path: Path, outbox: Outbox | None = None) -> EngineThread:
    def factory(outbox: Outbox) -> EngineCore:
        store = Store.open(db_path)
        try:
            exchange = make_exchange(config, store)
        except BaseException:
            store.close()
            raise
        demo = DEMO_POSITIONS if (config.exchange.id == "paper"
                                and config.engine.demo_positions) else []
        return EngineCore(exchange, store, outbox, config.engine, demo=demo)

    return EngineThread(factory, outbox, db_path=db_path, exchange_id=config.exchange.id)
