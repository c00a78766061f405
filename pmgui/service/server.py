"""The engine service: the engine's commands and events over a websocket (DESIGN §11).

Threads: the engine runs on its manager thread; this server runs its own asyncio loop on its
own thread. The engine only ever calls `_on_event` (an Outbox listener): under one lock it
updates the *mirror* (the newest event per key: the full state a new client starts from)
and each client's pending buffer (newest per key, unkeyed events in order, bounded), and
wakes that client's sender. Encoding and sending happen here, so a slow client never slows
the engine; a client whose buffer overflows (it does not read) is dropped to a resync: its
backlog is discarded and it gets the full state again once it reads.

Wire (pmgui.service.protocol): the client sends `Authorization: Bearer TOKEN` with the
upgrade (a missing or wrong token: HTTP 401, nothing else happens), then
`{"v":1,"op":"hello","schema":HASH}`; the server answers `welcome` (scope, exchange, schema)
and a `sync` with the full state, then `events` batches. Commands travel as
`{"v":1,"op":"submit","id":N,"cmd":{...}}` and are answered with `result` or `error`
(codes: malformed, version, unknown_type, unknown_field, invalid, forbidden, rate_limited,
engine, internal).

`GET /healthz` answers 200 or 503 with market data, orders, clock offset, last tick age and
unprotected positions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from pmgui import __version__
from pmgui.domain.enums import Protection
from pmgui.domain.errors import PmguiError
from pmgui.engine.events import (
    CandlesEvent,
    ConnectionEvent,
    OrderSnapshot,
    PositionCorrected,
    PositionRemoved,
    PositionSnapshot,
    TickEvent,
)
from pmgui.service import protocol
from pmgui.service.settings import ServiceConfig, is_loopback
from pmgui.service.tokens import Authenticator

log = logging.getLogger("pmgui.service")

HELLO_TIMEOUT = 10.0
SEND_TIMEOUT = 30.0  # a send that cannot complete for this long: the client is gone
MAX_REFUSALS = 50  # consecutive rate-limit refusals before the connection is closed
BATCH_INTERVAL = 0.03  # at most ~30 batches a second per client (coalescing window)


def _symbol_of(ev: object) -> str | None:
    if isinstance(ev, PositionSnapshot | PositionRemoved | PositionCorrected):
        return ev.position.symbol
    if isinstance(ev, OrderSnapshot):
        return ev.order.symbol
    if isinstance(ev, TickEvent | CandlesEvent):
        return ev.symbol
    return getattr(ev, "symbol", None)


@dataclass
class _Client:
    id: int
    scope: str
    peer: str
    wake: asyncio.Event
    loop: asyncio.AbstractEventLoop
    limit: int
    keyed: OrderedDict = field(default_factory=OrderedDict)
    unkeyed: deque = field(default_factory=deque)
    resync: bool = True  # the next batch is the full state
    resyncs: int = 0
    markets_sent: set = field(default_factory=set)
    signalled: bool = False
    token: str = field(default="", repr=False)  # re-checked before each command (revocation)

    def add(self, ev: Any) -> None:
        """Under the server lock, on the publishing thread."""
        if self.resync:
            return  # the full state is sent next anyway
        key = ev.key
        if key is None:
            clears = getattr(ev, "clears", None)
            if clears is not None:
                self.keyed.pop(clears, None)
            self.unkeyed.append(ev)
        else:
            self.keyed.pop(key, None)
            self.keyed[key] = ev
        if len(self.unkeyed) + len(self.keyed) > self.limit:
            self.keyed.clear()
            self.unkeyed.clear()
            self.resync = True
            self.resyncs += 1
        if not self.signalled:
            self.signalled = True
            try:
                self.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:  # the server loop is closed
                pass


class EngineService:
    """Serve `engine` (an EngineThread: submit, outbox, market, exchange_id, running)."""

    def __init__(self, engine: Any, auth: Authenticator, settings: ServiceConfig | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.auth = auth
        self.settings = settings or ServiceConfig()
        self.clock = clock
        self._lock = threading.Lock()
        self._mirror: OrderedDict[Any, Any] = OrderedDict()
        self._conn_at: float | None = None  # monotonic time of the newest ConnectionEvent
        self._clients: dict[int, _Client] = {}
        self._sockets: set[web.WebSocketResponse] = set()  # open websockets (server loop)
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.host = ""
        self.port = 0
        self.tls = False
        self.refused = 0  # frames refused so far (diagnostics, tests)

    # -- engine side (publishing thread) -------------------------------------------------------
    def attach(self) -> None:
        """Listen to the engine's events; call before the engine starts (full mirror)."""
        self.engine.outbox.add_listener(self._on_event)

    def _on_event(self, ev: Any) -> None:
        key = ev.key
        with self._lock:
            if key is None:
                clears = getattr(ev, "clears", None)
                if clears is not None:
                    self._mirror.pop(clears, None)
            elif isinstance(ev, OrderSnapshot) and ev.order.status.is_final:
                self._mirror.pop(key, None)  # finished orders are not state; bounded mirror
            else:
                self._mirror.pop(key, None)
                self._mirror[key] = ev
                if isinstance(ev, ConnectionEvent):
                    self._conn_at = time.monotonic()
            for c in self._clients.values():
                c.add(ev)

    def _take(self, client: _Client) -> tuple[bool, list[Any]]:
        with self._lock:
            client.signalled = False
            if client.resync:
                client.resync = False
                return True, list(self._mirror.values())
            events = list(client.unkeyed) + list(client.keyed.values())
            client.unkeyed.clear()
            client.keyed.clear()
            return False, events

    # -- lifecycle -----------------------------------------------------------------------------
    def check(self, host: str) -> ssl.SSLContext | None:
        """PmguiError when serving on `host` is not allowed as configured (another address
        than loopback without TLS or without a token, an unloadable certificate); else the
        TLS context (None: plain). Called before the engine starts, and by `start`."""
        s = self.settings
        context = None
        if not is_loopback(host):
            if s.tls_cert is None or s.tls_key is None:
                raise PmguiError(
                    f"listening on {host} (not loopback) needs TLS: set [service] tls_cert and "
                    "tls_key in the configuration")
            if self.auth.store is None or not self.auth.store.list():
                raise PmguiError(f"listening on {host} needs a token: create one with "
                                 "`pmgui token create --scope read|trade`")
        if s.tls_cert is not None and s.tls_key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(s.tls_cert, s.tls_key)
            except (OSError, ssl.SSLError) as e:
                raise PmguiError(f"cannot load the TLS certificate {s.tls_cert} / key "
                                 f"{s.tls_key}: {e}") from None
        return context

    def start(self, host: str, port: int, timeout: float = 30.0) -> tuple[str, int]:
        """Bind and serve on a thread of its own; returns the bound (host, port)."""
        context = self.check(host)
        self.tls = context is not None
        self._thread = threading.Thread(target=self._run, args=(host, port, context),
                                        name="pmgui-service", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise PmguiError("the engine service did not start in time")
        if self._start_error is not None:
            raise PmguiError(f"cannot listen on {host}:{port}: {self._start_error}")
        return self.host, self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(host, port, context))
        except BaseException as e:
            if not self._started.is_set():
                self._start_error = e
                self._started.set()
            else:
                log.exception("the engine service stopped with an error")
        finally:
            loop.close()

    async def _main(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=self.settings.max_msg_size)
        app.router.add_get("/", self._ws)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/healthz", self._healthz)
        app.on_shutdown.append(self._going_away)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.host, self.port = sockets[0].getsockname()[:2]
        log.info("engine service listening on %s", self.url)
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self._runner.cleanup()

    async def _going_away(self, app: web.Application) -> None:
        """The engine stops: every client is told so (1001) instead of losing the socket."""
        for ws in list(self._sockets):
            try:
                await asyncio.wait_for(ws.close(code=1001, message=b"the engine is stopping"),
                                       5.0)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass

    # -- health --------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            events = list(self._mirror.values())
            conn_at = self._conn_at
        conns = [e for e in events if isinstance(e, ConnectionEvent)]
        snaps = [e for e in events if isinstance(e, PositionSnapshot)]
        conn = conns[-1] if conns else None
        ticks = [e.ts for e in events if isinstance(e, TickEvent)]
        age = None
        if ticks:
            age = max(0.0, self.clock() - max(ticks))
        elif conn is not None and conn.last_tick_age is not None and conn_at is not None:
            age = conn.last_tick_age + (time.monotonic() - conn_at)
        unprotected = sorted(s.position.symbol for s in snaps
                             if s.protection == Protection.UNPROTECTED)
        engine_up = bool(getattr(self.engine, "running", True))
        report = {
            "engine": engine_up,
            "exchange": getattr(self.engine, "exchange_id", ""),
            "market_data": bool(conn and conn.market_data),
            "orders": bool(conn and conn.orders),
            "clock_offset": conn.clock_offset if conn else None,
            "last_tick_age": round(age, 3) if age is not None else None,
            "positions": len(snaps),
            "unprotected": unprotected,
            "clients": len(self._clients),
        }
        problems = []
        if not engine_up:
            problems.append("engine stopped")
        if not report["market_data"]:
            problems.append("market data down")
        if not report["orders"]:
            problems.append("order stream down")
        if age is None or age > self.settings.stale_after:
            problems.append("market data stale")
        if unprotected:
            problems.append(f"{len(unprotected)} unprotected position(s)")
        report["problems"] = problems
        report["status"] = "ok" if not problems else "degraded"
        return not problems, report

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, report = self.health()
        if not is_loopback(request.remote or ""):  # no token here: counts, not symbols
            report["unprotected"] = len(report["unprotected"])
        return web.json_response(report, status=200 if ok else 503)

    # -- websocket -----------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        peer = request.remote or "?"
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        try:
            scope = self.auth.scope_of(token) if token else None
        except PmguiError as e:  # the token file is unreadable: fail closed, say why
            self.refused += 1
            log.error("refused a connection from %s: %s", peer, e)
            return web.Response(status=503, reason="Service Unavailable",
                                text="the engine cannot check tokens: its token file is "
                                     "unreadable (see the engine's log)\n")
        if scope is None:
            self.refused += 1
            log.warning("refused a connection from %s: %s", peer,
                        "no token" if not token else "unknown token")
            reason = "a token is required" if not token else "the token is not valid"
            return web.Response(status=401, reason="Unauthorized", text=reason + "\n",
                                headers={"WWW-Authenticate": "Bearer"})
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_msg_size, heartbeat=15.0,
                                   autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="websocket upgrade expected\n")
        await ws.prepare(request)
        self._sockets.add(ws)
        loop = asyncio.get_running_loop()
        client = _Client(next(self._ids), scope, peer, asyncio.Event(), loop,
                         self.settings.send_queue, token=token)
        try:
            if not await self._hello(ws, client):
                return ws
            with self._lock:
                self._clients[client.id] = client
                client.wake.set()
            log.info("client %d connected from %s (%s)", client.id, peer, scope)
            sender = asyncio.create_task(self._sender(ws, client))
            try:
                await self._receive(ws, client)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        finally:
            with self._lock:
                self._clients.pop(client.id, None)
            self._sockets.discard(ws)
            if not ws.closed:
                await ws.close()
            log.info("client %d disconnected", client.id)
        return ws

    async def _send(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        await asyncio.wait_for(ws.send_str(protocol.dumps(message)), SEND_TIMEOUT)

    async def _refuse(self, ws: web.WebSocketResponse, code: str, error: str,
                      msg_id: Any = None, close: bool = False) -> None:
        self.refused += 1
        frame: dict[str, Any] = {"op": "error", "code": code, "error": error}
        if isinstance(msg_id, int) and not isinstance(msg_id, bool):
            frame["id"] = msg_id
        try:
            await self._send(ws, frame)
            if close:
                await ws.close(code=4000 if code == "version" else 1008,
                               message=error[:120].encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass

    async def _hello(self, ws: web.WebSocketResponse, client: _Client) -> bool:
        try:
            msg = await ws.receive(HELLO_TIMEOUT)
        except TimeoutError:
            await self._refuse(ws, "malformed", "no hello within "
                               f"{HELLO_TIMEOUT:g} s", close=True)
            return False
        if msg.type != WSMsgType.TEXT:
            await self._refuse(ws, "malformed", "expected a hello text frame", close=True)
            return False
        try:
            data = protocol.loads(msg.data)
            if data["op"] != "hello":
                raise protocol.ProtocolError(f"expected hello, got {data['op']!r}", "malformed")
        except protocol.ProtocolError as e:
            await self._refuse(ws, e.code, str(e), close=True)
            return False
        theirs = data.get("schema")
        if theirs != protocol.schema_hash():
            await self._refuse(ws, "version", f"schema {theirs!r} differs from the engine's "
                               f"{protocol.schema_hash()} (pmgui {__version__}): use the same "
                               "pmgui version on both sides", close=True)
            return False
        await self._send(ws, {"op": "welcome", "scope": client.scope,
                              "exchange": getattr(self.engine, "exchange_id", ""),
                              "schema": protocol.schema_hash(), "server": __version__})
        return True

    async def _sender(self, ws: web.WebSocketResponse, client: _Client) -> None:
        try:
            while not ws.closed:
                await client.wake.wait()
                client.wake.clear()
                resync, events = self._take(client)
                markets = []
                for ev in events:
                    sym = _symbol_of(ev)
                    if sym and sym not in client.markets_sent:
                        m = self.engine.market(sym)
                        if m is not None:
                            markets.append(m)
                            client.markets_sent.add(sym)
                payload = await asyncio.to_thread(self._encode, events, markets) \
                    if len(events) > 200 else self._encode(events, markets)
                await self._send(ws, {"op": "sync" if resync else "events", **payload})
                await asyncio.sleep(BATCH_INTERVAL)  # let a burst coalesce into one batch
        except (TimeoutError, ConnectionError, RuntimeError) as e:
            log.warning("client %d is not reading (%s): closing", client.id,
                        type(e).__name__)
            await ws.close(code=1008, message=b"too slow")
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug on this side (an event or market that breaks the batch): the feed has
            # stopped, so the connection must not stay open as if it were live. Closed with
            # 1011, the window says so and reconnects to a fresh sync.
            log.exception("the feed to client %d failed: closing its connection", client.id)
            await ws.close(code=1011, message=b"the engine's feed failed; reconnect")

    @staticmethod
    def _encode(events: list[Any], markets: list[Any]) -> dict[str, Any]:
        """The batch's payload. An event that cannot be encoded (a bug elsewhere) is logged
        and left out: it must not end the sender, which would leave the client connected
        to a feed that silently stopped (a stale view shown as live)."""
        out: dict[str, list[Any]] = {"events": [], "markets": []}
        for name, values in (("events", events), ("markets", markets)):
            for v in values:
                try:
                    out[name].append(protocol.encode(v))
                except (TypeError, ValueError) as e:
                    log.error("cannot send a %s to clients: %s", type(v).__name__, e)
        return out

    async def _receive(self, ws: web.WebSocketResponse, client: _Client) -> None:
        s = self.settings
        allowance, last = float(s.burst), time.monotonic()
        refusals = 0
        commands = protocol.command_types()
        readonly = protocol.read_only_types()
        tasks: set[asyncio.Task] = set()  # commands in flight (kept referenced)
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            now = time.monotonic()
            allowance = min(float(s.burst), allowance + (now - last) * s.rate)
            last = now
            if allowance < 1.0:
                refusals += 1
                await self._refuse(ws, "rate_limited", f"more than {s.rate:g} frames per "
                                   "second: refused, nothing done", _frame_id(msg),
                                   close=refusals >= MAX_REFUSALS)
                if refusals >= MAX_REFUSALS:
                    log.warning("client %d flooded: closed", client.id)
                    return
                continue
            allowance -= 1.0
            refusals = 0
            if msg.type != WSMsgType.TEXT:
                await self._refuse(ws, "malformed", "only JSON text frames are accepted")
                continue
            msg_id: Any = None
            try:
                data = protocol.loads(msg.data)
                msg_id = data.get("id")
                op = data["op"]
                if op == "ping":
                    await self._send(ws, {"op": "pong", "id": msg_id})
                    continue
                if op != "submit":
                    raise protocol.ProtocolError(f"unknown op {op!r} (expected submit or ping)",
                                                 "malformed")
                if not isinstance(msg_id, int) or isinstance(msg_id, bool):
                    raise protocol.ProtocolError("submit needs an integer 'id'", "malformed")
                extra = set(data) - {"v", "op", "id", "cmd"}
                if extra:
                    raise protocol.ProtocolError(
                        f"unknown key(s) in submit: {', '.join(sorted(extra))}", "unknown_field")
                cmd = protocol.decode_payload(data.get("cmd"), "cmd", commands)
            except protocol.ProtocolError as e:
                version_bad = e.code == "version"
                await self._refuse(ws, e.code, str(e), msg_id, close=version_bad)
                if version_bad:
                    return
                continue
            if not self._still_valid(client):
                log.warning("client %d: its token was revoked: closed", client.id)
                await self._refuse(ws, "forbidden", "the token was revoked: nothing done",
                                   msg_id, close=True)
                return
            if client.scope != "trade" and not isinstance(cmd, readonly):
                log.warning("client %d (read-only) tried %s: refused", client.id,
                            type(cmd).__name__)
                await self._refuse(ws, "forbidden", f"this token is read-only: "
                                   f"{type(cmd).__name__} needs the trade scope", msg_id)
                continue
            task = asyncio.create_task(self._execute(ws, msg_id, cmd))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def _still_valid(self, client: _Client) -> bool:
        """Does the client's token still grant its scope? (A revoked token takes effect at
        once, also for connections opened before; an unreadable token file fails closed.)"""
        try:
            return self.auth.scope_of(client.token) == client.scope
        except PmguiError as e:
            log.error("cannot check client %d's token: %s", client.id, e)
            return False

    async def _execute(self, ws: web.WebSocketResponse, msg_id: int, cmd: Any) -> None:
        try:
            result = await asyncio.wrap_future(self.engine.submit(cmd))
        except PmguiError as e:
            await self._refuse(ws, "engine", str(e) or type(e).__name__, msg_id)
            self.refused -= 1  # an engine refusal is an answer, not a refused frame
            return
        except concurrent.futures.CancelledError:
            await self._refuse(ws, "engine", "the command was cancelled", msg_id)
            return
        except Exception as e:
            log.exception("command %s failed", type(cmd).__name__)
            await self._refuse(ws, "internal", f"internal error: {e}", msg_id)
            return
        try:
            payload = protocol.encode(result)
        except TypeError as e:
            await self._refuse(ws, "internal", f"cannot encode the result: {e}", msg_id)
            return
        try:
            await self._send(ws, {"op": "result", "id": msg_id, "result": payload})
        except (TimeoutError, ConnectionError, RuntimeError):
            log.info("result of %s not delivered: the client left", type(cmd).__name__)


def _frame_id(msg: Any) -> Any:
    """The id of a frame refused unread (so the client knows which command was refused)."""
    if msg.type != WSMsgType.TEXT:
        return None
    try:
        data = json.loads(msg.data)
    except (ValueError, RecursionError):
        return None
    return data.get("id") if isinstance(data, dict) else None
