"""The one bridge point between the manager thread and the GUI thread.

The engine `publish`es immutable events from its thread; the GUI drains them on a timer.
Events with a key coalesce (latest value per key wins, so a slow GUI never shows a stale
price and never builds a backlog); events without a key (actions, errors, closes) are
queued in order and never dropped.

An engine nobody pulls from (`--headless`: its console log, notifier and service are
listeners, pushed every event) keeps nothing (`buffered=False`): an undrained outbox held
the last 10,000 actions for ever, each of which outlived every young garbage collection and
was promoted to the oldest generation — the collector's work grew with them, on the engine
thread, inside whatever tick or close it interrupted.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from pmgui.engine.events import Event


class Outbox:
    def __init__(self, max_unkeyed: int = 10_000, *, buffered: bool = True) -> None:
        self._lock = threading.Lock()
        self.buffered = buffered  # False: events go to the listeners only (nothing drains)
        # newest event per key, in the order of their last publication (a plain dict keeps
        # insertion order; popping a key before setting it moves it to the end)
        self._keyed: dict[object, Event] = {}
        self._unkeyed: deque[Event] = deque()  # oldest dropped in O(1) when full
        self._max_unkeyed = max_unkeyed
        self._listeners: tuple[Callable[[Event], None], ...] = ()  # replaced, never mutated
        # the event types some listener takes; None: some listener takes every type
        self._wanted: frozenset[type[Event]] | None = frozenset()
        self.dropped = 0

    def publish(self, event: Event) -> None:
        if not self.buffered:
            for listener in self._listeners:  # the tuple is replaced, never mutated
                listener(event)
            return
        key = event.key
        with self._lock:
            if key is None:
                clears = getattr(event, "clears", None)
                if clears is not None:  # e.g. a closed position's pending snapshot
                    self._keyed.pop(clears, None)
                if len(self._unkeyed) >= self._max_unkeyed:
                    self._unkeyed.popleft()
                    self.dropped += 1
                self._unkeyed.append(event)
            else:
                self._keyed.pop(key, None)
                self._keyed[key] = event
            listeners = self._listeners
        for listener in listeners:  # console logging in --headless; never Qt objects
            listener(event)

    def add_listener(self, fn: Callable[[Event], None],
                     types: tuple[type[Event], ...] | None = None) -> None:
        """Called on the publishing thread for every event (headless logging, tests).

        `types` names the only event types `fn` takes (it is still called with the others and
        ignores them): with every listener of an unbuffered outbox naming its types, a
        publisher may skip building an event nobody takes (`wants`)."""
        with self._lock:
            self._listeners = (*self._listeners, fn)
            if types is None or self._wanted is None:
                self._wanted = None
            else:
                self._wanted = self._wanted | frozenset(types)

    def wants(self, event_type: type[Event]) -> bool:
        """Whether an event of `event_type` reaches anyone: always when the outbox keeps
        events for a drain; unbuffered, when some listener takes that type. A replay's only
        listener takes its actions, errors and closes, and a candle close there made a tuple of
        the symbol's 500 candles for an event nobody read."""
        wanted = self._wanted
        return self.buffered or wanted is None or event_type in wanted

    def drain(self) -> list[Event]:
        """Everything pending, unkeyed events first in publish order, then the newest per key.

        A PositionRemoved clears its position's pending snapshot when published, so a
        drained batch never resurrects a closed position.
        """
        if not self.buffered:
            raise RuntimeError("this outbox keeps no events (buffered=False): listen instead")
        with self._lock:
            unkeyed, self._unkeyed = self._unkeyed, deque()
            keyed = list(self._keyed.values())
            self._keyed.clear()
        return [*unkeyed, *keyed]
