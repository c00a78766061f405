"""Alerts through apprise's JSON target to a local HTTP endpoint (real apprise, real HTTP)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from aiohttp import web

from pmgui.domain.enums import ActionType, Protection, Reason, Side
from pmgui.domain.models import Action, Position
from pmgui.engine.events import (
    ActionTaken,
    ConnectionEvent,
    ErrorEvent,
    PositionRemoved,
    PositionSnapshot,
)
from pmgui.service.notify import Alert, Notifier
from pmgui.service.settings import NotifyConfig


class Endpoint:
    """An aiohttp server on 127.0.0.1:0 in its own thread recording JSON posts."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.paths: list[str] = []
        self.cond = threading.Condition()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(20)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            with self.cond:
                self.posts.append(body)
                self.paths.append(request.path)
                self.cond.notify_all()
            return web.Response(text="ok")

        async def main() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._ready.set()
            self._stop = asyncio.Event()
            await self._stop.wait()
            await runner.cleanup()

        loop.run_until_complete(main())

    def wait_for(self, n: int, timeout: float = 30) -> list[dict]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.posts) >= n, timeout), self.posts
            return list(self.posts)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def endpoint():
    ep = Endpoint()
    yield ep
    ep.close()


def pos(**kw) -> Position:
    base = dict(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=0.5, entry=100.0,
                leverage=5.0, opened_at=1.0, initial_qty=0.5, sl=95.0, tp=110.0)
    base.update(kw)
    return Position(**base)


def test_alerts_reach_a_json_endpoint_deduplicated_and_rate_limited(endpoint):
    cfg = NotifyConfig(urls=(f"json://127.0.0.1:{endpoint.port}/pmgui",), min_interval=600,
                       max_per_hour=4, daily_summary=None)
    n = Notifier(cfg)
    n.start()
    try:
        closed = pos(closed_at=5.0, exit_price=95.0, exit_reason="stop_loss", realized_pnl=-2.5)
        n.on_event(PositionRemoved(closed, 5.0))
        posts = endpoint.wait_for(1)
        body = posts[0]
        assert endpoint.paths[0] == "/pmgui"
        assert body["title"] == "pmgui: BTC/USDT:USDT closed"
        assert "stop_loss" in body["message"] and "-2.50" in body["message"]
        assert body["type"] == "warning"  # a loss

        emergency = Action(ActionType.CLOSE, Reason.EMERGENCY_STOP_SEVERE_LOSS, "p2", 80.0)
        n.on_event(ActionTaken(emergency, "ETH/USDT:USDT"))
        n.on_event(ActionTaken(emergency, "ETH/USDT:USDT"))  # the same again: de-duplicated
        snap = PositionSnapshot(pos(id="p3", sl=None), 100.0, 0, 0, None,
                                Protection.UNPROTECTED, False, 6.0)
        n.on_event(snap)
        n.on_event(snap)  # still unprotected: told once
        posts = endpoint.wait_for(3)
        assert posts[1]["title"] == "pmgui: EMERGENCY STOP ETH/USDT:USDT"
        assert posts[1]["type"] == "failure" and "severe loss" in posts[1]["message"]
        assert posts[2]["title"] == "pmgui: BTC/USDT:USDT UNPROTECTED"
        assert n.suppressed == 1  # the duplicate emergency (the unprotected one is a state)

        for i in range(5):  # an error storm: the hourly budget (4) holds
            n.on_event(ErrorEvent(f"exchange error {i}: needs the trader", 7.0 + i))
        posts = endpoint.wait_for(4)
        assert posts[3]["title"] == "pmgui: engine error"
        assert "exchange error 0" in posts[3]["message"]
        assert n.suppressed == 1 + 4
    finally:
        n.stop()
    assert len(endpoint.posts) == 4 and n.sent == 4


def test_stale_streams_and_daily_summary():
    sent: list[Alert] = []
    now = [1_000_000.0]
    cfg = NotifyConfig(urls=("json://unused",), stale_after=60, min_interval=0,
                       daily_summary="00:00")
    n = Notifier(cfg, send=lambda a: sent.append(a) or True, clock=lambda: now[0])
    n.on_event(ConnectionEvent("binance", market_data=True, orders=False, last_tick_age=1.0))
    n.check()
    assert not any(a.key.startswith("stale") for a in n._queue.queue)
    now[0] += 61
    n.check()
    stale = [a for a in n._queue.queue if a.key.startswith("stale")]
    assert [a.title for a in stale] == ["pmgui: order stream down"]
    n.check()  # told once per outage
    assert len([a for a in n._queue.queue if a.key.startswith("stale")]) == 1
    n.on_event(PositionRemoved(pos(closed_at=now[0], exit_price=110.0, exit_reason="take_profit",
                                   realized_pnl=5.0), now[0]))
    summary = n.summary(now[0])
    assert "1 closed today (1 won), realized P/L +5.00" in summary.body


def test_bad_notify_urls_are_config_errors(tmp_path):
    from pmgui.config import load_config
    from pmgui.domain.errors import ConfigError

    cfg = tmp_path / "c.toml"
    cfg.write_text('[notify]\nurls = ["not a url"]\n')
    with pytest.raises(ConfigError, match="notify.urls"):
        load_config(cfg)
    cfg.write_text('[notify]\nurls = ["json://127.0.0.1:9/x"]\ndaily_summary = "25:00"\n')
    with pytest.raises(ConfigError, match="daily_summary"):
        load_config(cfg)
    cfg.write_text('[notify]\nurls = ["json://127.0.0.1:9/x"]\n[service]\nlisten = "x"\n')
    with pytest.raises(ConfigError, match="service.listen"):
        load_config(cfg)
    cfg.write_text('[notify]\nurls = ["json://127.0.0.1:9/x"]\n')
    assert load_config(cfg).notify.urls == ("json://127.0.0.1:9/x",)
    assert json.dumps(list(load_config(cfg).notify.urls))


def test_the_headless_engine_process_sends_its_alerts(qtbot, endpoint, tmp_path):
    from pmgui.engine.commands import ClosePosition
    from pmgui.service.client import RemoteEngine
    from tests.test_service_window_e2e import EngineProcess

    proc = EngineProcess(tmp_path, f'[notify]\nurls = ["json://127.0.0.1:{endpoint.port}/'
                                   'alerts"]\ndaily_summary = false\n')
    try:
        url = proc.start(qtbot)
        remote = RemoteEngine(url, proc.tokens["trade"])
        remote.start(timeout=60)
        try:
            qtbot.waitUntil(lambda: len(proc.stored()) >= 5, timeout=60_000)
            pid = sorted(proc.stored())[0]
            symbol = proc.stored()[pid].symbol
            result = remote.submit(ClosePosition(pid, reason="manual")).result(60)
            assert result.ok
        finally:
            remote.stop()
        with endpoint.cond:
            assert endpoint.cond.wait_for(
                lambda: any(p["title"] == f"pmgui: {symbol} closed" for p in endpoint.posts),
                60), endpoint.posts
        post = next(p for p in endpoint.posts if p["title"] == f"pmgui: {symbol} closed")
        assert "(manual)" in post["message"] and "P/L" in post["message"]
        assert set(endpoint.paths) == {"/alerts"}
    finally:
        proc.kill()
