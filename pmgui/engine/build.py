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
from pmgui.store.db import Store

log = logging.getLogger("pmgui")


class SecretRedactor(logging.Filter):
    """Masks API secrets in log records before any handler writes them.

    Why: with `-v`, ccxt's debug log dumps every request with its headers, and Binance's
    API key travels in the `X-MBX-APIKEY` header. A key must never reach a log file or a
    console a trader pastes into a bug report (DESIGN §5).
    """

    def __init__(self) -> None:
        super().__init__("pmgui-redact")
        self._secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        hits = [s for s in self._secrets if s in message]
        if hits:
            for s in sorted(hits, key=len, reverse=True):
                message = message.replace(s, "***")
            record.msg, record.args = message, None
        return True


REDACTOR = SecretRedactor()


def protect_logs(*secrets: str | None) -> None:
    """Mask `secrets` in everything logged from now on: ccxt's own logger (where request
    dumps originate) and every handler the root logger has (records propagated from
    anywhere pass through those)."""
    REDACTOR.add(*secrets)
    for logger in (logging.getLogger("ccxt.base.exchange"), logging.getLogger()):
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)


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

    credentials = load_credentials(ex.id)
    if credentials is not None:
        protect_logs(credentials.api_key, credentials.secret, credentials.password)
    return CcxtExchange(ex.id, demo=ex.demo, options=dict(ex.options),
                        credentials=credentials)


def build_engine(config: Config, db_path: Path) -> EngineThread:
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

    return EngineThread(factory, db_path=db_path, exchange_id=config.exchange.id)
