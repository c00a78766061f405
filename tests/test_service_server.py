"""The engine service against hostile and careless clients: a real paper engine, real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import aiohttp
import pytest

from pmgui.engine.commands import ClosePosition, SetAutomation, SetTargets
from pmgui.engine.events import ErrorEvent, PositionSnapshot
from pmgui.service import protocol
from pmgui.service.client import RemoteEngine
from pmgui.service.settings import ServiceConfig
from tests.service_support import answer, frame, hello, open_ws, served_engine, submit_frame


def open_ids(engine, n: int = 5) -> set[str]:
    """The open positions, once the `n` demo positions are open."""
    for _ in range(600):
        ids = set(engine.query(lambda core: tuple(core.positions)).result(10))
        if len(ids) >= n:
            return ids
        engine.wait(0.05)  # woken early only if the engine stops
    raise AssertionError("the demo positions did not open")


def sl_of(engine, pid: str):
    return engine.query(lambda core: core.positions[pid].sl).result(10)


async def positions_seen(ws, n: int = 5) -> dict[str, PositionSnapshot]:
    """Read the sync and event batches until `n` positions are known (the demo positions
    open on the first ticks after start)."""
    seen: dict[str, PositionSnapshot] = {}
    synced = False
    while not (synced and len(seen) >= n):
        data = json.loads((await ws.receive(timeout=30)).data)
        synced = synced or data["op"] == "sync"
        for e in data.get("events", []):
            ev = protocol.decode(e)
            if isinstance(ev, PositionSnapshot):
                seen[ev.position.id] = ev
    return seen


async def test_tokens_scopes_and_bad_frames_are_refused_and_change_nothing(tmp_path):
    with served_engine(tmp_path) as (engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            for token in (None, "pmgui_wrong", tokens["trade"] + "x"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await open_ws(session, service, token)
                assert e.value.status == 401

            ro = await open_ws(session, service, tokens["read"])
            snaps = await positions_seen(ro)
            pid = sorted(snaps)[0]
            engine.submit(SetAutomation(pid, False)).result(10)  # no rule moves it meanwhile
            before_sl = sl_of(engine, pid)
            await ro.send_str(submit_frame(1, ClosePosition(pid)))
            err = await answer(ro, 1)
            assert err["op"] == "error" and err["code"] == "forbidden"
            assert "read-only" in err["error"] and "ClosePosition" in err["error"]
            await ro.send_str(submit_frame(2, SetTargets(pid, sl=before_sl * 0.9)))
            assert (await answer(ro, 2))["code"] == "forbidden"

            rw = await open_ws(session, service, tokens["trade"])
            hostile = [
                (3, "{definitely not json", "malformed"),
                (4, frame("submit", id=4, cmd={"__t": "RmRf", "path": "/"}), "unknown_type"),
                (5, frame("submit", id=5, cmd={"__t": "ClosePosition", "position_id": pid,
                                               "fraction": 1.0, "force": True}),
                 "unknown_field"),
                (6, frame("submit", id=6, cmd={"__t": "ClosePosition", "position_id": pid,
                                               "fraction": "all"}), "invalid"),
                (7, frame("launch", id=7), "malformed"),
                (8, frame("submit", id=8, cmd=protocol.encode(ClosePosition(pid)), extra=1),
                 "unknown_field"),
            ]
            for msg_id, text, code in hostile:
                await rw.send_str(text)
                err = await answer(rw, msg_id) if msg_id not in (3,) else None
                if err is None:  # not JSON: no id to answer to
                    while True:
                        data = json.loads((await rw.receive(timeout=20)).data)
                        if data["op"] == "error":
                            err = data
                            break
                assert err["op"] == "error" and err["code"] == code, (text, err)
            await rw.send_bytes(b"\x00\x01")
            await rw.send_str(frame("ping", id=9))
            # the binary frame was refused, the connection still answers
            while True:
                data = json.loads((await rw.receive(timeout=20)).data)
                if data["op"] == "error":
                    assert data["code"] == "malformed" and "text frames" in data["error"]
                if data["op"] == "pong":
                    break
            assert pid in open_ids(engine) and sl_of(engine, pid) == before_sl

            # a wrong protocol version: told why, then closed
            await rw.send_str(json.dumps({"v": 99, "op": "submit", "id": 10}))
            data = json.loads((await rw.receive(timeout=20)).data)
            assert data["code"] == "version" and "version 99" in data["error"]
            closing = await rw.receive(timeout=20)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert rw.close_code == 4000
            await ro.close()
        assert pid in open_ids(engine) and sl_of(engine, pid) == before_sl


async def test_schema_mismatch_and_missing_hello_are_refused(tmp_path):
    with served_engine(tmp_path) as (_engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ws = await open_ws(session, service, tokens["trade"], do_hello=False)
            await ws.send_str(frame("hello", schema="0000"))
            data = json.loads((await ws.receive(timeout=20)).data)
            assert data["code"] == "version" and "same pmgui version" in data["error"]
            ws = await open_ws(session, service, tokens["trade"], do_hello=False)
            await ws.send_str(submit_frame(1, SetAutomation(None, False)))
            data = json.loads((await ws.receive(timeout=20)).data)
            assert data["op"] == "error" and "expected hello" in data["error"]


async def test_oversized_frames_close_the_connection_and_do_nothing(tmp_path):
    with served_engine(tmp_path, settings=ServiceConfig(max_msg_size=4096)) as (
            engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ws = await open_ws(session, service, tokens["trade"])
            pid = sorted(open_ids(engine))[0]
            cmd = protocol.encode(ClosePosition(pid, reason="x" * 10_000))
            await ws.send_str(frame("submit", id=1, cmd=cmd))
            while True:
                msg = await ws.receive(timeout=20)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert ws.close_code == 1009  # message too big
            assert pid in open_ids(engine)


async def test_a_flood_is_rate_limited_and_the_excess_is_not_executed(tmp_path):
    settings = ServiceConfig(rate=2.0, burst=5)
    with served_engine(tmp_path, settings=settings) as (engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ws = await open_ws(session, service, tokens["trade"])
            pid = sorted(open_ids(engine))[0]
            n = 40
            for i in range(1, n + 1):
                await ws.send_str(submit_frame(i, SetAutomation(pid, i % 2 == 0)))
            codes: dict[int, str] = {}
            while len(codes) < n:
                data = json.loads((await ws.receive(timeout=30)).data)
                if data["op"] in ("result", "error") and "id" in data:
                    codes[data["id"]] = data["op"] if data["op"] == "result" else data["code"]
            executed = [i for i, c in codes.items() if c == "result"]
            limited = [i for i, c in codes.items() if c == "rate_limited"]
            assert len(limited) >= n - 15 and len(executed) + len(limited) == n
            assert len(executed) <= 15


def lazy_client(service, token: str) -> socket.socket:
    """A raw websocket client that upgrades, says hello and then never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((service.host, service.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: {service.host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n")
                 .encode())
    payload = hello().encode()
    mask = os.urandom(4)
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                 + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


async def test_a_client_that_never_reads_does_not_slow_the_engine(tmp_path):
    settings = ServiceConfig(send_queue=50)
    with served_engine(tmp_path, settings=settings) as (engine, service, tokens):
        lazy = lazy_client(service, tokens["read"])
        try:
            async with aiohttp.ClientSession() as session:
                ws = await open_ws(session, service, tokens["trade"])
                for _ in range(600):
                    if len(service._clients) == 2:
                        break
                    await asyncio.sleep(0.05)  # polling a condition, not waiting for time
                slow = next(c for c in service._clients.values() if c.scope == "read")
                # a burst of unkeyed events, far more than the socket buffers hold: publishing
                # never waits for the lazy client, whose backlog is dropped to a resync
                for i in range(20_000):
                    engine.outbox.publish(ErrorEvent(f"burst {i} " + "x" * 2000, float(i)))
                assert slow.resyncs >= 1
                assert len(slow.keyed) + len(slow.unkeyed) <= settings.send_queue
                # the engine and a reading client carry on
                pid = sorted(open_ids(engine))[0]
                await ws.send_str(submit_frame(1, SetAutomation(pid, False)))
                assert (await answer(ws, 1, timeout=60))["op"] == "result"
                assert engine.running
        finally:
            lazy.close()


def test_remote_engine_refuses_commands_while_disconnected(tmp_path):
    with served_engine(tmp_path) as (engine, service, tokens):
        remote = RemoteEngine(service.url, tokens["trade"])
        remote.start()
        try:
            assert remote.exchange_id == "paper" and remote.scope == "trade"
            pid = sorted(open_ids(engine))[0]
            assert remote.submit(SetAutomation(pid, False)).result(20).ok
        finally:
            remote.stop()
        assert remote.link == "stopped"
        fut = remote.submit(SetAutomation(pid, True))
        with pytest.raises(Exception, match="not connected to the engine.*not sent"):
            fut.result(1)
        assert not engine.query(lambda core: core.positions[pid].automation).result(10)

    bad = RemoteEngine(service.url, "pmgui_nope")
    with pytest.raises(Exception, match="cannot reach|refused"):
        bad.start(timeout=20)


def test_healthz_reports_streams_and_unprotected_positions(tmp_path):
    import urllib.error
    import urllib.request

    def get(url: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    with served_engine(tmp_path) as (engine, service, _tokens):
        url = service.url.replace("ws://", "http://") + "/healthz"
        pid = sorted(open_ids(engine))[0]
        for _ in range(600):  # the first ticks arrive and the demo positions are open
            status, body = get(url)
            if status == 200 and body["positions"] >= 5:
                break
            engine.wait(0.05)
        assert status == 200 and body["status"] == "ok", body
        assert body["market_data"] and body["orders"] and body["positions"] >= 5
        assert body["unprotected"] == [] and body["last_tick_age"] is not None
        engine.submit(SetAutomation(pid, False)).result(10)
        assert engine.submit(SetTargets(pid, sl=None)).result(10).ok  # no stop at all
        symbol = engine.query(lambda core: core.positions[pid].symbol).result(10)
        for _ in range(600):
            status, body = get(url)
            if status == 503:
                break
            engine.wait(0.05)
        assert status == 503 and body["unprotected"] == [symbol], body
        assert "1 unprotected position(s)" in body["problems"]
    ok, report = service.health()  # the engine stopped
    assert not ok and "engine stopped" in report["problems"]


async def test_the_charts_requests_are_answered_for_a_read_token(tmp_path):
    # a remote window's chart asks GetCandles and GetIndicatorLine like the embedded one:
    # they are read-only requests, so a read token gets their answers, not unknown_type
    from pmgui.engine.commands import CandlesSnapshot, GetCandles, GetIndicatorLine

    with served_engine(tmp_path) as (engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ro = await open_ws(session, service, tokens["read"])
            pid = sorted(await positions_seen(ro))[0]
            symbol = engine.query(lambda core: core.positions[pid].symbol).result(10)
            await ro.send_str(submit_frame(1, GetCandles(symbol, "1h", 50)))
            got = await answer(ro, 1)
            assert got["op"] == "result", got
            assert isinstance(protocol.decode(got["result"]), CandlesSnapshot)
            await ro.send_str(submit_frame(2, GetIndicatorLine(pid)))
            got = await answer(ro, 2)
            assert got["op"] == "result", got
            await ro.close()


async def test_a_token_revoked_while_connected_can_no_longer_trade(tmp_path):
    # revoking a (leaked) trade token takes effect at once: the connection that authenticated
    # with it before the revocation is refused its next command, and nothing is executed
    from pmgui.service.tokens import TokenStore

    with served_engine(tmp_path) as (engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            rw = await open_ws(session, service, tokens["trade"])
            pid = sorted(await positions_seen(rw))[0]
            await rw.send_str(submit_frame(1, SetAutomation(pid, False)))
            assert (await answer(rw, 1))["op"] == "result"
            store = TokenStore(tmp_path / "tokens.json")
            trade_id = next(t.id for t in store.list() if t.scope == "trade")
            assert store.revoke(trade_id)
            await rw.send_str(submit_frame(2, SetAutomation(pid, True)))
            err = await answer(rw, 2)
            assert err["op"] == "error" and err["code"] == "forbidden", err
            assert "revoked" in err["error"]
            closing = await rw.receive(timeout=20)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert not engine.query(lambda core: core.positions[pid].automation).result(10)


async def test_clients_are_told_when_the_engine_stops(tmp_path):
    # a stopping engine closes each websocket with 1001 and a reason, so the window can say
    # the engine stopped instead of seeing the socket drop
    with served_engine(tmp_path) as (_engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ws = await open_ws(session, service, tokens["read"])
            await asyncio.to_thread(service.stop)
            while True:
                msg = await ws.receive(timeout=30)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
            assert msg.type == aiohttp.WSMsgType.CLOSE, (msg.type, msg.data, msg.extra)
            assert msg.data == 1001 and "stopping" in msg.extra


async def test_an_unreadable_token_file_refuses_clearly_and_the_engine_carries_on(tmp_path):
    with served_engine(tmp_path) as (engine, service, tokens):
        good = (tmp_path / "tokens.json").read_text()
        (tmp_path / "tokens.json").write_text("{not json")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await open_ws(session, service, tokens["trade"])
            assert e.value.status == 503  # not an internal error: the reason is told
            async with session.get(service.url.replace("ws://", "http://") + "/ws",
                                   headers={"Authorization": f"Bearer {tokens['read']}"}) as r:
                assert r.status == 503 and "token file" in await r.text()
            (tmp_path / "tokens.json").write_text(good + " ")  # readable again
            ws = await open_ws(session, service, tokens["read"])
            await ws.close()
        assert engine.running


async def test_an_event_that_cannot_be_encoded_does_not_stop_the_feed(tmp_path):
    # one bad event (a bug elsewhere) is left out; the client keeps getting the live feed
    # instead of a connection that stays open while nothing arrives any more
    with served_engine(tmp_path) as (engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ws = await open_ws(session, service, tokens["read"])
            await positions_seen(ws)
            engine.outbox.publish(ErrorEvent(("not", "a", object()), 1.0))  # type: ignore[arg-type]
            engine.outbox.publish(ErrorEvent("after the bad one", 2.0))
            while True:
                data = json.loads((await ws.receive(timeout=30)).data)
                messages = [protocol.decode(e).message for e in data.get("events", [])
                            if e.get("__t") == "ErrorEvent"]
                if "after the bad one" in messages:
                    break
            await ws.close()


async def test_a_feed_that_fails_closes_the_connection_instead_of_going_quiet(tmp_path):
    # an error in the sender other than encoding (here: an event whose symbol cannot be
    # looked up) ended the feed while the connection stayed open: the window kept showing
    # its last prices as live. It is closed with 1011 now, and the window reconnects.
    class Odd(ErrorEvent):
        symbol = ["not", "hashable"]  # noqa: RUF012 (unhashable on purpose)

    with served_engine(tmp_path) as (engine, service, tokens):
        async with aiohttp.ClientSession() as session:
            ws = await open_ws(session, service, tokens["read"])
            await positions_seen(ws)
            engine.outbox.publish(Odd("odd", 1.0))
            while True:
                msg = await ws.receive(timeout=30)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011, msg
            again = await open_ws(session, service, tokens["read"])  # served as before
            await positions_seen(again)
            await again.close()
        assert engine.running
