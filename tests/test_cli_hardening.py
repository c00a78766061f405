"""Bad input at the command line and a hostile disk (issue 8 items 8 and 9): every case is a
real `pmgui` process with real files, answers with one clear line and a non-zero status, and
changes no file. The full-disk and read-only-media cases run pmgui inside a private mount
namespace (`unshare -m`) on a real tmpfs that is really full or really read-only; where the
machine does not allow that, they are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.models import Position
from pmgui.store.db import Store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PMGUI_CONFIG_DIR": "/nonexistent-pmgui",
       "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def pmgui(*args: str, cwd: Path | None = None, timeout: float = 90
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmgui.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=cwd)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


def one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pmgui: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


def a_database(path: Path) -> None:
    with Store.open(path) as s:
        s.save_position(Position(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=0.5,
                                 entry=40000.0, leverage=10, opened_at=1.0, initial_qty=0.5,
                                 sl=39000.0, tp=42000.0))
    path.with_name(path.name + ".lock").unlink()


# ---------------------------------------------------------------- configuration


def test_config_from_dev_zero_is_capped(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    r = pmgui("--config", "/dev/zero", "--headless", "--exit-after", "1",
              "--db", str(tmp_path / "x.db"))
    one_line_error(r, "/dev/zero: larger than 1024 KiB, not a pmgui configuration file")
    assert snapshot(tmp_path) == before


def test_unknown_rules_set_parameter_is_named_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[exchange]\nid = "paper"\n\n[rules]\npreset = "guardian"\n\n'
                   '[rules.set]\n"stop_loss.pct" = 0.02\n"stop_loss.bogus" = 3\n')
    before = snapshot(tmp_path)
    r = pmgui("--config", str(cfg), "--headless", "--exit-after", "1",
              "--db", str(tmp_path / "x.db"))
    line = one_line_error(r, f"{cfg}:9: rules.set.stop_loss.bogus: unknown parameter")
    assert "rules.preset" not in line
    assert snapshot(tmp_path) == before


def test_bad_symbol_override_is_named_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[symbols."BTC/USDT:USDT"]\npreset = "monitor"\n'
                   'set = { "stop_loss.pct" = 0.01 }\n\n'
                   '[symbols."ETH/USDT:USDT"]\nset = { "take_profit.pct" = -2 }\n')
    r = pmgui("--config", str(cfg), "--headless", "--exit-after", "1",
              "--db", str(tmp_path / "x.db"))
    one_line_error(r, f'{cfg}:6: symbols."ETH/USDT:USDT".set.take_profit.pct')
    assert not (tmp_path / "x.db").exists()


# ---------------------------------------------------------------- arguments


def test_empty_exchange_is_refused(tmp_path: Path) -> None:
    r = pmgui("--exchange", "", "--headless", "--exit-after", "1", "--db",
              str(tmp_path / "x.db"))
    one_line_error(r, "--exchange needs an exchange id")
    assert snapshot(tmp_path) == {}


def test_db_in_a_missing_folder_is_refused_and_no_folder_made(tmp_path: Path) -> None:
    r = pmgui("--headless", "--exit-after", "1", "--db", "no/such/dir/x.db", cwd=tmp_path)
    one_line_error(r, "the folder no/such/dir does not exist")
    assert snapshot(tmp_path) == {}


def test_live_exchange_with_a_new_database_is_refused_without_new_db(tmp_path: Path) -> None:
    r = pmgui("--exchange", "binanceusdm", "--headless", "--exit-after", "1",
              "--db", str(tmp_path / "typo.db"))
    one_line_error(r, "--new-db")
    assert snapshot(tmp_path) == {}
    # with --new-db it goes on (and stops at the missing credentials, still writing nothing)
    env_keys = {k: v for k, v in ENV.items() if not k.startswith("PMGUI_API")}
    r = subprocess.run([sys.executable, "-m", "pmgui.cli", "--exchange", "binanceusdm",
                        "--headless", "--exit-after", "1", "--new-db", "--db",
                        str(tmp_path / "typo.db")], capture_output=True, text=True,
                       timeout=90, env={**env_keys, "PYTHON_KEYRING_BACKEND":
                                        "keyring.backends.null.Keyring"})
    assert r.returncode == 1 and "credentials" in r.stderr, r.stderr
    assert "--new-db" not in r.stderr


@pytest.mark.parametrize("name", ["x\n.db", "x\x1b[2J.db", "x\r.db", "x\x7f.db"])
def test_database_names_with_control_characters_are_refused(tmp_path: Path,
                                                            name: str) -> None:
    r = pmgui("--headless", "--exit-after", "1", "--db", str(tmp_path / name))
    one_line_error(r, "contains control characters")
    r = pmgui("positions", "--db", str(tmp_path / name))
    one_line_error(r, "contains control characters")
    assert snapshot(tmp_path) == {}


# ---------------------------------------------------------------- refused databases


def test_refused_database_gets_no_wal_or_shm_files(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    a_database(db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    before = snapshot(tmp_path)
    assert set(before) == {"newer.db"}
    for args in (["--headless", "--exit-after", "1", "--db", str(db)],
                 ["positions", "--db", str(db)]):
        r = pmgui(*args)
        one_line_error(r, "newer pmgui")
        assert snapshot(tmp_path) == before, args


def test_core_dumps_are_disabled(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import resource, sys
        from pmgui import cli
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                  resource.RLIM_INFINITY))
        rc = cli.main(["positions", "--db", {str(tmp_path / 'none.db')!r}])
        print(rc, resource.getrlimit(resource.RLIMIT_CORE))
    """)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard != resource.RLIM_INFINITY:
        code = code.replace("resource.RLIM_INFINITY,\n", f"{hard},\n").replace(
            "resource.RLIM_INFINITY))", f"{hard}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env=ENV)
    assert r.stdout.strip() == "1 (0, 0)", (r.stdout, r.stderr)


# ---------------------------------------------------------------- a real full / read-only disk


def _sandbox_ok() -> str:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt && umount /mnt"],
                       capture_output=True, text=True, timeout=30)
    return "" if r.returncode == 0 else f"cannot mount in a private namespace: {r.stderr}"


