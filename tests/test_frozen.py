"""The frozen one-folder app (issue 14): packaging/build.sh + packaging/pmgui.spec build
dist/pmgui/, which runs without Python on the path — the GUI offscreen with --screenshot,
--headless, replay on its bundled data, positions.

The build test needs PyInstaller (`pip install -e ".[build]"`); it is skipped without it and
marked `frozen`, so CI selects it (`-m frozen`) where PyInstaller is installed. One build
serves all the checks (a minute or two of CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pmgui import identity
from tests.packaging_support import (
    REPLAY_ARGS,
    REPLAY_FILE,
    check_replay,
    check_screenshot,
    isolated_env,
    run,
)

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "packaging" / "build.sh"
HAVE_PYINSTALLER = importlib.util.find_spec("PyInstaller") is not None

needs_pyinstaller = pytest.mark.skipif(
    not HAVE_PYINSTALLER, reason='PyInstaller not installed (pip install -e ".[build]")')


def frozen_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No virtual environment, no Python on the path: only the system's tools."""
    env = isolated_env(tmp, **extra)
    env["PATH"] = "/usr/bin:/bin"
    env["HOME"] = str(tmp / "home")
    return env


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frozen")
    env = {**os.environ, "PYTHON": sys.executable, "DIST": str(tmp / "dist"),
           "WORK": str(tmp / "work")}
    r = subprocess.run(["bash", str(BUILD)], env=env, capture_output=True, text=True,
                       timeout=1500, cwd=tmp)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    print(r.stdout.strip().splitlines()[-1])  # "built ... in N s, SIZE" (pytest -s shows it)
    exe = tmp / "dist" / "pmgui" / "pmgui"
    assert exe.is_file() and os.access(exe, os.X_OK)
    return exe, tmp


@pytest.mark.frozen
@pytest.mark.timeout(1800)
@needs_pyinstaller
def test_frozen_app_screenshot_offscreen(app):
    exe, tmp = app
    shot = tmp / "frozen-shot.png"
    r = run([str(exe), "--screenshot", str(shot), "--exit-after", "2"], frozen_env(tmp), tmp)
    check_screenshot(r, shot)
    assert (tmp / "data" / "pmgui.db").is_file()


@pytest.mark.frozen
@pytest.mark.timeout(1800)
@needs_pyinstaller
def test_frozen_app_replays_its_bundled_data(app):
    exe, tmp = app
    data = exe.parent / "_internal" / "pmgui" / "resources" / "data" / REPLAY_FILE
    assert data.is_file()
    check_replay(run([str(exe), "replay", str(data), *REPLAY_ARGS], frozen_env(tmp), tmp))


@pytest.mark.frozen
@pytest.mark.timeout(1800)
@needs_pyinstaller
def test_frozen_app_headless_positions_version_and_desktop_files(app):
    exe, tmp = app
    env = frozen_env(tmp)
    db = tmp / "headless.db"
    r = run([str(exe), "--headless", "--paper", "--exit-after", "2", "--db", str(db)], env, tmp)
    assert r.returncode == 0 and "stopped cleanly" in r.stderr, r.stderr[-3000:]
    r = run([str(exe), "positions", "--db", str(db), "--json"], env, tmp)
    assert r.returncode == 0, r.stderr
    positions = json.loads(r.stdout)
    assert positions and all(p["orders"] for p in positions)  # demo positions, protected
    r = run([str(exe), "--version"], env, tmp)
    assert r.returncode == 0 and r.stdout.startswith(f"pmgui {identity.__version__} (Python")
    app_dir = exe.parent
    assert (app_dir / "LICENSE.txt").read_text().startswith("MIT License")
    assert (app_dir / "install-desktop.sh").is_file()
    assert (app_dir / "share" / f"{identity.APP_ID}.desktop").is_file()
    # the display plugins pmgui starts on are there, the ones it does not use are not
    platforms = {p.name for p in (app_dir / "_internal").rglob("plugins/platforms/*")}
    assert {"libqxcb.so", "libqoffscreen.so"} <= platforms and "libqvnc.so" not in platforms


@pytest.mark.frozen
@pytest.mark.timeout(1800)
@needs_pyinstaller
def test_frozen_app_runs_with_alerts_configured(app):
    """apprise finds its notification plugins on disk at run time: the frozen app must carry
    them as files (a missing plugins/ folder stopped the engine at start-up)."""
    exe, tmp = app
    cfg = tmp / "notify.toml"
    cfg.write_text('[notify]\nurls = ["json://127.0.0.1:9/pmgui"]\n')
    r = run([str(exe), "--headless", "--config", str(cfg), "--exit-after", "2",
             "--db", str(tmp / "notify.db")], frozen_env(tmp), tmp)
    assert r.returncode == 0 and "stopped cleanly" in r.stderr, r.stderr[-3000:]


def test_build_without_pyinstaller_says_how_to_get_it(tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    env = {**os.environ, "PYTHON": str(venv / "bin" / "python"), "DIST": str(tmp_path / "d"),
           "WORK": str(tmp_path / "w")}
    r = subprocess.run(["bash", str(BUILD)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "PyInstaller is not installed" in r.stderr and '".[build]"' in r.stderr
    assert not (tmp_path / "d").exists()
