"""Settings shared by `test_audit_store_trail_crash` and the engine process it kills: a
1 % fixed trail whose moves re-place the venue's stop only every 0.2 % of the price (the
moves in between are only logged behind)."""

from __future__ import annotations

from pmgui.engine.settings import EngineSettings

SETTINGS = EngineSettings(default_preset="manual", protect_throttle=0.0, protect_min_step=0.002,
                          write_behind=0.0,
                          overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                     "trailing.distance": 0.01})

# TP1 at 1 R closes half of the original quantity (`pmgui.rules.targets`)
TP1_SETTINGS = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              overrides={"r_targets.enabled": True, "r_targets.tp1_r": 1.0,
                                         "r_targets.tp1_fraction": 0.5})
