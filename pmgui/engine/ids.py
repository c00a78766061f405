"""Identifiers. Client order ids are unique, short enough for every exchange (Binance ≤ 36
chars, OKX ≤ 32 alphanumerics) and carry a prefix so reconciliation can tell pmgui's orders
from the trader's own."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable

CLIENT_PREFIX = "pmg"


def new_client_id() -> str:
    # 'pmg' + 11 hex chars of milliseconds + 12 random hex chars = 26 alphanumerics
    return f"{CLIENT_PREFIX}{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


def sequential_client_ids(clock: Callable[[], float]) -> Callable[[], str]:
    """Client ids from `clock` and a counter, in `new_client_id`'s format: for a replay, whose
    clock is the data's, so the same replay prints the same order ids run after run (the
    random part of a live id exists to keep ids unique across restarts and machines, which a
    replay in its own throw-away venue does not need)."""
    counter = itertools.count(1)
    return lambda: f"{CLIENT_PREFIX}{max(0, int(clock() * 1000)):011x}{next(counter):012x}"


def is_ours(client_id: str | None) -> bool:
    return bool(client_id) and client_id.startswith(CLIENT_PREFIX)


def new_position_id(symbol: str, side: str, ts: float) -> str:
    base = symbol.split("/")[0].split(":")[0]
    return f"{base}-{side}-{int(ts * 1000):x}{secrets.token_hex(2)}"
