"""The rule engine core (DESIGN §4): parameters, presets, rule families and the policy.

Pure: imports nothing from Qt, asyncio, ccxt or sqlite. Entry points are re-exported here.
"""

from pmgui.rules.params import PARAMS, Params, ParamSpec, parse_assignment, resolve_params
from pmgui.rules.policy import (
    evaluate,
    indicator_spec,
    initial_targets,
    observe,
    params_for,
    price_is_usable,
    scale_out,
)
from pmgui.rules.presets import PRESET_DESCRIPTIONS, PRESETS

__all__ = [
    "PARAMS", "PRESETS", "PRESET_DESCRIPTIONS", "ParamSpec", "Params", "evaluate",
    "indicator_spec", "initial_targets", "observe", "params_for", "parse_assignment",
    "price_is_usable", "resolve_params", "scale_out",
]
