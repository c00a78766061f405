"""Error mapping (ccxt → pmgui) and retries with backoff for exchange calls.

Why this exists: a trading app must never turn a clear refusal into a retry storm, and never
turn a transient hiccup into a trader-facing failure. ccxt already classifies most errors,
but only for the real hosts' URLs: pointed at a proxy or a local test server, Binance's
futures codes (-2019 margin insufficient, -2021 would trigger immediately, -4164 minimum
notional …) arrive as a bare `ExchangeError`. So the exchange's own error code, when the
message carries one, is looked up here first, and ccxt's class is the fallback.

Only the NetworkError family (timeouts, rate limits/DDoS protection, exchange unavailable)
is retryable. Insufficient funds, invalid orders and authentication errors reach the trader
as `pmgui.domain.errors` exceptions with a message written for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pmgui.domain import errors as pe
from pmgui.exchange.venues.codes import table_for

log = logging.getLogger(__name__)

T = TypeVar("T")

# Each venue's codes that ccxt maps only for the real hosts: pmgui.exchange.venues.codes

# Bybit / OKX codes for a trigger price that is already crossed (the "would trigger
# immediately" family), which ccxt maps to generic classes or not at all.
_TRIGGER_CODES = {
    "110092", "110093",  # bybit: expect Rising/Falling, trigger price vs current
    "51277", "51278", "51279", "51280",  # okx: TP/SL trigger price vs last price
}
_TRIGGER_TEXT = re.compile(
    r"immediately trigger|would trigger immediately|expect (rising|falling)|"
    r"trigger price (cannot|must|should)|sl trigger price|tp trigger price",
    re.IGNORECASE,
)
_CODE_IN_TEXT = re.compile(r'"(?:code|retCode|sCode)"\s*:\s*"?(-?\d+)"?')


def _ccxt_errors():
    """ccxt's error classes, imported on first use: ccxt takes ~1 s to import and the paper
    venue never needs it (start-up)."""
    from ccxt.base import errors

    return errors


class OrderStatusUnknown(pe.RetryableExchangeError):
    """A create got no answer and the lookup by client id failed too: the order may exist.

    The caller must keep the journaled order pending and let reconciliation decide; it must
    neither send it again nor mark it rejected.
    """

    def __init__(self, message: str, client_id: str) -> None:
        super().__init__(message)
        self.client_id = client_id


def exchange_codes(message: str) -> list[str]:
    """Every venue error code in a ccxt message body (okx nests sCode under code)."""
    return [c for c in _CODE_IN_TEXT.findall(message) if c not in ("0", "200")]


def exchange_code(message: str) -> str | None:
    """The venue's first numeric error code embedded in a ccxt message body, if any."""
    codes = exchange_codes(message)
    return codes[0] if codes else None


