"""Presets: the four seed systems plus `manual`, as parameter values over the catalogue.

Why explicit on/off for every rule in every preset: a preset is read by a trader in the
settings dialog, and "what does guardian do?" must be answerable from this table alone
without knowing the catalogue's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pmgui.domain.models import Scalar
from pmgui.rules.params import RULE_IDS


def _preset(on: tuple[str, ...], **values: Scalar) -> Mapping[str, Scalar]:
    unknown = set(on) - set(RULE_IDS)
    if unknown:  # a typo in this table is a programming error, caught at import
        raise ValueError(f"unknown rules in preset: {sorted(unknown)}")
    out: dict[str, Scalar] = {f"{r}.enabled": (r in on) for r in RULE_IDS}
    out.update({k.replace("__", "."): v for k, v in values.items()})
    return MappingProxyType(out)


PRESETS: dict[str, Mapping[str, Scalar]] = {
    # seed 000: position manager with emergency caps, smart TP, momentum loss, adaptive trail
    "guardian": _preset(
        ("emergency", "stop_loss", "take_profit", "smart_tp", "momentum_loss", "trailing",
         "dynamic_tp"),
        trailing__mode="adaptive",
    ),
    # seed 001: breakout bot: R targets, breakeven after TP1, chandelier trail, EMA add-on
    "breakout": _preset(
        ("stop_loss", "take_profit", "r_targets", "trailing", "add_on"),
        trailing__mode="chandelier",
        trailing__after_breakeven=True,
        # a breakout trade's chandelier: ATR(22) of hours (median 3·ATR ≈ 2.8% of BTC's price
        # in 2019), not of days (≈ 15%, wider than the trade's R) nor of minutes
        trailing__timeframe="1h",
    ),
    # seed 002: position monitor: fixed TP/SL %, exchange-side orders, instant TP, tranches
    "monitor": _preset(
        ("stop_loss", "take_profit", "tranches"),
        stop_loss__auto=True,
        take_profit__auto=True,
        take_profit__instant=True,
    ),
    # seed 004: active management: booking, scaling, breakeven+, tightening of a fixed trail
    "active": _preset(
        ("stop_loss", "take_profit", "profit_booking", "scaling", "breakeven_plus",
         "tightening", "trailing"),
        trailing__mode="fixed",
    ),
    # the trader drives; pmgui only keeps the SL/TP
    "manual": _preset(("stop_loss", "take_profit")),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "guardian": "Emergency ROI stops, SL/TP, smart profit taking, momentum-loss exits, "
                "adaptive trailing stop and dynamic TP (seed 000).",
    "breakout": "SL/TP, TP1 at 1R (50%) then stop to breakeven, TP2 at 2R (25%), chandelier "
                "ATR trailing after breakeven, one add-on near EMA9 (seed 001).",
    "monitor": "Fixed TP/SL percentages placed on the exchange, instant TP on price spikes, "
               "per-tranche TP/SL (seed 002).",
    "active": "Profit booking at 15%/25% ROI, scaling into strong moves, breakeven+ at 10% "
              "ROI, volatility and time tightening of a fixed trailing stop (seed 004).",
    "manual": "Only your SL and TP are kept and enforced; no automatic decisions.",
}
