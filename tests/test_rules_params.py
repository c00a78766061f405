"""Parameters and presets: catalogue, resolution, coercion and the errors a trader sees."""

from __future__ import annotations

import pytest

from pmgui.domain.errors import ValidationError
from pmgui.rules.params import PARAMS, RULE_IDS, Params, parse_assignment, resolve_params
from pmgui.rules.presets import PRESET_DESCRIPTIONS, PRESETS


def test_every_rule_has_enabled_and_design_names_exist():
    for rule in RULE_IDS:
        assert PARAMS[f"{rule}.enabled"].type == "bool"
    for name in ("trailing.mode", "trailing.distance", "trailing.min", "trailing.max",
                 "trailing.atr_period", "trailing.atr_mult", "r_targets.tp1_r",
                 "r_targets.tp1_fraction", "r_targets.tp2_r", "r_targets.tp2_fraction",
                 "momentum_loss.min_peak", "stop_loss.pct", "take_profit.pct",
                 "price.max_age"):
        assert name in PARAMS, name


@pytest.mark.parametrize(("name", "default"), [
    ("emergency.liquidation_roi", -0.40), ("emergency.severe_roi", -0.25),
    ("emergency.excessive_roi", -0.15), ("smart_tp.always_move", 0.20),
    ("smart_tp.t1_move", 0.15), ("smart_tp.t1_tp_dist", 0.02), ("smart_tp.t3_tp_dist", 0.03),
    ("smart_tp.t4_move", 0.05), ("smart_tp.t4_tp_dist", 0.05),
    ("momentum_loss.min_peak", 0.03), ("momentum_loss.giveback", 0.50),
    ("momentum_loss.band_giveback", 0.30), ("momentum_loss.band_high", 0.15),
    ("trailing.distance", 0.02), ("trailing.min", 0.004), ("trailing.max", 0.04),
    ("trailing.atr_period", 22), ("trailing.atr_mult", 3.0), ("trailing.high_vol_mult", 1.3),
    ("trailing.low_vol_mult", 0.7), ("trailing.profit_mult_1", 0.5),
    ("trailing.profit_mult_2", 0.7), ("trailing.profit_mult_3", 0.85),
    ("dynamic_tp.freeze_progress", 0.70), ("dynamic_tp.rsi_period", 14),
    ("r_targets.tp1_r", 1.0), ("r_targets.tp1_fraction", 0.5), ("r_targets.tp2_r", 2.0),
    ("r_targets.tp2_fraction", 0.25), ("r_targets.breakeven_offset", 0.001),
    ("add_on.min_r", 0.5), ("add_on.ema_band", 0.005), ("add_on.fraction", 0.5),
    ("add_on.ema_period", 9), ("profit_booking.level1_roi", 0.15),
    ("profit_booking.level1_min_age", 1800.0), ("profit_booking.level2_roi", 0.25),
    ("scaling.min_roi", 0.05), ("scaling.min_momentum", 0.02),
    ("scaling.min_volume", 100000.0), ("scaling.max_age", 900.0), ("scaling.fraction", 0.25),
    ("breakeven_plus.min_roi", 0.10), ("breakeven_plus.buffer", 0.02),
    ("tightening.high_volatility", 0.03), ("tightening.volatility_step", 0.005),
    ("tightening.start_hours", 2.0), ("tightening.per_hour", 0.002),
    ("tightening.min_distance", 0.004), ("stop_loss.pct", 0.01), ("take_profit.pct", 0.02),
    ("price.max_age", 5.0), ("price.rest_retries", 3), ("price.rest_backoff", 0.5),
])
def test_seed_defaults(name, default):
    assert PARAMS[name].default == default


def test_presets_enable_the_seed_rules():
    def on(preset):
        p = resolve_params(preset)
        return {r for r in RULE_IDS if p.enabled(r)}

    assert on("guardian") == {"emergency", "stop_loss", "take_profit", "smart_tp",
                              "momentum_loss", "trailing", "dynamic_tp"}
    assert resolve_params("guardian")["trailing.mode"] == "adaptive"
    assert on("breakout") == {"stop_loss", "take_profit", "r_targets", "trailing", "add_on"}
    b = resolve_params("breakout")
    assert b["trailing.mode"] == "chandelier" and b["trailing.after_breakeven"] is True
    assert on("monitor") == {"stop_loss", "take_profit", "tranches"}
    m = resolve_params("monitor")
    assert m["stop_loss.auto"] is True and m["take_profit.auto"] is True
    assert on("active") == {"stop_loss", "take_profit", "profit_booking", "scaling",
                            "breakeven_plus", "tightening", "trailing"}
    assert resolve_params("active")["trailing.mode"] == "fixed"
    assert on("manual") == {"stop_loss", "take_profit"}
    assert set(PRESET_DESCRIPTIONS) == set(PRESETS)


