"""Error mapping (ccxt → pmgui), retry policy and credential loading."""

from __future__ import annotations

import json
import math

import keyring
import pytest
from ccxt.base import errors as cx
from hypothesis import given
from hypothesis import strategies as st
from keyring.backend import KeyringBackend

from pmgui.domain import errors as pe
from pmgui.exchange.credentials import Credentials, load_credentials
from pmgui.exchange.retry import Backoff, exchange_code, is_ambiguous, map_error, retry_call


def body(code: int, msg: str) -> str:
    return "binanceusdm " + json.dumps({"code": code, "msg": msg})


@pytest.mark.parametrize(("code", "msg", "expected"), [
    (-2019, "Margin is insufficient.", pe.InsufficientFunds),
    (-2021, "Order would immediately trigger.", pe.OrderWouldTriggerImmediately),
    (-4164, "Order's notional must be no smaller than 100 (unless you choose reduce only).",
     pe.InvalidOrder),
    (-2022, "ReduceOnly Order is rejected.", pe.InvalidOrder),
    (-2015, "Invalid API-key, IP, or permissions for action.", pe.AuthenticationError),
    (-1003, "Too many requests.", pe.RetryableExchangeError),
])
def test_binance_codes_map_even_as_bare_exchange_error(code: int, msg: str,
                                                       expected: type) -> None:
    err = map_error(cx.ExchangeError(body(code, msg)), "binanceusdm")
    assert type(err) is expected
    assert msg in str(err) and str(err).startswith("binanceusdm: ")


def test_ccxt_classes_map_without_codes() -> None:
    assert type(map_error(cx.InsufficientFunds("x"), "bybit")) is pe.InsufficientFunds
    assert type(map_error(cx.AuthenticationError("x"), "okx")) is pe.AuthenticationError
    assert type(map_error(cx.InvalidOrder("x"), "okx")) is pe.InvalidOrder
    assert map_error(cx.RequestTimeout("x"), "okx").retryable
    assert map_error(cx.DDoSProtection("429"), "okx").retryable
    assert map_error(cx.ExchangeNotAvailable("down"), "okx").retryable
    assert not map_error(cx.ExchangeError("x"), "okx").retryable
    assert not map_error(ValueError("boom"), "okx").retryable
    # post-only "immediately fillable" is not a trigger rejection…
    assert type(map_error(cx.OrderImmediatelyFillable("x"), "bybit")) is pe.InvalidOrder
    # …but for a stop/take-profit request it is
    assert type(map_error(cx.OrderImmediatelyFillable("x"), "bybit", trigger=True)) is \
        pe.OrderWouldTriggerImmediately
    already = pe.InsufficientFunds("already mapped")
    assert map_error(already, "okx") is already


def test_codes_and_ambiguity() -> None:
    assert exchange_code('okx {"code":"1","data":[{"sCode":"51280"}]}') == "1"
    assert exchange_code("nothing here") is None
    assert is_ambiguous(cx.RequestTimeout("t"))
    assert is_ambiguous(cx.NetworkError("reset"))
    assert is_ambiguous(cx.ExchangeError(body(-1007, "Timeout waiting for response")))
    assert not is_ambiguous(cx.DDoSProtection("429"))
    assert not is_ambiguous(cx.InvalidOrder("bad"))


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(base=0.5, factor=2.0, max_delay=3.0, jitter=0.0)
    assert [b.delay(i) for i in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    j = Backoff(base=1.0, jitter=0.1)
    assert all(0.9 <= j.delay(0) <= 1.1 for _ in range(50))


async def test_retry_only_retryable_errors() -> None:
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)

    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise cx.RequestTimeout("slow")
        return "ok"

    assert await retry_call(flaky, exchange_id="okx", sleep=sleep,
                            backoff=Backoff(jitter=0.0)) == "ok"
    assert delays == [0.5, 1.0]

    async def refused() -> str:
        calls["n"] += 1
        raise cx.InsufficientFunds("no")

    calls["n"] = 0
    with pytest.raises(pe.InsufficientFunds):
        await retry_call(refused, exchange_id="okx", sleep=sleep)
    assert calls["n"] == 1  # never retried

    async def limited() -> str:
        raise cx.DDoSProtection("429")

    delays.clear()
    with pytest.raises(pe.RetryableExchangeError):
        await retry_call(limited, exchange_id="okx", attempts=3, sleep=sleep,
                         backoff=Backoff(jitter=0.0))
    assert delays == [1.0, 2.0]  # rate limits wait twice as long


