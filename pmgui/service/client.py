"""A remote engine with the same interface as the embedded one (pmgui.ui.handle.EngineHandle).

`RemoteEngine` runs a websocket client on a thread of its own and publishes the events it
receives into its own `Outbox`, so the window and its bridge cannot tell it from a local
engine. Commands go out only while connected: while disconnected `submit` fails at once
("not sent"), never queued; a command whose answer is lost with the connection fails with
"outcome unknown". Every (re)connection starts with the engine's full state (`sync`):
positions the engine no longer has are removed, so the window shows exactly the engine's
state again. Link changes appear as a ConnectionEvent (market data and orders down) and
an ErrorEvent, and in `link` / `link_detail` for a status indicator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Market
from pmgui.engine.events import ConnectionEvent, ErrorEvent, PositionRemoved, PositionSnapshot
from pmgui.engine.outbox import Outbox
from pmgui.service import protocol

log = logging.getLogger("pmgui.remote")

MAX_INCOMING = 64 * 1024 * 1024  # a full sync of a large account
COMMAND_TIMEOUT = 120.0


class RemoteEngine:
    """EngineHandle over a websocket. Thread-safe like EngineThread."""

    def __init__(self, url: str, token: str, *, cafile: Path | None = None,
                 outbox: Outbox | None = None, retry_max: float = 5.0) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise PmguiError(f"the engine URL must start with ws:// or wss://, got {url!r}")
        self.url = url
        self.outbox = outbox or Outbox()
        self.exchange_id = ""
        self.scope = ""
        self.link = "connecting"  # connecting | connected | disconnected | refused | stopped
        self.link_detail = ""
        self.syncs = 0  # full states received so far
        self._token = token
        self._cafile = cafile
        self._retry_max = retry_max
        self._markets: dict[str, Market] = {}
        self._positions: dict[str, Any] = {}  # id → Position (for removals on resync)
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._first = threading.Event()
        self._first_error: str | None = None
        self._stopped = threading.Event()

    # -- EngineHandle --------------------------------------------------------------------------
    def submit(self, command: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        loop, ws = self._loop, self._ws
        if self.link != "connected" or loop is None or ws is None or ws.closed:
            fut.set_exception(PmguiError(
                f"not connected to the engine ({self.link_detail or self.link}): "
                "the command was not sent"))
            return fut
        try:
            payload = protocol.encode(command)
        except TypeError as e:
            fut.set_exception(PmguiError(f"cannot send {type(command).__name__}: {e}"))
            return fut
        msg_id = next(self._ids)
        with self._lock:
            self._pending[msg_id] = fut
        frame = protocol.dumps({"op": "submit", "id": msg_id, "cmd": payload})

        async def send() -> None:
            try:
                if ws.closed:
                    raise ConnectionError("connection closed")
                await ws.send_str(frame)
            except Exception as e:
                self._fail(msg_id, PmguiError(f"the command was not sent: {e}"))
                return
            loop.call_later(COMMAND_TIMEOUT, self._fail, msg_id,
                            PmguiError("no answer from the engine in time: the outcome is "
                                       "unknown, check the position"))

        try:
            asyncio.run_coroutine_threadsafe(send(), loop)
        except RuntimeError:
            self._fail(msg_id, PmguiError("not connected to the engine: the command was not sent"))
        return fut

    def query(self, fn: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        fut.set_exception(PmguiError("a remote engine answers requests only (no local queries)"))
        return fut

    def market(self, symbol: str) -> Market | None:
        return self._markets.get(symbol)

    def store_path(self) -> Path | None:
        return None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self.link == "connected"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        """Connect; return after the first full state, or raise PmguiError saying why not."""
        self._thread = threading.Thread(target=self._run, name="pmgui-remote", daemon=True)
        self._thread.start()
        if not self._first.wait(timeout):
            self.stop()
            raise PmguiError(f"no answer from the engine at {self.url} within {timeout:g} s")
        if self._first_error is not None:
            self.stop()
            raise PmguiError(self._first_error)

    def stop(self, timeout: float = 10.0) -> None:
        loop, ev, ws = self._loop, self._stop, self._ws
        if loop is not None and ev is not None:
            try:
                loop.call_soon_threadsafe(ev.set)
                if ws is not None:
                    asyncio.run_coroutine_threadsafe(ws.close(), loop)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("remote engine client failed")
        finally:
            self.link = "stopped"
            self._fail_all(PmguiError("the connection to the engine was closed"))
            self._first.set()
            self._stopped.set()
            loop.close()

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("wss://"):
            return False
        ctx = ssl.create_default_context(cafile=str(self._cafile) if self._cafile else None)
        return ctx

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        delay = 0.2
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                syncs = self.syncs
                error, fatal = await self._session(session)
                if self._stop.is_set():
                    break
                if not self._first.is_set():
                    self._first_error = error
                    self._first.set()
                    return
                self._set_link("refused" if fatal else "disconnected", error)
                delay = 0.2 if self.syncs != syncs else min(self._retry_max, delay * 2)
                if fatal:
                    delay = self._retry_max
                stop = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait({stop}, timeout=delay)
                stop.cancel()

    def _set_link(self, state: str, detail: str) -> None:
        was = self.link
        self.link, self.link_detail = state, detail
        if state != "connected" and was == "connected":
            now = time.time()
            self.outbox.publish(ErrorEvent(f"Lost the connection to the engine at {self.url}: "
                                           f"{detail}; reconnecting", now))
            self.outbox.publish(ConnectionEvent(self.exchange_id, False, False, None,
                                                f"engine disconnected: {detail}"))

    async def _session(self, session: aiohttp.ClientSession) -> tuple[str, bool]:
        """One connection; returns (why it ended, whether retrying is pointless as is)."""
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            ws = await session.ws_connect(self.url, headers=headers, heartbeat=15.0,
                                          max_msg_size=MAX_INCOMING, ssl=self._ssl(),
                                          timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except aiohttp.WSServerHandshakeError as e:
            if e.status == 401:
                return f"the engine at {self.url} refused the token", True
            return f"the engine at {self.url} refused the connection (HTTP {e.status})", True
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return f"cannot reach the engine at {self.url}: {e or type(e).__name__}", False
        try:
            await ws.send_str(protocol.dumps({"op": "hello", "schema": protocol.schema_hash(),
                                              "client": "pmgui-window"}))
            welcome = await ws.receive(timeout=30.0)
            if welcome.type != aiohttp.WSMsgType.TEXT:
                return f"the engine closed the connection ({ws.close_code})", False
            data = protocol.loads(welcome.data)
            if data["op"] == "error":
                return f"the engine refused: {data.get('error')}", True
            if data["op"] != "welcome":
                return f"unexpected answer {data['op']!r} from the engine", True
            self.exchange_id = str(data.get("exchange", ""))
            self.scope = str(data.get("scope", ""))
            self._ws = ws
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                self._on_frame(msg.data)
            return f"the engine closed the connection ({ws.close_code})", False
        except protocol.ProtocolError as e:
            return f"bad frame from the engine: {e}", True
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return f"connection lost: {e or type(e).__name__}", False
        finally:
            self._ws = None
            if self.link == "connected":
                self._set_link("disconnected", "connection lost")
            self._fail_all(PmguiError("the connection to the engine was lost before its "
                                      "answer: the outcome is unknown, check the position"))
            if not ws.closed:
                await ws.close()

    def _on_frame(self, text: str) -> None:
        try:
            data = protocol.loads(text)
            op = data["op"]
            if op in ("events", "sync"):
                for m in data.get("markets", []):
                    market = protocol.decode_payload(m, "market", (Market,))
                    self._markets[market.symbol] = market
                events = [protocol.decode_payload(e, "event", protocol.event_types())
                          for e in data.get("events", [])]
                if op == "sync":
                    self._resync(events)
                else:
                    self._publish(events)
            elif op == "result":
                value = protocol.decode(data.get("result"), "result")
                fut = self._pop(data.get("id"))
                if fut is not None and not fut.done():
                    fut.set_result(value)
            elif op == "error":
                fut = self._pop(data.get("id"))
                err = PmguiError(str(data.get("error", "refused")))
                if fut is not None and not fut.done():
                    fut.set_exception(err)
                elif data.get("id") is None:
                    log.warning("engine: %s", data.get("error"))
        except protocol.ProtocolError as e:  # the session ends: a clear, fatal reason
            log.error("bad frame from the engine: %s", e)
            raise

    def _publish(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, PositionSnapshot):
                self._positions[ev.position.id] = ev.position
            elif isinstance(ev, PositionRemoved):
                self._positions.pop(ev.position.id, None)
            self.outbox.publish(ev)

    def _resync(self, events: list[Any]) -> None:
        present = {e.position.id for e in events if isinstance(e, PositionSnapshot)}
        now = time.time()
        for pid, pos in list(self._positions.items()):
            if pid not in present:  # closed while we were away
                self._positions.pop(pid)
                self.outbox.publish(PositionRemoved(pos, now))
        self._publish(events)
        self.syncs += 1
        self.link, self.link_detail = "connected", ""
        self._first.set()

    def _pop(self, msg_id: Any) -> concurrent.futures.Future | None:
        with self._lock:
            return self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None

    def _fail(self, msg_id: int, error: Exception) -> None:
        fut = self._pop(msg_id)
        if fut is not None and not fut.done():
            fut.set_exception(error)

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)