def _venue_message(message: str) -> str:
    """The exchange's own msg text from a ccxt error, for the trader's message."""
    brace = message.find("{")
    if brace >= 0:
        try:
            body = json.loads(message[brace:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("msg", "retMsg", "sMsg"):
                if body.get(key):
                    return str(body[key])
            data = body.get("data")
            if isinstance(data, list) and data and isinstance(data[0], dict):
                if data[0].get("sMsg"):
                    return str(data[0]["sMsg"])
    return message


def map_error(exc: BaseException, exchange_id: str, *, trigger: bool = False) -> pe.ExchangeError:
    """Translate any exception from a ccxt call into a pmgui ExchangeError subclass.

    `trigger` says the failed request was a stop/take-profit order, so that a generic
    "immediately fillable" reply is recognised as "would trigger immediately".
    Already-mapped pmgui errors pass through unchanged.
    """
    cx = _ccxt_errors()
    if isinstance(exc, pe.ExchangeError):
        return exc
    text = str(exc)
    venue_msg = _venue_message(text)
    codes = exchange_codes(text)
    who = exchange_id
    table = table_for(exchange_id)
    for code in codes:
        if code in table:
            cls, human = table[code]
            return cls(f"{who}: {human} ({venue_msg})")
    if (_TRIGGER_CODES.intersection(codes) or _TRIGGER_TEXT.search(text)
            or (trigger and isinstance(exc, cx.OrderImmediatelyFillable))):
        return pe.OrderWouldTriggerImmediately(
            f"{who}: the stop/take-profit price is already crossed, the order would trigger "
            f"at once ({venue_msg})")
    if isinstance(exc, cx.InsufficientFunds):
        return pe.InsufficientFunds(f"{who}: insufficient funds or margin ({venue_msg})")
    if isinstance(exc, cx.AuthenticationError):
        return pe.AuthenticationError(
            f"{who}: authentication failed, check the API key, secret and permissions "
            f"({venue_msg})")
    if isinstance(exc, cx.OrderNotFound):
        return pe.InvalidOrder(f"{who}: order not found ({venue_msg})")
    if isinstance(exc, cx.InvalidOrder | cx.BadSymbol | cx.BadRequest | cx.ArgumentsRequired):
        return pe.InvalidOrder(f"{who}: the order was rejected ({venue_msg})")
    if isinstance(exc, cx.DDoSProtection | cx.RateLimitExceeded):
        return pe.RetryableExchangeError(f"{who}: rate limited, slowing down ({venue_msg})")
    if isinstance(exc, cx.RequestTimeout):
        return pe.RetryableExchangeError(f"{who}: the request timed out ({venue_msg})")
    if isinstance(exc, cx.NetworkError):
        return pe.RetryableExchangeError(f"{who}: network problem ({venue_msg})")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError | OSError):
        return pe.RetryableExchangeError(f"{who}: connection problem ({exc!r})")
    if isinstance(exc, cx.NotSupported):
        return pe.ExchangeError(f"{who}: not supported by this exchange ({venue_msg})")
    if isinstance(exc, cx.BaseError):
        return pe.ExchangeError(f"{who}: {venue_msg}")
    return pe.ExchangeError(f"{who}: unexpected error {type(exc).__name__}: {exc}")


def is_ambiguous(exc: BaseException) -> bool:
    """True when a create may have reached the exchange although no answer came back."""
    cx = _ccxt_errors()
    if isinstance(exc, cx.RequestTimeout | cx.NetworkError | asyncio.TimeoutError | OSError):
        return not isinstance(exc, cx.DDoSProtection | cx.RateLimitExceeded)
    return exchange_code(str(exc)) in ("-1007", "-1001")


_TIMESTAMP_CODES = {
    "-1021",  # binance: timestamp outside the recvWindow / ahead of the server
    "10002",  # bybit: the request time exceeds the time window
    "50102",  # okx: timestamp request expired
    "50112",  # okx: invalid OK-ACCESS-TIMESTAMP
}


def is_timestamp_error(exc: BaseException) -> bool:
    """The venue refused a signed request's timestamp (our clock is off from its clock).

    ccxt raises InvalidNonce for Binance's -1021; a venue behind another URL or a code ccxt
    does not map arrives as a bare ExchangeError carrying the code.
    """
    cx = _ccxt_errors()
    if isinstance(exc, cx.InvalidNonce):
        return True
    return bool(_TIMESTAMP_CODES.intersection(exchange_codes(str(exc))))


def is_rate_limit(exc: BaseException) -> bool:
    cx = _ccxt_errors()
    return isinstance(exc, cx.DDoSProtection | cx.RateLimitExceeded) or \
        bool({"-1003", "10006", "50011"}.intersection(exchange_codes(str(exc))))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: base·factor^attempt, capped, with optional ± jitter fraction."""

    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1

    def delay(self, attempt: int) -> float:
        """The wait before retry `attempt` (0-based). A stream that keeps failing for days
        counts its attempts into the thousands: a power past the float range (`2.0 ** 1025`
        raises) is the cap, not an exception out of the retry loop."""
        try:
            grown = self.base * self.factor ** max(0, attempt)
        except OverflowError:  # far past the cap
            grown = math.inf if self.base > 0 else 0.0
        d = max(0.0, min(self.max_delay, grown))
        if self.jitter > 0:
            d *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, d)


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    exchange_id: str,
    attempts: int = 4,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    what: str = "request",
) -> T:
    """Run `fn` and retry only retryable failures; raise the mapped pmgui error otherwise.

    Rate limits wait twice as long as other network errors: hammering a venue that already
    said "slow down" gets the API key banned.
    """
    for attempt in range(attempts):
        try:
            return await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = map_error(exc, exchange_id)
            if not err.retryable or attempt == attempts - 1:
                raise err from exc
            delay = backoff.delay(attempt) * (2.0 if is_rate_limit(exc) else 1.0)
            log.warning("%s %s failed (%s); retry %d/%d in %.2fs", exchange_id, what,
                        type(exc).__name__, attempt + 1, attempts - 1, delay)
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