def test_overrides_coerce_cli_strings():
    p = resolve_params("guardian", {"trailing.distance": "0.03", "emergency.enabled": "false",
                                    "trailing.mode": "fixed", "trailing.atr_period": "14"})
    assert p["trailing.distance"] == 0.03
    assert p.enabled("emergency") is False
    assert p["trailing.mode"] == "fixed"
    assert p["trailing.atr_period"] == 14 and isinstance(p["trailing.atr_period"], int)
    assert p.overrides["trailing.distance"] == 0.03
    assert p.preset == "guardian"


def test_params_is_immutable_mapping():
    p = resolve_params("manual")
    with pytest.raises(TypeError):
        p["trailing.distance"] = 0.5  # type: ignore[index]
    assert isinstance(p, Params) and len(p) == len(PARAMS)
    assert p == resolve_params("manual") and hash(p) == hash(resolve_params("manual"))


def test_unknown_preset_lists_choices():
    with pytest.raises(ValidationError) as e:
        resolve_params("gardian")
    msg = str(e.value)
    assert "unknown preset 'gardian'" in msg
    assert msg == ("unknown preset 'gardian'; choose one of: active, breakout, guardian, manual, "
                   "monitor")


@pytest.mark.parametrize(("key", "needle"), [
    ("trailing.distnce", "trailing.distance"),
    ("trailng.distance", "trailing"),
    ("distance", "rule.param"),
])
def test_unknown_names_suggest(key, needle):
    with pytest.raises(ValidationError) as e:
        resolve_params("manual", {key: 0.02})
    assert needle in str(e.value)


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("trailing.distance", "abc", "must be a number"),
    ("trailing.distance", 1.5, "out of range"),
    ("trailing.distance", 0, "out of range"),
    ("trailing.distance", float("nan"), "finite"),
    ("trailing.distance", True, "must be a number"),
    ("trailing.atr_period", 2.5, "whole number"),
    ("trailing.atr_period", 0, "out of range"),
    ("trailing.mode", "chandeleir", "did you mean 'chandelier'"),
    ("emergency.enabled", "maybe", "true or false"),
    ("stop_loss.pct", 1.0, "out of range"),
    ("emergency.severe_roi", 0.1, "out of range"),
])
def test_bad_values(key, value, needle):
    with pytest.raises(ValidationError) as e:
        resolve_params("guardian", {key: value})
    assert needle in str(e.value)
    assert e.value.field == key


def test_cross_parameter_consistency():
    with pytest.raises(ValidationError, match="trailing.min"):
        resolve_params("guardian", {"trailing.min": 0.05, "trailing.max": 0.04})
    with pytest.raises(ValidationError, match="ordered"):
        resolve_params("guardian", {"emergency.excessive_roi": -0.5})
    with pytest.raises(ValidationError, match="tp2_r"):
        resolve_params("breakout", {"r_targets.tp2_r": 0.5})


def test_pct_override_implies_auto():
    p = resolve_params("manual", {"stop_loss.pct": "0.02"})
    assert p["stop_loss.auto"] is True and p["take_profit.auto"] is False
    q = resolve_params("manual", {"stop_loss.pct": 0.02, "stop_loss.auto": False})
    assert q["stop_loss.auto"] is False


def test_parse_assignment():
    assert parse_assignment("trailing.distance=0.02") == ("trailing.distance", 0.02)
    assert parse_assignment(" trailing.mode = fixed ") == ("trailing.mode", "fixed")
    assert parse_assignment("emergency.enabled=true") == ("emergency.enabled", True)
    for bad, needle in (("trailing.distance", "rule.param=value"),
                        ("=0.2", "missing parameter name"),
                        ("trailing.distance=", "missing value"),
                        ("trailing.nope=1", "unknown parameter"),
                        ("trailing.distance=x", "must be a number")):
        with pytest.raises(ValidationError, match=needle):
            parse_assignment(bad)


def test_enabled_unknown_rule():
    with pytest.raises(ValidationError, match="unknown rule 'trailin'"):
        resolve_params("manual").enabled("trailin")
