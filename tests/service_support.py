"""A real paper engine served on 127.0.0.1 for the service tests, and a raw client."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from pmgui.config import Config, PaperConfig
from pmgui.engine.build import build_engine
from pmgui.engine.settings import EngineSettings
from pmgui.service import protocol
from pmgui.service.server import EngineService
from pmgui.service.settings import ServiceConfig
from pmgui.service.tokens import Authenticator, TokenStore


@contextmanager
def served_engine(tmp_path: Path, seed: int = 3, settings: ServiceConfig | None = None):
    """(engine, service, {"read": token, "trade": token}) on a free loopback port."""
    store = TokenStore(tmp_path / "tokens.json")
    tokens = {scope: store.create(scope)[0] for scope in ("read", "trade")}
    engine = build_engine(Config(paper=PaperConfig(seed=seed),
                                 engine=EngineSettings(demo_positions=True)),
                          tmp_path / "pmgui.db")
    service = EngineService(engine, Authenticator(store), settings or ServiceConfig())
    service.attach()
    engine.start()
    try:
        service.start("127.0.0.1", 0)
        yield engine, service, tokens
    finally:
        service.stop()
        engine.stop()


def frame(op: str, **fields) -> str:
    return protocol.dumps({"op": op, **fields})


def submit_frame(msg_id: int, cmd) -> str:
    return frame("submit", id=msg_id, cmd=protocol.encode(cmd))


def hello() -> str:
    return frame("hello", schema=protocol.schema_hash())


async def open_ws(session, service, token: str | None, *, do_hello: bool = True, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await session.ws_connect(service.url, headers=headers, **kw)
    if do_hello:
        await ws.send_str(hello())
        welcome = json.loads((await ws.receive(timeout=20)).data)
        assert welcome["op"] == "welcome", welcome
    return ws


async def answer(ws, msg_id: int, timeout: float = 30.0) -> dict:
    """The result/error frame for `msg_id` (skipping event batches)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type.name == "TEXT", (msg.type, msg.data, msg.extra)
        data = json.loads(msg.data)
        if data.get("op") in ("result", "error") and data.get("id") == msg_id:
            return data
        assert data["op"] in ("events", "sync", "error"), data
