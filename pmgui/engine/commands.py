"""Commands: what the UI (or CLI) asks the engine to do (DESIGN §2).

Sent with `Engine.submit(cmd)`, which returns a concurrent.futures.Future resolved on the
manager thread with a `CommandResult`, or with a `PmguiError` (typed, readable message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pmgui.domain.enums import Side
from pmgui.domain.models import EMPTY, Candle, Scalar

KEEP = "keep"  # sentinel for SetTargets: leave this level as it is


@dataclass(frozen=True, slots=True)
class SetTargets:
    """Move SL and/or TP. A float sets it, None removes it, KEEP leaves it unchanged."""

    position_id: str
    sl: float | str | None = KEEP
    tp: float | str | None = KEEP


@dataclass(frozen=True, slots=True)
class ClosePosition:
    position_id: str
    fraction: float = 1.0
    reason: str = "manual"


@dataclass(frozen=True, slots=True)
class CloseAll:
    """Flatten: cancel protective orders, close every position, re-check for residuals."""

    reason: str = "manual"


@dataclass(frozen=True, slots=True)
class SetAutomation:
    position_id: str | None  # None: every position
    enabled: bool


@dataclass(frozen=True, slots=True)
class SetPreset:
    position_id: str
    preset: str
    overrides: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class OpenPosition:
    symbol: str
    side: Side
    qty: float
    leverage: float = 1.0
    sl: float | None = None
    tp: float | None = None
    preset: str | None = None
    overrides: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)
    # "market": filled at once; "limit" / "stop": a resting entry at `price` (limit below the
    # market for a long, above for a short; a stop the other way) that opens the position,
    # with its bracket SL/TP, when it fills (pmgui/engine/entries.py)
    order_type: str = "market"
    price: float | None = None


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel a working entry order of ours (by client id)."""

    client_id: str


@dataclass(frozen=True, slots=True)
class AddToPosition:
    """Add `qty` (coins/contracts) at market to an open position (pmgui/engine/manual.py)."""

    position_id: str
    qty: float


@dataclass(frozen=True, slots=True)
class SetSymbolRules:
    """The preset (None: the default) and overrides for new and adopted positions of a
    symbol. Stored in the database on top of the config file, which is never written."""

    symbol: str
    preset: str | None
    overrides: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)


# -- requests: read-only questions answered with snapshots (pmgui/engine/queries.py) --------
# The UI never opens the store or reaches into the core: it asks, and the future resolves to
# one of the frozen snapshots below (not a CommandResult).


@dataclass(frozen=True, slots=True)
class GetHistory:
    """Closed trades, their metrics, the equity curve and recent actions → HistorySnapshot."""

    closed_limit: int = 500
    actions_limit: int = 300


@dataclass(frozen=True, slots=True)
class GetSymbolRules:
    """The effective preset and overrides per symbol → SymbolRulesSnapshot."""


@dataclass(frozen=True, slots=True)
class GetEngineInfo:
    """What the engine runs against (exchange, demo mode, presets) → EngineInfo."""


@dataclass(frozen=True, slots=True)
class GetCandles:
    """The newest `limit` completed candles of `symbol` at `timeframe` (`1m` … `1d`) →
    CandlesSnapshot: the engine's own candles of that timeframe, completed from the venue's
    history when it has fewer. For display (the chart after a restart), never indicators."""

    symbol: str
    timeframe: str = "1h"
    limit: int = 300


@dataclass(frozen=True, slots=True)
class GetIndicatorLine:
    """The past values of the indicator the position's rules follow → IndicatorHistory
    (the chart's thin line when the position is shown; live values ride on its snapshots)."""

    position_id: str


Request = GetHistory | GetSymbolRules | GetEngineInfo | GetCandles | GetIndicatorLine
REQUESTS = (GetHistory, GetSymbolRules, GetEngineInfo, GetCandles, GetIndicatorLine)


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    position: object  # pmgui.domain.models.Position (closed)
    r: float | None  # the trade's result in R (None without an initial stop)


@dataclass(frozen=True, slots=True)
class HistorySnapshot:
    closed: tuple[ClosedTrade, ...]
    metrics: object  # TradeMetrics (count, wins, losses, win_rate, avg_r, ... total_pnl)
    equity: tuple[tuple[float, float], ...]  # (time, equity), oldest first
    actions: tuple = ()  # ActionTaken events of recent actions, newest first
    realized_today: float = 0.0  # P/L realized by positions closed since local midnight


@dataclass(frozen=True, slots=True)
class SymbolRulesSnapshot:
    rules: Mapping[str, tuple[str, Mapping[str, Scalar]]]  # symbol → (preset, overrides)
    presets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CandlesSnapshot:
    symbol: str
    timeframe: str
    candles: tuple[Candle, ...]  # completed, oldest first
    source: str = "engine"  # "engine" | "exchange" (the venue's history was needed)


@dataclass(frozen=True, slots=True)
class IndicatorHistory:
    position_id: str
    indicator: object  # pmgui.engine.events.RuleIndicator now, or None
    points: tuple[tuple[float, float], ...]  # (time, value), oldest first


@dataclass(frozen=True, slots=True)
class EngineInfo:
    exchange: str
    demo: bool | None  # None: the venue does not say
    presets: tuple[str, ...] = ()


# every request too: the engine service accepts exactly these types (a remote window's chart
# asks GetCandles and GetIndicatorLine like the embedded one)
Command = (SetTargets | ClosePosition | CloseAll | SetAutomation | SetPreset | OpenPosition
           | AddToPosition | CancelOrder | SetSymbolRules | GetHistory | GetSymbolRules
           | GetEngineInfo | GetCandles | GetIndicatorLine)


@dataclass(frozen=True, slots=True)
class ProtectionOutcome:
    """What the venue confirmed for one protective level after a command (DESIGN §2).

    `level` is the level now in force (None: none); `protection` is `on_exchange` only when the
    venue acknowledged a reduce-only order at that level covering the position, `local_only`
    when only pmgui's rules guard it (with the venue's `reason`), `unprotected` when nothing does.
    The UI shows success only for `on_exchange`.
    """

    role: str  # "sl" | "tp"
    level: float | None
    protection: str  # Protection value: on_exchange | local_only | unprotected
    reason: str = ""  # the venue's refusal or why it is local only; empty when on exchange


@dataclass(frozen=True, slots=True)
class CommandResult:
    ok: bool
    message: str = ""
    position_id: str | None = None
    fills: tuple = ()  # the fills of *this* command's orders only (a close: its closing fills)
    residual: tuple[str, ...] = ()  # CloseAll: positions still open after the re-check
    outcomes: tuple[ProtectionOutcome, ...] = ()  # SetTargets (and opens): per-level outcome
    realized_pnl: float | None = None  # closes: P/L realized by this command's fills

    def outcome(self, role: str) -> ProtectionOutcome | None:
        return next((o for o in self.outcomes if o.role == role), None)
