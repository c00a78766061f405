"""The service parts of the command line: --listen, --connect, tokens, the systemd unit.

pmgui.cli owns the parser and calls in here, so the service's options live in one place.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from pmgui.domain.errors import PmguiError

log = logging.getLogger("pmgui")

KEYRING_SERVICE = "pmgui-engine"


def add_arguments(p: argparse.ArgumentParser, sub: Any) -> None:
    p.add_argument("--listen", nargs="?", const="", metavar="HOST:PORT",
                   help="with --headless: serve the engine to remote windows "
                        "(default 127.0.0.1:8765 or [service] listen; port 0: any free port)")
    p.add_argument("--connect", nargs="?", const="", metavar="URL",
                   help="attach the window to a running engine (ws://HOST:PORT or wss://); "
                        "without a URL: the Connect to engine dialog")
    p.add_argument("--token-file", type=Path, metavar="PATH",
                   help="with --connect: read the access token from this file "
                        "(else $PMGUI_TOKEN, else the OS keyring)")
    p.add_argument("--cafile", type=Path, metavar="PEM",
                   help="with --connect wss://: trust this certificate (self-signed engines)")
    p.add_argument("--log-json", type=Path, metavar="PATH",
                   help="also write structured JSON logs to PATH (rotated at 10 MB, 5 kept)")
    p.add_argument("--wait-for-db", type=float, metavar="SECONDS", help=argparse.SUPPRESS)

    t = sub.add_parser("token", help="access tokens for the engine service")
    _config_option(t)
    tsub = t.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="create a token (printed once, stored hashed)")
    tc.add_argument("--scope", required=True, choices=["read", "trade"])
    tc.add_argument("--label", default="")
    _config_option(tc)
    tl = tsub.add_parser("list", help="the tokens (id, scope, label; never the token)")
    _config_option(tl)
    tr = tsub.add_parser("revoke", help="revoke a token by id")
    tr.add_argument("id")
    _config_option(tr)

    s = sub.add_parser("service", help="run the engine as a systemd user service")
    ssub = s.add_subparsers(dest="service_command", required=True)
    si = ssub.add_parser("install", help="write the systemd user unit")
    si.add_argument("--user", action="store_true", required=True,
                    help="for the current user (~/.config/systemd/user)")
    si.add_argument("--listen", dest="unit_listen", default="127.0.0.1:8765",
                    metavar="HOST:PORT")
    _config_option(si)
    si.add_argument("--db", type=Path, default=argparse.SUPPRESS)
    si.add_argument("--log-json", type=Path, default=argparse.SUPPRESS, metavar="PATH")
    si.add_argument("--force", action="store_true",
                    help="replace an existing unit that differs")


def _config_option(p: argparse.ArgumentParser) -> None:
    """--config also after the sub-command (`pmgui token create --scope read --config X`)."""
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                   help="TOML configuration file (tokens.json lives beside it)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.listen is not None and not args.headless:
        parser.error("--listen serves the headless engine: add --headless")
    if args.connect is not None and args.headless:
        parser.error("--connect attaches a window; drop --headless")
    if args.token_file is not None and args.connect is None:
        parser.error("--token-file goes with --connect")
    if args.listen:
        from pmgui.service.settings import parse_listen

        try:
            parse_listen(args.listen)
        except ValueError as e:
            parser.error(f"--listen: {e}")


def run_subcommand(args: argparse.Namespace) -> int:
    if args.command == "token":
        return _token(args)
    if args.command == "service":
        return _service(args)
    raise PmguiError(f"unknown command {args.command}")


def _token(args: argparse.Namespace) -> int:
    from pmgui.service.tokens import TokenStore, tokens_path

    store = TokenStore(tokens_path(args.config))
    if args.token_command == "create":
        token, info = store.create(args.scope, args.label)
        print(token)
        print(f"# token {info.id} ({info.scope}) stored hashed in {store.path}; "
              "it is shown only now", file=sys.stderr)
        return 0
    if args.token_command == "list":
        for info in store.list():
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created))
            print(f"{info.id}  {info.scope:<5}  {created}  {info.label}")
        return 0
    if not store.revoke(args.id):
        raise PmguiError(f"no token with id {args.id!r} (see pmgui token list)")
    print(f"revoked {args.id}")
    return 0


def _service(args: argparse.Namespace) -> int:
    from pmgui.service.settings import parse_listen
    from pmgui.service.systemd import UNIT_NAME, install_user_unit

    try:
        parse_listen(args.unit_listen)
    except ValueError as e:
        raise PmguiError(f"--listen: {e}") from None
    # The unit runs `pmgui --headless --listen ...` with this configuration: what would stop
    # it at every start (a public address without TLS or a token, a bad certificate, a bad
    # configuration file) is said now, not found later in the journal of a restart loop.
    from pmgui.config import load_config

    try:
        check_listen(load_config(args.config), args.unit_listen, bind=False)
    except PmguiError as e:
        raise PmguiError(f"not installed: the service would stop at start: {e}") from None
    path = install_user_unit(args.unit_listen, args.db, args.config, args.log_json,
                             force=args.force)
    print(f"wrote {path}")
    print(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now "
          f"{UNIT_NAME}")
    print("keep it running after logout: loginctl enable-linger $USER")
    return 0


# -- logging ---------------------------------------------------------------------------------

def setup_logging(args: argparse.Namespace) -> None:
    if getattr(args, "log_json", None) is not None:
        from pmgui.service.systemd import add_json_log

        add_json_log(args.log_json)


# -- the headless engine with its service ----------------------------------------------------

class HeadlessService:
    """What a headless engine runs besides the engine: listener, alerts, watchdog."""

    def __init__(self, engine: Any, config: Any, db: Path, listen: str | None) -> None:
        from pmgui.service.notify import Notifier
        from pmgui.service.systemd import Watchdog

        self.engine, self.config, self.db = engine, config, db
        self.listen = listen
        self.server = None
        self.notifier = Notifier(config.notify) if config.notify.urls else None
        self.watchdog = Watchdog(self._engine_answers)

    def _engine_answers(self) -> bool:
        if not self.engine.running:
            return False
        query = getattr(self.engine, "query", None)
        if query is None:
            return True
        try:
            return bool(query(lambda core: True).result(timeout=5.0))
        except Exception:
            return False

    def attach(self) -> None:
        """Before the engine starts: see every event from the first one."""
        if self.listen is not None:
            from pmgui.service.server import EngineService
            from pmgui.service.tokens import Authenticator, TokenStore, tokens_path

            auth = Authenticator(TokenStore(tokens_path(self.config.path)))
            self.server = EngineService(self.engine, auth, self.config.service)
            self.server.attach()
        if self.notifier is not None:
            self.engine.outbox.add_listener(self.notifier.on_event)
            self.notifier.start()

    def start(self) -> None:
        """After the engine is connected and reconciled."""
        from pmgui.service.handoff import write_endpoint
        from pmgui.service.settings import parse_listen
        from pmgui.service.systemd import sd_notify

        if self.server is not None:
            host, port = parse_listen(self.listen or self.config.service.listen)
            self.server.start(host, port)
            token = self.server.auth.add_session_token("trade")
            from pmgui.redact import protect_logs

            protect_logs(token)  # it is in the endpoint file, never in a log
            path = write_endpoint(self.db, self.server.url, token)
            log.info("engine service at %s (endpoint file %s)", self.server.url, path)
        sd_notify("READY=1")

    def tick(self) -> None:
        self.watchdog.tick()

    def stop(self) -> None:
        from pmgui.service.handoff import remove_endpoint
        from pmgui.service.systemd import sd_notify

        sd_notify("STOPPING=1")
        if self.server is not None:
            remove_endpoint(self.db)
            self.server.stop()
        if self.notifier is not None:
            self.notifier.stop()


def check_listen(config: Any, listen: str | None, *, bind: bool = True) -> None:
    """PmguiError when `--listen` cannot be served as configured (another address than
    loopback without TLS or a token, a bad certificate): said before the database is opened
    and the engine connects, adopts positions and places stops, not after. `bind`: also
    check that the port can be bound now (not for `service install`, whose own service may
    be holding it)."""
    if listen is None:
        return
    from pmgui.service.server import EngineService
    from pmgui.service.settings import parse_listen
    from pmgui.service.tokens import Authenticator, TokenStore, tokens_path

    host, port = parse_listen(listen or config.service.listen)
    auth = Authenticator(TokenStore(tokens_path(config.path)))
    EngineService(None, auth, config.service).check(host)
    if bind and port:
        _probe_bind(host, port)


def _probe_bind(host: str, port: int) -> None:
    """PmguiError when `host:port` cannot be bound now (in use, not an address of this
    machine): before, that was found only after the engine had started and placed stops.
    Bound the way the server binds (SO_REUSEADDR on POSIX, as asyncio does), so a port left
    in TIME_WAIT is not refused here while the server could take it. Another program can
    still take the port in between; the server's own bind reports that."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as e:
        raise PmguiError(f"cannot listen on {host}:{port}: {e}") from None
    family, kind, proto, _, addr = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError as e:
        raise PmguiError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def attach_notifier(engine: Any, config: Any) -> Any:
    """Alerts for an engine embedded in the window (the headless one uses HeadlessService)."""
    if not config.notify.urls:
        return None
    from pmgui.service.notify import Notifier

    notifier = Notifier(config.notify)
    engine.outbox.add_listener(notifier.on_event)
    notifier.start()
    return notifier


