"""Engine settings: what the config file decides about how positions are managed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pmgui.domain.models import EMPTY, Scalar


@dataclass(frozen=True, slots=True)
class SymbolRules:
    preset: str | None = None
    overrides: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    default_preset: str = "guardian"
    overrides: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)
    symbols: Mapping[str, SymbolRules] = field(default_factory=lambda: EMPTY)
    protect_on_exchange: bool = True
    # Automated (trailing) moves replace the exchange order at most this often; the local
    # stop keeps guarding in between. Manual moves are sent at once.
    protect_throttle: float = 2.0
    demo_positions: bool = False
    candle_timeframe: float = 60.0
    candle_window: int = 300
    reconcile_interval: float = 60.0
    equity_interval: float = 10.0
    # A stop/TP order acknowledged on the exchange at the level the price crossed closes the
    # position itself: the engine waits this long for its fill before closing at market
    # (a market close racing the exchange's own stop is refused or, worse, hits a position
    # opened since).
    exchange_stop_grace: float = 3.0
    save_interval: float = 5.0  # peak/best-price bookkeeping is persisted at most this often
    # ...and at most this many positions' peaks a second over the whole book: a book larger
    # than `save_budget` x `save_interval` positions saves each one's less often (2,000
    # positions: every 20 s), so that the writes a tick pays for do not grow with the book
    # (`EngineCore.save_every`). Stops are not peaks: a rule's move has its own log line.
    save_budget: float = 100.0
    # Rebuildable state (peaks, a rule's level moves and their log) is written behind in one
    # transaction per window of this many seconds; intended orders are always synced first.
    write_behind: float = 0.25
    # Automated moves re-place the exchange order only when the level moved at least this
    # fraction of the price, and at most `protect_budget` re-placements per second over all
    # positions (the local stop guards the gap meanwhile); manual moves are sent at once.
    protect_min_step: float = 0.001
    protect_budget: float = 10.0
    # Ticks inside a position's quiet band skip the rules (the same decisions, DESIGN §10);
    # off: every tick is evaluated (the reference the band is tested against).
    quiet_bands: bool = True

    def preset_for(self, symbol: str) -> str:
        rules = self.symbols.get(symbol)
        return (rules.preset if rules and rules.preset else None) or self.default_preset

    def overrides_for(self, symbol: str) -> dict[str, Scalar]:
        merged: dict[str, Scalar] = dict(self.overrides)
        rules = self.symbols.get(symbol)
        if rules:
            merged.update(rules.overrides)
        return merged
