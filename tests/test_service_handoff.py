"""Quit without stopping protection: hand over to a background engine, attach to it next time."""

from __future__ import annotations

import argparse
import os
import signal

import pytest

from pmgui.service import handoff
from pmgui.service.cli import choose_remote
from pmgui.store.db import Store


def test_background_engine_waits_for_the_window_then_serves_and_the_next_start_attaches(
        qtbot, tmp_path):
    db = tmp_path / "pmgui.db"
    config = tmp_path / "config.toml"
    config.write_text("[paper]\nseed = 4\n")
    window_store = Store.open(db)  # the window's engine still holds the database
    assert handoff.find_running(db) is None
    handoff.request_background_engine()
    assert handoff.take_request() and not handoff.take_request()
    proc = handoff.start_background_engine(db, config, wait=120)
    try:
        assert proc.poll() is None and not handoff.endpoint_path(db).exists()
        window_store.close()  # the window's engine stops: the background one takes over
        qtbot.waitUntil(lambda: handoff.find_running(db) is not None or proc.poll() is not None,
                        timeout=90_000)
        ep = handoff.find_running(db)
        assert ep is not None and ep.pid == proc.pid, db.with_name(
            db.name + ".service.log").read_text()
        assert oct(handoff.endpoint_path(db).stat().st_mode & 0o777) == "0o600"
        assert ep.url.startswith("ws://127.0.0.1:")

        # the next `pmgui` on this database attaches instead of opening it a second time
        args = argparse.Namespace(connect=None, token_file=None, cafile=None)
        remote = choose_remote(args, db)
        try:
            assert remote is not None and remote.exchange_id == "paper"
            assert remote.syncs == 1  # start() returns with the engine's full state
            assert remote.connected and remote.scope == "trade"
        finally:
            remote.stop()
        # a clean stop removes the endpoint file
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0
        assert handoff.find_running(db) is None and not handoff.endpoint_path(db).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_a_stale_endpoint_file_is_ignored(tmp_path):
    db = tmp_path / "pmgui.db"
    Store.open(db).close()
    handoff.endpoint_path(db).write_text('{"pid": 999999999, "url": "ws://127.0.0.1:1", '
                                         '"token": "x"}')
    assert handoff.find_running(db) is None
    handoff.endpoint_path(db).write_text("garbage")
    assert handoff.find_running(db) is None


@pytest.mark.parametrize("text", ["", "127.0.0.1", "1.2.3.4:99999", "h:p"])
def test_listen_addresses_are_validated(text):
    from pmgui.service.settings import parse_listen

    with pytest.raises(ValueError):
        parse_listen(text)
