"""The rule engine core (DESIGN §4): parameters, presets, rule families and the policy.

Pure: imports nothing from Qt, asyncio, ccxt or sqlite. Entry points are re-exported here,
each loaded when first used: reading the configuration validates rule parameters
(`pmgui.rules.params`) before the window shows, without loading every rule family.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PARAMS": "params", "Params": "params", "ParamSpec": "params",
    "parse_assignment": "params", "resolve_params": "params",
    "evaluate": "policy", "evaluate_trend": "policy", "indicator_spec": "policy",
    "initial_targets": "policy", "observe": "policy", "params_for": "policy",
    "price_is_usable": "policy", "scale_out": "policy",
    "BandGate": "bands", "QuietBand": "bands", "quiet_band": "bands", "trend_lane": "bands",
    "PRESETS": "presets", "PRESET_DESCRIPTIONS": "presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pmgui.rules' has no attribute {name!r}")
    value = getattr(import_module(f"pmgui.rules.{module}"), name)
    globals()[name] = value
    return value