# ------------------------------------------------------------------ credentials
class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps its secrets in memory (the test's OS keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_repr_never_shows_secrets() -> None:
    c = Credentials("AKIAVERYLONGAPIKEY123", "topsecretvalue", "passphrase1")
    text = repr(c) + str(c) + f"{c}"
    for secret in ("AKIAVERYLONGAPIKEY123", "topsecretvalue", "passphrase1"):
        assert secret not in text
    assert "AKIA…" in text
    assert c.ccxt_config() == {"apiKey": "AKIAVERYLONGAPIKEY123", "secret": "topsecretvalue",
                               "password": "passphrase1"}


def test_env_credentials() -> None:
    env = {"PMGUI_NO_KEYRING": "1", "PMGUI_API_KEY": "k1", "PMGUI_API_SECRET": "s1",
           "PMGUI_API_PASSWORD": "p1"}
    c = load_credentials("okx", env)
    assert c is not None and (c.api_key, c.secret, c.password, c.source) == \
        ("k1", "s1", "p1", "env")
    assert load_credentials("okx", {"PMGUI_NO_KEYRING": "1"}) is None
    with pytest.raises(pe.AuthenticationError, match="PMGUI_API_SECRET"):
        load_credentials("okx", {"PMGUI_NO_KEYRING": "1", "PMGUI_API_KEY": "k"})


def test_keyring_first_then_env(memory_keyring: MemoryKeyring) -> None:
    env = {"PMGUI_API_KEY": "envkey", "PMGUI_API_SECRET": "envsecret"}
    memory_keyring.set_password("pmgui", "bybit", json.dumps({"apiKey": "kk",
                                                              "secret": "ks"}))
    c = load_credentials("bybit", env)
    assert c is not None and (c.api_key, c.source, c.password) == ("kk", "keyring", None)
    # another exchange has no keyring entry: the environment is used
    c2 = load_credentials("okx", env)
    assert c2 is not None and c2.source == "env"
    # PMGUI_NO_KEYRING=1 skips the keyring entirely
    c3 = load_credentials("bybit", {**env, "PMGUI_NO_KEYRING": "1"})
    assert c3 is not None and c3.api_key == "envkey"


def test_malformed_keyring_entry_is_a_clear_error(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password("pmgui", "okx", "apikey-without-json")
    with pytest.raises(pe.AuthenticationError, match="not JSON") as info:
        load_credentials("okx", {})
    assert "apikey-without-json" not in str(info.value)
    memory_keyring.set_password("pmgui", "okx", json.dumps({"apiKey": "only-key"}))
    with pytest.raises(pe.AuthenticationError, match="secret"):
        load_credentials("okx", {})


@given(base=st.floats(0.0, 10.0), factor=st.floats(0.5, 10.0), max_delay=st.floats(0.0, 600.0),
       attempt=st.integers(-5, 10**6))
def test_backoff_never_overflows_and_stays_capped(base: float, factor: float, max_delay: float,
                                                  attempt: int) -> None:
    """A stream failing for days counts attempts into the thousands: the wait stays the cap
    (2.0 ** 1100 overflowed a float and raised out of the reconnect loop)."""
    b = Backoff(base=base, factor=factor, max_delay=max_delay, jitter=0.0)
    d = b.delay(attempt)
    assert math.isfinite(d) and 0.0 <= d <= max(max_delay, 0.0)
    n = max(0, attempt)
    try:
        exact = base * factor ** n
    except OverflowError:
        exact = math.inf if base > 0 else 0.0
    assert d == max(0.0, min(max_delay, exact))


@pytest.mark.parametrize("base", [2.2250738585072014e-308, 1e-300, 0.5])
def test_backoff_with_a_tiny_base_saturates_too(base: float) -> None:
    # hypothesis found it: base * 2 ** 1024 is below the cap, but 2 ** 1024 is not a float
    b = Backoff(base=base, factor=2.0, max_delay=2.0, jitter=0.0)
    assert [b.delay(a) for a in (1023, 1024, 1025, 5000)] == [min(2.0, base * 2.0 ** 1023),
                                                              2.0, 2.0, 2.0]


def test_backoff_saturates_after_thousands_of_attempts() -> None:
    b = Backoff(base=0.5, factor=2.0, max_delay=30.0, jitter=0.1)
    assert all(27.0 <= b.delay(a) <= 33.0 for a in (64, 1_100, 10**9))
