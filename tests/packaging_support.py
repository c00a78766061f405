"""Shared checks for the installed forms of pmgui (wheel in a fresh venv, frozen app):
the same commands a user runs, judged the same way."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from PySide6.QtGui import QImage

REPLAY_FILE = "ETHUSD-1d-bitstamp.csv"  # 788 daily candles from 322.15: quick to replay
REPLAY_ARGS = ["--side", "long", "--entry", "322.15", "--qty", "1", "--sl", "250",
               "--tp", "500", "--json"]


def isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment that reaches neither the user's files nor the source checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "QT_PLUGIN_PATH")}
    env.update(QT_QPA_PLATFORM="offscreen", PMGUI_NO_KEYRING="1",
               PMGUI_CONFIG_DIR=str(tmp / "config"), PMGUI_DATA_DIR=str(tmp / "data"),
               PMGUI_UI_SETTINGS=str(tmp / "ui.ini"), PYTHONUNBUFFERED="1", **extra)
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 110
        ) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def check_replay(r: subprocess.CompletedProcess) -> None:
    """The bundled ETH file with TP 500: the take-profit fills in November 2017."""
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["type"] == "open" and rows[-1]["type"] == "summary", rows[:2]
    summary = rows[-1]
    assert summary["exit_reason"] == "take_profit" and summary["exit_price"] == 500.0
    assert summary["realized_pnl"] > 170


def check_screenshot(r: subprocess.CompletedProcess, shot: Path) -> None:
    """Exit code 0 and a PNG of the real window: full size, many colours (not blank)."""
    assert r.returncode == 0, r.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = QImage(str(shot))
    assert not img.isNull() and img.width() >= 600 and img.height() >= 400, img.size()
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7)
               for y in range(0, img.height(), 7)}
    assert len(colours) >= 20, f"only {len(colours)} colours: an empty window?"
