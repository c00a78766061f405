"""Rule parameters: the catalogue of every `rule.param`, its default, type and range.

Why one flat table: the config file, `--set rule.param=value`, the settings dialog and the
action log all address a parameter by the same dotted name, so one table validates them all
and explains every value (`ParamSpec.help`).

Resolution order (`resolve_params`): catalogue defaults (the seeds' values) → the preset's
values (`pmgui.rules.presets.PRESETS`) → the caller's overrides (config `[rules.set]`, the
symbol's `set`, the position's overrides, `--set`). Anything unknown, mistyped or out of range
raises `pmgui.domain.errors.ValidationError` naming the key, and nothing is returned.

Interpretations of the seeds that are fixed here (see also `pmgui.rules.policy`):
- `stop_loss.pct` / `take_profit.pct` are fractions of the entry price (seed 002: 1% / 2%).
  They are applied to positions that arrive without SL/TP only when `stop_loss.auto` /
  `take_profit.auto` is on (the `monitor` preset). An explicit override of `stop_loss.pct`
  (or `take_profit.pct`) switches the matching `auto` on unless `auto` is overridden too: a
  trader who types `--set stop_loss.pct=0.02` means "give me a 2% stop".
- Adaptive trailing (seed 000): "high volatility" is `indicators.volatility` ≥
  `trailing.high_volatility` (0.03, the same 3% seed 004 calls high), "low" is ≤
  `trailing.low_volatility` (0.01, seed 004's "<1% volatility"). "Strong momentum" is a
  favourable momentum (dir·momentum) ≥ `trailing.strong_momentum` (0.02, seed 004's
  "strong momentum >2% change"); "weak" is a favourable momentum ≤ `trailing.weak_momentum`
  (0.0: flat or against the position).
- Scaling's "max position size" (seed 004: 200 shares) is `scaling.max_size_mult`, a
  multiple of the position's initial quantity, because an absolute share count means
  nothing across symbols.
- Time-based tightening counts hours beyond `tightening.start_hours` continuously (2.5 h →
  0.5 h beyond → 0.001 off the distance).
- Timeframes (`rule.timeframe`, `1m` … `1d`): every rule that reads indicators reads them on
  completed candles of its own timeframe. The defaults were chosen by measuring how often
  each regime fires on the bundled real data (`python -m tests.regimes`; issue 11):
  `trailing` 4h (adaptive: on 1h candles "high volatility" ≥ 3% fired 1% of the time, on
  1d 76-99%; on 4h high 22% / low 2% / strong momentum 31% / weak 50%), `tightening` 4h
  (seed 004's "intraday volatility" is a within-day range: > 3% on 4h candles fired 22%, on
  1d candles 76% for BTC and 99% for ETH, i.e. always), `dynamic_tp` 4h (with trailing),
  `add_on` 1h and the breakout preset's chandelier 1h (3·ATR(22) ≈ 2.8% of the price: the
  scale of a breakout trade's R; on 4h ≈ 6.5%, on 1d ≈ 15%), `scaling` 1h (momentum > 2%
  over 10 candles fired 16%).
- `breakeven_plus.buffer` is an ROI (after fees) like every "profit" in the seeds: the stop
  goes to the price where the ROI is +2%, so it also works at high leverage.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Scalar
from pmgui.domain.timeframes import TIMEFRAMES

RULE_IDS: tuple[str, ...] = (
    "emergency", "stop_loss", "take_profit", "smart_tp", "momentum_loss", "trailing",
    "dynamic_tp", "r_targets", "add_on", "profit_booking", "scaling", "breakeven_plus",
    "tightening", "tranches",
)
"""Rule ids of DESIGN §4, in catalogue order."""

GROUPS: tuple[str, ...] = (*RULE_IDS, "price", "indicators", "protection")
"""Every prefix a parameter may have: the rules plus the non-rule groups."""

T = TypeVar("T")

_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter: its default (the seed's), type, bounds or choices, and one line of help."""

    name: str
    type: str  # "bool" | "int" | "float" | "str"
    default: bool | int | float | str
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[str, ...] = ()

    @property
    def rule(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]

    def range_text(self) -> str:
        """Human text of the allowed values, for error messages and the settings dialog."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.type == "bool":
            return "true or false"
        lo = "" if self.min is None else (f"> {self.min:g}" if self.min_exclusive
                                          else f">= {self.min:g}")
        hi = "" if self.max is None else (f"< {self.max:g}" if self.max_exclusive
                                          else f"<= {self.max:g}")
        return " and ".join(p for p in (lo, hi) if p) or f"any {self.type}"

    def coerce(self, value: object) -> bool | int | float | str:
        """Convert and check `value` (CLI strings included); ValidationError when it is wrong."""
        v = _coerce_type(self, value)
        if self.choices and v not in self.choices:
            close = difflib.get_close_matches(str(v), self.choices, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValidationError(
                f"{self.name} = {v!r} is not allowed{hint}; choose {self.range_text()}",
                field=self.name)
        if self.type in ("int", "float"):
            x = float(v)  # type: ignore[arg-type]
            too_low = self.min is not None and (x <= self.min if self.min_exclusive
                                                else x < self.min)
            too_high = self.max is not None and (x >= self.max if self.max_exclusive
                                                 else x > self.max)
            if too_low or too_high:
                raise ValidationError(
                    f"{self.name} = {v:g} is out of range; it must be {self.range_text()}",
                    field=self.name)
        return v


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce_type(spec: ParamSpec, value: object) -> bool | int | float | str:
    name = spec.name
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValidationError(f"{name} must be true or false (got {value!r})", field=name)
    if spec.type == "str":
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise ValidationError(f"{name} must be text, {spec.range_text()} (got {value!r})",
                              field=name)
    # numbers
    if isinstance(value, bool):
        raise ValidationError(f"{name} must be a number, not {value!r}", field=name)
    if isinstance(value, str):
        text = value.strip()
        try:
            num: float = float(text)
        except ValueError:
            raise ValidationError(
                f"{name} must be a number (got {value!r})", field=name) from None
    elif isinstance(value, (int, float)):
        num = float(value)
    else:
        raise ValidationError(f"{name} must be a number (got {value!r})", field=name)
    if not math.isfinite(num):
        raise ValidationError(f"{name} must be a finite number (got {value!r})", field=name)
    if spec.type == "int":
        if num != int(num):
            raise ValidationError(f"{name} must be a whole number (got {value!r})", field=name)
        return int(num)
    return num


def _p(name: str, type_: str, default: bool | int | float | str, help_: str, *,
       lo: float | None = None, hi: float | None = None, lo_x: bool = False,
       hi_x: bool = False, choices: tuple[str, ...] = ()) -> ParamSpec:
    return ParamSpec(name=name, type=type_, default=default, help=help_, min=lo, max=hi,
                     min_exclusive=lo_x, max_exclusive=hi_x, choices=choices)


def _frac(name: str, default: float, help_: str) -> ParamSpec:
    """A fraction strictly between 0 and 1 (distances, shares of a position, give-backs)."""
    return _p(name, "float", default, help_, lo=0.0, hi=1.0, lo_x=True, hi_x=True)


def _roi(name: str, default: float, help_: str) -> ParamSpec:
    """A positive ROI threshold (on margin: can exceed 100% with leverage)."""
    return _p(name, "float", default, help_, lo=0.0, hi=100.0, lo_x=True)


def _enabled(rule: str, default: bool, what: str) -> ParamSpec:
    return _p(f"{rule}.enabled", "bool", default, f"turn {what} on or off")


def _timeframe(rule: str, default: str, what: str) -> ParamSpec:
    """The candle timeframe a rule's indicators are computed on (completed candles only)."""
    return _p(f"{rule}.timeframe", "str", default, f"candle timeframe of {what}",
              choices=tuple(TIMEFRAMES))


