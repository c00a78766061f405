"""Service command line: tokens, the systemd unit, sd_notify, JSON logs, listen rules."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from pmgui.cli import main
from pmgui.service import systemd
from pmgui.service.tokens import TokenStore, digest


def test_token_create_prints_once_and_stores_only_the_hash(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    assert main(["token", "create", "--scope", "read", "--label", "phone",
                 "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("pmgui_") and len(token) > 40
    path = tmp_path / "tokens.json"
    text = path.read_text()
    assert token not in text and digest(token) in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert token not in err
    store = TokenStore(path)
    assert store.scope_of(token) == "read" and store.scope_of(token + "x") is None
    assert main(["token", "list", "--config", str(cfg)]) == 0
    listed = capsys.readouterr().out
    assert "read" in listed and "phone" in listed and token not in listed
    token_id = listed.split()[0]
    assert main(["token", "revoke", token_id, "--config", str(cfg)]) == 0
    assert store.scope_of(token) is None
    assert main(["token", "revoke", "nope", "--config", str(cfg)]) == 1
    assert "no token with id" in capsys.readouterr().err


def test_token_scope_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["token", "create", "--scope", "admin", "--config", str(tmp_path / "c.toml")])
    assert e.value.code == 2
    assert "invalid choice: 'admin'" in capsys.readouterr().err


def test_listen_needs_headless_and_a_valid_address(capsys):
    for argv, message in ((["--listen", "127.0.0.1:1"], "add --headless"),
                          (["--headless", "--listen", "host:port"], "port must be a number"),
                          (["--headless", "--connect", "ws://x:1"], "drop --headless"),
                          (["--token-file", "t"], "goes with --connect")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_public_address_needs_tls_and_a_token(tmp_path):
    from pmgui.domain.errors import PmguiError
    from pmgui.service.server import EngineService
    from pmgui.service.settings import ServiceConfig
    from pmgui.service.tokens import Authenticator

    class Engine:  # never started: the refusal comes before anything listens
        outbox = None
        exchange_id = "paper"

    auth = Authenticator(TokenStore(tmp_path / "tokens.json"))
    with pytest.raises(PmguiError, match="needs TLS: set \\[service\\] tls_cert"):
        EngineService(Engine(), auth, ServiceConfig()).start("0.0.0.0", 0)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    with pytest.raises(PmguiError, match="needs a token"):
        EngineService(Engine(), auth, ServiceConfig(tls_cert=cert, tls_key=key)).start(
            "0.0.0.0", 0)
    auth.store.create("read")
    with pytest.raises(PmguiError, match="cannot load the TLS certificate"):
        EngineService(Engine(), auth, ServiceConfig(tls_cert=cert, tls_key=key)).start(
            "0.0.0.0", 0)


def test_service_install_writes_the_user_unit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    db = tmp_path / "data dir" / "p.db"
    assert main(["service", "install", "--user", "--listen", "127.0.0.1:9000",
                 "--db", str(db), "--log-json", str(tmp_path / "log.jsonl")]) == 0
    unit = tmp_path / "xdg" / "systemd" / "user" / "pmgui.service"
    text = unit.read_text()
    assert "Restart=always" in text and "WatchdogSec=" in text and "Type=notify" in text
    assert "--headless --listen 127.0.0.1:9000" in text
    assert f'--db "{db}"' in text  # quoted: the path has a space
    assert "systemctl --user" in capsys.readouterr().out


def test_the_shipped_unit_matches_the_generated_one():
    from pathlib import Path

    shipped = (Path(__file__).parents[1] / "packaging" / "pmgui.service").read_text()
    body = "\n".join(line for line in shipped.splitlines() if not line.startswith("#"))
    generated = systemd.unit_text(["%h/.local/bin/pmgui", "--headless", "--listen",
                                   "127.0.0.1:8765", "--log-json",
                                   "%h/.local/state/pmgui/pmgui.jsonl"])
    assert body.strip() == generated.replace("%%h", "%h").strip()


def test_sd_notify_sends_a_datagram(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        assert systemd.sd_notify("READY=1")
        assert server.recv(64) == b"READY=1"
        alive = [True]
        dog = systemd.Watchdog(lambda: alive[0])
        assert dog.interval == 1.0
        dog.tick()
        assert server.recv(64) == b"WATCHDOG=1"
        dog._next = 0.0
        alive[0] = False
        dog.tick()  # a hung engine: no ping, systemd restarts it
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.recv(64)
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.sd_notify("READY=1")


def test_json_logs_rotate_and_mask_tokens(tmp_path):
    from pmgui.engine.build import protect_logs

    path = tmp_path / "logs" / "pmgui.jsonl"
    handler = systemd.add_json_log(path, max_bytes=2000, backups=2)
    try:
        protect_logs("pmgui_secret_token_value")
        log = logging.getLogger("pmgui.test")
        log.setLevel(logging.INFO)
        for i in range(60):
            log.info("line %d with pmgui_secret_token_value", i)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    entries = [json.loads(x) for x in lines]
    assert entries[-1]["msg"] == "line 59 with ***" and entries[-1]["level"] == "INFO"
    assert (tmp_path / "logs" / "pmgui.jsonl.1").exists()
    assert not (tmp_path / "logs" / "pmgui.jsonl.3").exists()
    assert all("pmgui_secret" not in p.read_text() for p in (tmp_path / "logs").iterdir())


def test_python_dash_m_pmgui_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "pmgui", "token", "--help"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0 and "create" in out.stdout


def test_the_unit_keeps_a_dollar_in_a_path_literal(tmp_path, monkeypatch):
    # systemd expands $VAR and ${VAR} in ExecStart even inside quotes; "$$" is a literal "$"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    db = tmp_path / "a $HOME ${USER} dir" / "p.db"
    assert main(["service", "install", "--user", "--db", str(db)]) == 0
    text = (tmp_path / "xdg" / "systemd" / "user" / "pmgui.service").read_text()
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    expected = str(db).replace("$", "$$")
    assert f'--db "{expected}"' in exec_line, exec_line


def test_a_second_install_does_not_replace_a_different_unit_silently(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    unit = tmp_path / "xdg" / "systemd" / "user" / "pmgui.service"
    first = tmp_path / "first.db"
    assert main(["service", "install", "--user", "--db", str(first)]) == 0
    written = unit.read_text()
    # the same setup again: fine (nothing changes)
    assert main(["service", "install", "--user", "--db", str(first)]) == 0
    capsys.readouterr()
    # another database: refused, the first unit kept, the reason and --force named
    assert main(["service", "install", "--user", "--db", str(tmp_path / "other.db")]) != 0
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and str(first) in err
    assert unit.read_text() == written
    assert main(["service", "install", "--user", "--db", str(tmp_path / "other.db"),
                 "--force"]) == 0
    assert str(tmp_path / "other.db") in unit.read_text()


def test_a_refused_listen_address_stops_pmgui_before_the_engine_starts(tmp_path, monkeypatch,
                                                                         capsys, caplog):
    # another address than loopback without TLS: refused at once, before the engine connects
    # to its exchange, adopts positions and places stops only to be stopped again
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    cfg = tmp_path / "pmgui.toml"
    cfg.write_text("")
    caplog.set_level(logging.INFO)
    assert main(["--headless", "--paper", "--config", str(cfg), "--db", str(tmp_path / "p.db"),
                 "--listen", "0.0.0.0:0", "--exit-after", "60"]) == 1
    assert "needs TLS" in capsys.readouterr().err
    assert "engine running" not in caplog.text
    assert not (tmp_path / "p.db").exists()  # the database was not even opened


def test_a_token_revoked_by_another_process_is_refused_even_with_equal_mtime_and_size(
        tmp_path):
    """The running service caches the token file. `pmgui token revoke` and `token create`
    (another process) can leave the file with the same size and, on a coarse file-system
    clock, the same mtime: the service kept accepting the revoked token."""
    path = tmp_path / "tokens.json"
    service = TokenStore(path)
    old, _info = TokenStore(path).create("trade", "ab")
    assert service.scope_of(old) == "trade"  # cached now
    st = path.stat()
    data = json.loads(path.read_text())
    new_token = "pmgui_" + "x" * 43
    data["tokens"][0]["hash"] = digest(new_token)  # same length, another token
    path.write_text(json.dumps(data, indent=1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime == st.st_mtime
    assert service.scope_of(old) is None
    assert service.scope_of(new_token) == "trade"


def test_service_install_refuses_a_public_address_the_service_could_not_serve(
        tmp_path, monkeypatch, capsys):
    """`service install --listen 0.0.0.0:…` without TLS wrote a unit whose every start
    (Restart=always) stopped with "needs TLS": a restart loop found only in the journal."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    cfg = tmp_path / "config.toml"
    cfg.write_text('[exchange]\nid = "paper"\n')
    unit = tmp_path / "xdg" / "systemd" / "user" / "pmgui.service"
    assert main(["service", "install", "--user", "--listen", "0.0.0.0:9000",
                 "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "not installed" in err and "needs TLS" in err
    assert not unit.exists()
    # loopback needs neither: installed as before
    assert main(["service", "install", "--user", "--listen", "127.0.0.1:9000",
                 "--config", str(cfg)]) == 0
    assert unit.exists()


def test_a_port_in_use_stops_pmgui_before_the_engine_starts(tmp_path, monkeypatch, capsys,
                                                             caplog):
    """A port another program holds was reported only after the engine had connected,
    adopted positions and placed stops, which it then stopped again."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    cfg = tmp_path / "pmgui.toml"
    cfg.write_text("")
    caplog.set_level(logging.INFO)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["--headless", "--paper", "--config", str(cfg),
                     "--db", str(tmp_path / "p.db"), "--listen", f"127.0.0.1:{port}",
                     "--exit-after", "60"]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "in use" in err
    assert "engine running" not in caplog.text
    assert not (tmp_path / "p.db").exists()


def test_service_install_does_not_refuse_the_port_its_own_service_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["service", "install", "--user", "--listen", f"127.0.0.1:{port}"]) == 0