def wait_for_db(args: argparse.Namespace, db: Path) -> None:
    if args.wait_for_db:
        from pmgui.service.handoff import wait_for_db as wait

        if not wait(db, args.wait_for_db):
            raise PmguiError(f"the database {db} stayed open in another pmgui for "
                             f"{args.wait_for_db:g} s")


# -- the window attached to a remote engine --------------------------------------------------

def resolve_token(url: str, token_file: Path | None) -> str:
    """--token-file, else $PMGUI_TOKEN, else the OS keyring entry for `url`."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise PmguiError(f"cannot read the token file {token_file}: "
                             f"{e.strerror or e}") from None
        if not token:
            raise PmguiError(f"the token file {token_file} is empty")
        return token
    if os.environ.get("PMGUI_TOKEN"):
        return os.environ["PMGUI_TOKEN"].strip()
    token = keyring_token(url)
    if token:
        return token
    raise PmguiError(f"no token for {url}: pass --token-file, set PMGUI_TOKEN, or save it in "
                     "the Connect to engine dialog (OS keyring)")


def keyring_token(url: str) -> str | None:
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, url)
    except Exception as e:  # no keyring backend on this machine
        log.debug("keyring unavailable: %s", e)
        return None


def connect_engine(url: str, token: str, cafile: Path | None = None) -> Any:
    from pmgui.engine.build import protect_logs
    from pmgui.service.client import RemoteEngine

    protect_logs(token)
    remote = RemoteEngine(url, token, cafile=cafile)
    remote.start()
    log.info("attached to the engine at %s (%s, %s scope)", url, remote.exchange_id,
             remote.scope)
    return remote


def choose_remote(args: argparse.Namespace, db: Path) -> Any | None:
    """The remote engine the window should attach to (None: embed the engine as usual)."""
    if args.connect is None:
        from pmgui.service.handoff import find_running

        ep = find_running(db)
        if ep is None:
            return None
        log.info("an engine already serves %s (process %d): attaching to it", db, ep.pid)
        return connect_engine(ep.url, ep.token)
    if args.connect:
        return connect_engine(args.connect, resolve_token(args.connect, args.token_file),
                              args.cafile)
    from pmgui.ui.remote_dialog import ask_endpoint

    chosen = ask_endpoint()
    if chosen is None:
        raise PmguiError("no engine chosen")
    url, token = chosen
    return connect_engine(url, token, args.cafile)


def window_hook(remote: Any | None) -> Any:
    """Called with the main window once built: the link indicator for a remote engine; for
    the embedded one, the quit question's "keep protecting in the background"."""

    def hook(window: Any) -> None:
        if remote is not None:
            from pmgui.ui.remote import attach_remote

            attach_remote(window, remote)
        else:
            from pmgui.service.handoff import request_background_engine
            from pmgui.ui.remote import offer_background_engine

            offer_background_engine(window, request_background_engine)

    return hook


def after_window(args: argparse.Namespace, db: Path) -> None:
    """After the window and its engine stopped: hand over to a background engine if the
    quit dialog asked for it (pmgui.service.handoff.request_background_engine)."""
    from pmgui.service.handoff import start_background_engine, take_request

    if take_request():
        proc = start_background_engine(db, args.config)
        log.info("positions handed to a background engine (process %d) on %s", proc.pid, db)