TIMEFRAME_RULES: tuple[str, ...] = ("trailing", "tightening", "dynamic_tp", "add_on", "scaling")
"""Rules that read indicators, each with its own `rule.timeframe`."""


_SPECS: tuple[ParamSpec, ...] = (
    # price validation (seed 000 §4)
    _p("price.max_age", "float", 5.0, "seconds after which a price is stale and never acted on",
       lo=0.0, hi=3600.0, lo_x=True),
    _p("price.rest_retries", "int", 3,
       "REST price look-ups after a gap in the stream before the tick is skipped", lo=0, hi=10),
    _p("price.rest_backoff", "float", 0.5,
       "seconds before the first REST retry; doubles each try (0.5, 1, 2)", lo=0.0, hi=60.0),
    # indicator windows shared by several rules
    _p("indicators.volatility_window", "int", 20,
       "candles averaged for volatility: mean of (high - low) / close", lo=1, hi=1000),
    _p("indicators.momentum_window", "int", 10,
       "candles back for momentum close/close[n] - 1 and the EMA trend", lo=1, hi=1000),
    _p("indicators.volume_window", "int", 20,
       "candles averaged for volume: mean quote volume (volume * close) per candle",
       lo=1, hi=1000),
    # emergency stops (seed 000 §2)
    _enabled("emergency", False, "emergency ROI stops"),
    _p("emergency.liquidation_roi", "float", -0.40,
       "ROI at or below which to close: liquidation danger", lo=-100.0, hi=0.0, hi_x=True),
    _p("emergency.severe_roi", "float", -0.25, "ROI at or below which to close: severe loss",
       lo=-100.0, hi=0.0, hi_x=True),
    _p("emergency.excessive_roi", "float", -0.15,
       "ROI at or below which to close: excessive loss", lo=-100.0, hi=0.0, hi_x=True),
    # the exchange's own protective orders (seed 002: working type)
    _p("protection.trigger", "str", "mark",
       "price that triggers the SL/TP orders on the exchange: mark (spares wick stop-outs) "
       "or last", choices=("mark", "last")),
    # stop loss / take profit
    _enabled("stop_loss", True, "closing at market when the price crosses the stop"),
    _frac("stop_loss.pct", 0.01, "initial stop distance as a fraction of entry (seed 002: 1%)"),
    _p("stop_loss.auto", "bool", False,
       "place a stop at stop_loss.pct for positions that arrive without one"),
    _enabled("take_profit", True, "closing when the price reaches the take-profit"),
    _p("take_profit.pct", "float", 0.02,
       "initial take-profit distance as a fraction of entry (seed 002: 2%)",
       lo=0.0, hi=100.0, lo_x=True),
    _p("take_profit.auto", "bool", False,
       "place a take-profit at take_profit.pct for positions that arrive without one"),
    _p("take_profit.instant", "bool", True,
       "instant TP: close at market as soon as the price passes TP (seed 002)"),
    # smart profit taking (seed 000 §3), by unleveraged price move and distance to TP
    _enabled("smart_tp", False, "smart profit taking"),
    _frac("smart_tp.always_move", 0.20, "price move at which profit is always taken"),
    _frac("smart_tp.t1_move", 0.15, "tier 1 price move"),
    _frac("smart_tp.t1_tp_dist", 0.02, "tier 1: take profit when TP is farther than this"),
    _frac("smart_tp.t2_move", 0.10, "tier 2 price move"),
    _frac("smart_tp.t2_tp_dist", 0.02, "tier 2: take profit when TP is farther than this"),
    _frac("smart_tp.t3_move", 0.08, "tier 3 price move"),
    _frac("smart_tp.t3_tp_dist", 0.03, "tier 3: take profit when TP is farther than this"),
    _frac("smart_tp.t4_move", 0.05, "tier 4 price move"),
    _frac("smart_tp.t4_tp_dist", 0.05, "tier 4: take profit when TP is farther than this"),
    # momentum loss (seed 000 §3)
    _enabled("momentum_loss", False, "closing when a large share of the peak ROI is given back"),
    _roi("momentum_loss.min_peak", 0.03, "peak ROI needed before give-back is watched"),
    _frac("momentum_loss.giveback", 0.50, "close when this share of the peak ROI is given back"),
    _roi("momentum_loss.band_low", 0.03, "lower ROI bound of the tight give-back band"),
    _roi("momentum_loss.band_high", 0.15, "upper ROI bound of the tight give-back band"),
    _frac("momentum_loss.band_giveback", 0.30, "give-back that closes inside the ROI band"),
    # trailing stop
    _enabled("trailing", False, "the trailing stop"),
    _p("trailing.mode", "str", "fixed",
       "fixed distance, adaptive (seed 000) or chandelier (seed 001)",
       choices=("fixed", "adaptive", "chandelier")),
    _timeframe("trailing", "4h",
               "the adaptive volatility/momentum and the chandelier ATR/channel"),
    _frac("trailing.distance", 0.02, "trailing distance as a fraction of the best price"),
    _frac("trailing.min", 0.004, "adaptive: tightest distance"),
    _frac("trailing.max", 0.04, "adaptive: widest distance"),
    _p("trailing.min_step", "float", 0.0,
       "send a trailing move only when it tightens by more than this fraction of the price "
       "(0: every improvement, as freqtrade)", lo=0.0, hi=0.1),
    _p("trailing.after_breakeven", "bool", False,
       "trail only once the stop has been moved to breakeven (breakout)"),
    _p("trailing.atr_period", "int", 22, "chandelier: ATR and highest-high/lowest-low period",
       lo=1, hi=1000),
    _p("trailing.atr_mult", "float", 3.0, "chandelier: ATR multiple below the highest high",
       lo=0.0, hi=100.0, lo_x=True),
    _frac("trailing.high_volatility", 0.03, "adaptive: volatility at or above this is high"),
    _frac("trailing.low_volatility", 0.01, "adaptive: volatility at or below this is low"),
    _p("trailing.high_vol_mult", "float", 1.3, "adaptive: distance multiplier in high volatility",
       lo=0.0, hi=10.0, lo_x=True),
    _p("trailing.low_vol_mult", "float", 0.7, "adaptive: distance multiplier in low volatility",
       lo=0.0, hi=10.0, lo_x=True),
    _roi("trailing.profit_roi_1", 0.10, "adaptive: ROI above which profit multiplier 1 applies"),
    _p("trailing.profit_mult_1", "float", 0.5, "adaptive: multiplier above profit_roi_1",
       lo=0.0, hi=10.0, lo_x=True),
    _roi("trailing.profit_roi_2", 0.05, "adaptive: ROI above which profit multiplier 2 applies"),
    _p("trailing.profit_mult_2", "float", 0.7, "adaptive: multiplier above profit_roi_2",
       lo=0.0, hi=10.0, lo_x=True),
    _roi("trailing.profit_roi_3", 0.03, "adaptive: ROI above which profit multiplier 3 applies"),
    _p("trailing.profit_mult_3", "float", 0.85, "adaptive: multiplier above profit_roi_3",
       lo=0.0, hi=10.0, lo_x=True),
    _p("trailing.strong_momentum", "float", 0.02,
       "adaptive: favourable momentum at or above this is strong", lo=-1.0, hi=1.0),
    _p("trailing.weak_momentum", "float", 0.0,
       "adaptive: favourable momentum at or below this is weak", lo=-1.0, hi=1.0),
    _p("trailing.strong_mult", "float", 1.2, "adaptive: distance multiplier in strong momentum",
       lo=0.0, hi=10.0, lo_x=True),
    _p("trailing.weak_mult", "float", 0.8, "adaptive: distance multiplier in weak momentum",
       lo=0.0, hi=10.0, lo_x=True),
    # dynamic TP (seed 000 §7)
    _enabled("dynamic_tp", False, "dynamic take-profit adjustment"),
    _timeframe("dynamic_tp", "4h", "momentum, trend, RSI and the swing highs/lows"),
    _frac("dynamic_tp.freeze_progress", 0.70,
       "never move TP once this share of the way from entry to TP is done"),
    _p("dynamic_tp.strong_momentum", "float", 0.02,
       "favourable momentum at or above this (with a favourable trend) extends TP",
       lo=0.0, hi=1.0),
    _p("dynamic_tp.min_trend", "float", 0.0, "favourable EMA trend needed to extend TP",
       lo=-1.0, hi=1.0),
    _p("dynamic_tp.extend", "float", 0.25,
       "extension as a fraction of the entry-to-TP distance (once)", lo=0.0, hi=10.0, lo_x=True),
    _p("dynamic_tp.fade_momentum", "float", 0.0,
       "the last completed candle's favourable close-to-close change at or below this counts "
       "as a faded move", lo=-1.0, hi=1.0),
    _p("dynamic_tp.rsi_period", "int", 14, "RSI period", lo=2, hi=1000),
    _p("dynamic_tp.rsi_high", "float", 70.0, "long: RSI above this is stretched", lo=50.0,
       hi=100.0),
    _p("dynamic_tp.rsi_low", "float", 30.0, "short: RSI below this is stretched", lo=0.0, hi=50.0),
    _frac("dynamic_tp.pull_in", 0.5, "pull-in: share of the remaining price-to-TP distance cut"),
    _p("dynamic_tp.swing_strength", "int", 2,
       "a swing high/low is a candle extreme not exceeded by this many candles on each side",
       lo=1, hi=50),
    _p("dynamic_tp.swing_lookback", "int", 50,
       "swing highs/lows (resistance/support) are looked for in this many recent candles",
       lo=3, hi=1000),
    _p("dynamic_tp.stale_hours", "float", 24.0,
       "time in position after which TP is no longer extended and a faded move pulls it in "
       "without a stretched RSI", lo=0.0, hi=10000.0, lo_x=True),
    # R targets (seed 001)
    _enabled("r_targets", False, "TP1/TP2 partial exits at R multiples with breakeven after TP1"),
    _p("r_targets.tp1_r", "float", 1.0, "TP1 distance in R", lo=0.0, hi=100.0, lo_x=True),
    _frac("r_targets.tp1_fraction", 0.5, "share of the original quantity closed at TP1"),
    _p("r_targets.tp2_r", "float", 2.0, "TP2 distance in R (only after TP1)", lo=0.0, hi=100.0,
       lo_x=True),
    _frac("r_targets.tp2_fraction", 0.25, "share of the original quantity closed at TP2"),
    _p("r_targets.breakeven_offset", "float", 0.001,
       "after TP1 the stop goes to entry * (1 + dir * offset) to cover fees", lo=0.0, hi=0.5),
    # add-on (seed 001)
    _enabled("add_on", False, "one add-on at the EMA on a pullback"),
    _timeframe("add_on", "1h", "the EMA pullback level"),
    _p("add_on.min_r", "float", 0.5, "profit in R needed before adding", lo=0.0, hi=100.0),
    _frac("add_on.ema_band", 0.005, "price within this fraction of the EMA counts as near"),
    _p("add_on.fraction", "float", 0.5, "add up to this share of the original quantity",
       lo=0.0, hi=10.0, lo_x=True),
    _p("add_on.ema_period", "int", 9, "EMA period for the pullback level", lo=1, hi=1000),
    _frac("add_on.cancel_band", 0.015,
          "cancel the resting add-on when the price is farther than this from the EMA"),
    _p("add_on.max_wait", "int", 6,
       "cancel the resting add-on after this many candles of add_on.timeframe", lo=1, hi=10000),
    # profit booking (seed 004)
    _enabled("profit_booking", False, "partial profit booking at ROI levels"),
    _roi("profit_booking.level1_roi", 0.15, "ROI of the first booking level"),
    _p("profit_booking.level1_min_age", "float", 1800.0,
       "seconds a position must be open before the first level books", lo=0.0, hi=1e7),
    _frac("profit_booking.level1_fraction", 0.5, "booked share of the original quantity, level 1"),
    _roi("profit_booking.level2_roi", 0.25, "ROI of the second booking level (any age)"),
    _frac("profit_booking.level2_fraction", 0.75,
          "booked share of the original quantity, level 2 (cumulative)"),
    # scaling (seed 004)
    _enabled("scaling", False, "scaling into a winning position"),
    _timeframe("scaling", "1h", "the momentum and volume"),
    _roi("scaling.min_roi", 0.05, "ROI needed to scale in"),
    _p("scaling.min_momentum", "float", 0.02, "favourable momentum must exceed this",
       lo=-1.0, hi=1.0),
    _p("scaling.min_volume", "float", 100000.0, "mean quote volume per candle must exceed this",
       lo=0.0, hi=1e15),
    _p("scaling.max_age", "float", 900.0, "only positions younger than this (seconds)",
       lo=0.0, hi=1e7, lo_x=True),
    _frac("scaling.fraction", 0.25, "add this share of the original quantity"),
    _p("scaling.max_size_mult", "float", 2.0,
       "the position may never exceed this multiple of its original quantity",
       lo=1.0, hi=100.0),
    # breakeven+ (seed 004)
    _enabled("breakeven_plus", False, "moving the stop into profit at an ROI level"),
    _roi("breakeven_plus.min_roi", 0.10, "ROI at which the stop moves"),
    _p("breakeven_plus.buffer", "float", 0.02,
       "the stop goes to the price where the ROI (after fees) is this much", lo=0.0, hi=100.0),
    # volatility / time tightening of the trailing distance (seed 004)
    _enabled("tightening", False, "volatility and time tightening of the trailing distance"),
    _timeframe("tightening", "4h", "the intraday volatility (a within-day candle range)"),
    _frac("tightening.high_volatility", 0.03, "volatility above this tightens"),
    _frac("tightening.volatility_step", 0.005, "distance removed in high volatility"),
    _p("tightening.start_hours", "float", 2.0, "profitable positions older than this tighten",
       lo=0.0, hi=10000.0),
    _frac("tightening.per_hour", 0.002, "distance removed per hour beyond start_hours"),
    _frac("tightening.min_distance", 0.004, "the distance is never tightened below this"),
    # tranches (seed 002)
    _enabled("tranches", False, "per-tranche TP/SL"),
)

