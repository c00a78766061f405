"""Settings shared by `test_audit_store_trail_crash` and the engine process it kills: a
1 % fixed trail whose moves re-place the venue's stop only every 0.2 % of the price (the
moves in between are only logged behind)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from pmgui.engine.settings import EngineSettings

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = EngineSettings(default_preset="manual", protect_throttle=0.0, protect_min_step=0.002,
                          write_behind=0.0,
                          overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                     "trailing.distance": 0.01})

# TP1 at 1 R closes half of the original quantity (`pmgui.rules.targets`)
TP1_SETTINGS = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              overrides={"r_targets.enabled": True, "r_targets.tp1_r": 1.0,
                                         "r_targets.tp1_fraction": 0.5})


def killed_child(script: str, *args: object, timeout: float = 100) -> list[str]:
    """Run `script` (python -c) with `args` until it SIGKILLs itself mid-operation, as a
    crash would; what it printed before, split into words."""
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    return proc.stdout.split()
