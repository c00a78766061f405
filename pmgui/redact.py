"""Secrets never reach a log, not even with `-v` (DESIGN §5, issue 8).

Why at record creation: ccxt's debug log dumps every request and response (headers with the
API key, bodies with listen keys, websocket URLs that embed the listen key). A filter on one
logger or one handler misses records that reach a handler added later (a GUI log view, a
test's capture). `install_log_redaction()` therefore wraps the log-record factory: every
record is masked once, when it is made, before any handler can see it. Only records that
pass their logger's level are made, so quiet debug logging costs nothing.

Two kinds of secrets are masked: values registered with `REDACTOR.add` (API key, secret,
password, each listen key the adapter sees) and token-shaped values by pattern (listen keys
and listen tokens, API key headers, signatures), which also covers a token in the very
response that first carries it.
"""

from __future__ import annotations

import logging
import re
import threading

_PATTERNS = (
    # listen keys / listen tokens in JSON bodies, query strings and repr()s
    re.compile(r"""(listen_?(?:key|token)["']?\s*[:=]\s*["']?)([A-Za-z0-9_\-.]{4,})""", re.I),
    # a user-data stream URL carrying the key as its last path part (Binance spot/inverse)
    re.compile(r"(/ws/)([A-Za-z0-9]{40,})"),
    # API key headers and credential-looking fields
    re.compile(r"""((?:x-mbx-apikey|x-bapi-api-key|x-bapi-sign|ok-access-key|ok-access-sign|"""
               r"""ok-access-passphrase|api_?key|secret|password|passphrase|signature)"""
               r"""["']?\s*[:=]\s*["']?)([^"'\s,&}]{4,})""", re.I),
)


class SecretRedactor(logging.Filter):
    """Masks registered secrets and token-shaped values (also usable as a logging.Filter)."""

    def __init__(self) -> None:
        super().__init__("pmgui-redact")
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def redact(self, text: str) -> str:
        for pat in _PATTERNS:
            text = pat.sub(lambda m: m.group(1) + "***", text)
        with self._lock:
            secrets = sorted((s for s in self._secrets if s in text), key=len, reverse=True)
        for s in secrets:
            text = text.replace(s, "***")
        return text

    def scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return
        masked = self.redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        self.scrub(record)
        return True


REDACTOR = SecretRedactor()
_installed = False
_install_lock = threading.Lock()


def install_log_redaction() -> None:
    """Mask secrets in every log record made from now on (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            REDACTOR.scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def protect_logs(*secrets: str | None) -> None:
    """Register `secrets` and make sure every log record is masked."""
    REDACTOR.add(*secrets)
    install_log_redaction()