SANDBOX = _sandbox_ok()
needs_sandbox = pytest.mark.skipif(bool(SANDBOX), reason=SANDBOX)


def in_sandbox(tmp_path: Path, script: str, timeout: float = 120
               ) -> subprocess.CompletedProcess[str]:
    """Run `script` (sh) in a private mount namespace with a tmpfs at $M."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    full = f"set -e\nM={mnt}\nPY={sys.executable}\n{textwrap.dedent(script)}"
    return subprocess.run(["unshare", "-m", "sh", "-c", full], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=ROOT)


@needs_sandbox
@pytest.mark.parametrize("free_kib", [0, 8, 64, 200])
def test_full_disk_at_start_up_is_one_clear_line_and_leaves_nothing(
        tmp_path: Path, free_kib: int) -> None:
    r = in_sandbox(tmp_path, f"""
        mount -t tmpfs -o size=1m none $M
        dd if=/dev/zero of=$M/fill bs=4k count={(1024 - free_kib) // 4} 2>/dev/null || true
        set +e
        $PY -m pmgui.cli --headless --exit-after 2 --db $M/x.db 2>$M/../err
        echo "rc=$?"
        ls -A $M
    """)
    out = r.stdout.split()
    assert out[0] == "rc=1", (r.stdout, r.stderr)
    assert out[1:] == ["fill"]  # no database, no -wal/-shm, no lock file left
    err = (tmp_path / "err").read_text()
    lines = [ln for ln in err.splitlines() if ln.startswith("pmgui: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "full" in lines[0] or "No space left" in lines[0] or "I/O error" in lines[0], err


@needs_sandbox
def test_positions_reads_a_database_on_read_only_media(tmp_path: Path) -> None:
    src = tmp_path / "pm.db"
    a_database(src)
    assert not Path(str(src) + "-wal").exists()
    r = in_sandbox(tmp_path, f"""
        mount -t tmpfs none $M
        cp {src} $M/pm.db
        mount -o remount,ro $M
        $PY -m pmgui.cli positions --db $M/pm.db --json
        ls -A $M
    """)
    assert r.returncode == 0, r.stderr
    report, listing = r.stdout.rsplit("]", 1)
    (p,) = json.loads(report + "]")
    assert p["symbol"] == "BTC/USDT:USDT" and p["sl"] == 39000.0 and p["tp"] == 42000.0
    assert listing.split() == ["pm.db"]
    assert "error" not in r.stderr


def test_failed_final_write_exits_non_zero_with_one_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """The engine's last act (saving the positions) fails: the exit status says so."""
    import time

    from pmgui import cli
    from pmgui.config import Config
    from pmgui.domain.errors import StoreError
    from pmgui.engine.build import build_engine
    from pmgui.engine.settings import EngineSettings

    engine = build_engine(Config(engine=EngineSettings(demo_positions=True)), tmp_path / "x.db")
    engine.start()
    try:
        deadline = time.monotonic() + 60
        while not engine.query(lambda core: len(core.positions)).result(10):
            assert time.monotonic() < deadline, "no demo position opened"
            engine.wait(0.1)
        # from now on SQLite refuses every write, as a full disk would
        engine.query(lambda core: core.store.db.execute("PRAGMA query_only = 1")).result(10)
    finally:
        engine.stop()
    assert isinstance(engine.error, StoreError)
    capsys.readouterr()
    assert cli._stopped(engine) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pmgui: error: the engine stopped with an "
                                               "error; the last state may not be saved: ")
    assert "readonly" in err[0] or "read-only" in err[0]


@pytest.mark.parametrize("ts", ["1e30", "253402300800000000", "1e300"])
def test_replay_refuses_timestamps_past_the_year_9999(tmp_path: Path, ts: str) -> None:
    data = tmp_path / "path.csv"
    data.write_text(f"timestamp,price\n1700000000,100\n{ts},101\n")
    before = snapshot(tmp_path)
    r = pmgui("replay", str(data), "--side", "long", "--entry", "100", "--qty", "1")
    one_line_error(r, f"path.csv line 3: timestamp '{ts}' is beyond the year 9999")
    assert r.stdout == "" and snapshot(tmp_path) == before