PARAMS: dict[str, ParamSpec] = {s.name: s for s in _SPECS}
"""Every parameter by its dotted name."""


class Params(Mapping[str, Scalar]):
    """An immutable, validated set of parameter values ("rule.param" → value).

    Built by `resolve_params`; carries the preset name and the overrides that produced it so
    the action log and the settings dialog can show where a value came from.
    """

    __slots__ = ("_enabled", "_floats", "_memo", "_overrides", "_preset", "_values")

    def __init__(self, values: Mapping[str, Scalar], preset: str = "",
                 overrides: Mapping[str, Scalar] | None = None) -> None:
        self._values = dict(values)
        self._preset = preset
        self._overrides = dict(overrides or {})
        # read on every tick by the rules: numbers as floats and the on/off of each rule,
        # converted once (the values never change)
        self._floats = {k: float(v) for k, v in self._values.items()
                        if isinstance(v, (int, float))}
        self._enabled = {k[:-8]: bool(v) for k, v in self._values.items()
                         if k.endswith(".enabled")}
        self._memo: dict[object, object] = {}

    def __reduce__(self) -> tuple[object, ...]:
        # the derived caches (`memo`) are rebuilt, never copied or pickled
        return (Params, (self._values, self._preset, self._overrides))

    def __getitem__(self, key: str) -> Scalar:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"unknown parameter {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params(preset={self._preset!r}, overrides={self._overrides!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Params):
            return self._values == other._values
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    @property
    def preset(self) -> str:
        return self._preset

    @property
    def overrides(self) -> Mapping[str, Scalar]:
        return dict(self._overrides)

    def enabled(self, rule: str) -> bool:
        """Whether rule `rule` is on; ValidationError for an unknown rule id."""
        try:
            return self._enabled[rule]
        except KeyError:
            raise ValidationError(_unknown_rule_message(rule), field=f"{rule}.enabled") from None

    def f(self, key: str) -> float:
        """A numeric parameter as float (rules do arithmetic with it)."""
        try:
            return self._floats[key]
        except KeyError:
            return float(self[key])  # type: ignore[arg-type]

    def memo(self, key: object, make: Callable[[Params], T]) -> T:
        """`make(self)`, computed once per Params: what the rules derive from the values
        alone (the enabled pipeline, thresholds) is not re-derived on every tick."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[key] = make(self)
            return value

    def i(self, key: str) -> int:
        return int(self[key])  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Scalar]:
        return dict(self._values)


def _unknown_rule_message(rule: str) -> str:
    close = difflib.get_close_matches(rule, GROUPS, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown rule '{rule}'{hint}; rules are: {', '.join(RULE_IDS)}"


def spec_for(name: object) -> ParamSpec:
    """The spec of `name`, or a ValidationError that says what is wrong and suggests names."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"parameter name must be 'rule.param' (got {name!r})")
    name = name.strip()
    if name in PARAMS:
        return PARAMS[name]
    if "." not in name:
        close = difflib.get_close_matches(name, list(PARAMS), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValidationError(
            f"parameter '{name}' must be written as 'rule.param'{hint}", field=name)
    rule, _, key = name.partition(".")
    if rule not in GROUPS:
        raise ValidationError(_unknown_rule_message(rule), field=name)
    same_rule = [s.key for s in _SPECS if s.rule == rule]
    close = difflib.get_close_matches(key, same_rule, n=3)
    hint = (f" (did you mean {', '.join(repr(f'{rule}.{c}') for c in close)}?)" if close
            else f"; {rule} has: {', '.join(same_rule)}")
    raise ValidationError(f"unknown parameter '{name}'{hint}", field=name)


def validate_overrides(overrides: Mapping[str, object]) -> dict[str, Scalar]:
    """Check and coerce a mapping of overrides (no preset involved)."""
    if not isinstance(overrides, Mapping):
        raise ValidationError("overrides must be a mapping of 'rule.param' to value")
    out: dict[str, Scalar] = {}
    for name, value in overrides.items():
        spec = spec_for(name)
        out[spec.name] = spec.coerce(value)
    return out


def _check_consistency(values: Mapping[str, Scalar]) -> None:
    """Cross-parameter rules a single range cannot express."""
    def f(k: str) -> float:
        return float(values[k])  # type: ignore[arg-type]

    if not f("emergency.liquidation_roi") <= f("emergency.severe_roi") <= f(
            "emergency.excessive_roi"):
        raise ValidationError(
            "emergency tiers must be ordered: liquidation_roi <= severe_roi <= excessive_roi "
            f"(got {f('emergency.liquidation_roi'):g}, {f('emergency.severe_roi'):g}, "
            f"{f('emergency.excessive_roi'):g})", field="emergency.severe_roi")
    if f("trailing.min") > f("trailing.max"):
        raise ValidationError(
            f"trailing.min ({f('trailing.min'):g}) cannot exceed trailing.max "
            f"({f('trailing.max'):g})", field="trailing.min")
    if f("trailing.low_volatility") > f("trailing.high_volatility"):
        raise ValidationError("trailing.low_volatility cannot exceed trailing.high_volatility",
                              field="trailing.low_volatility")
    if f("trailing.weak_momentum") > f("trailing.strong_momentum"):
        raise ValidationError("trailing.weak_momentum cannot exceed trailing.strong_momentum",
                              field="trailing.weak_momentum")
    if f("momentum_loss.band_low") > f("momentum_loss.band_high"):
        raise ValidationError("momentum_loss.band_low cannot exceed momentum_loss.band_high",
                              field="momentum_loss.band_low")
    if f("r_targets.tp2_r") <= f("r_targets.tp1_r"):
        raise ValidationError(
            f"r_targets.tp2_r ({f('r_targets.tp2_r'):g}) must be beyond r_targets.tp1_r "
            f"({f('r_targets.tp1_r'):g})", field="r_targets.tp2_r")
    if f("r_targets.tp1_fraction") + f("r_targets.tp2_fraction") > 1.0 + 1e-12:
        raise ValidationError("r_targets.tp1_fraction + tp2_fraction cannot exceed 100%",
                              field="r_targets.tp2_fraction")
    if f("profit_booking.level1_roi") > f("profit_booking.level2_roi"):
        raise ValidationError("profit_booking.level1_roi cannot exceed level2_roi",
                              field="profit_booking.level1_roi")
    if f("profit_booking.level1_fraction") > f("profit_booking.level2_fraction"):
        raise ValidationError(
            "profit_booking.level1_fraction cannot exceed level2_fraction (they are cumulative)",
            field="profit_booking.level1_fraction")
    if f("breakeven_plus.buffer") >= f("breakeven_plus.min_roi"):
        raise ValidationError(
            f"breakeven_plus.buffer ({f('breakeven_plus.buffer'):g}) must be below "
            f"breakeven_plus.min_roi ({f('breakeven_plus.min_roi'):g}): the stop goes to a "
            "smaller profit than the one that moves it", field="breakeven_plus.buffer")
    tiers = [f("smart_tp.always_move"), f("smart_tp.t1_move"), f("smart_tp.t2_move"),
             f("smart_tp.t3_move"), f("smart_tp.t4_move")]
    if tiers != sorted(tiers, reverse=True):
        raise ValidationError(
            "smart_tp moves must decrease: always_move >= t1_move >= t2_move >= t3_move >= "
            "t4_move", field="smart_tp.t1_move")


def defaults() -> dict[str, Scalar]:
    """The catalogue defaults (the seeds' values), before any preset."""
    return {s.name: s.default for s in _SPECS}


def resolve_params(preset: str, overrides: Mapping[str, object] | None = None) -> Params:
    """Preset defaults, then overrides; every value checked. Raises ValidationError."""
    from pmgui.rules.presets import PRESETS  # presets import this module

    if not isinstance(preset, str) or preset not in PRESETS:
        # the list is short: naming every choice beats guessing which one was meant
        raise ValidationError(
            f"unknown preset '{preset}'; choose one of: {', '.join(sorted(PRESETS))}",
            field="preset")
    values = defaults()
    values.update(validate_overrides(PRESETS[preset]))
    given = validate_overrides(overrides or {})
    for rule in ("stop_loss", "take_profit"):
        if f"{rule}.pct" in given and f"{rule}.auto" not in given:
            given[f"{rule}.auto"] = True
    values.update(given)
    _check_consistency(values)
    return Params(values, preset=preset, overrides=given)


def parse_assignment(text: str) -> tuple[str, Scalar]:
    """`rule.param=value` (from `--set`) → (name, coerced value); ValidationError if malformed."""
    if not isinstance(text, str) or "=" not in text:
        raise ValidationError(
            f"expected rule.param=value, e.g. trailing.distance=0.02 (got {text!r})")
    name, _, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not name:
        raise ValidationError(f"missing parameter name before '=' in {text!r}")
    if not raw:
        raise ValidationError(f"missing value after '=' in {text!r}", field=name)
    spec = spec_for(name)
    return spec.name, spec.coerce(raw)
