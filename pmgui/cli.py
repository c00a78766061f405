"""`pmgui` command line (DESIGN §8). Wrong arguments give one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pmgui import identity
from pmgui.domain.errors import PmguiError

log = logging.getLogger("pmgui")


class _Parser(argparse.ArgumentParser):
    """One-line errors; an `epilog` given as a function is only built for --help."""

    def __init__(self, *args, **kwargs) -> None:
        epilog = kwargs.get("epilog")
        self._epilog_fn = epilog if callable(epilog) else None
        if self._epilog_fn is not None:
            kwargs["epilog"] = None
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        if self._epilog_fn is not None:
            self.epilog, self._epilog_fn = self._epilog_fn(), None
        return super().format_help()

    def error(self, message: str) -> None:  # one line, not usage + traceback
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """--version: the versions are read from the installed metadata only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(identity.version_line())  # on stdout, as argparse's own version action
        parser.exit()


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text!r}")
    return v


def _db_path(text: str) -> Path:
    """--db: a file. A path that ends with a separator names a folder (`--db ~/trading/`),
    which `Path` forgets: a missing one became a database file of the folder's name."""
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"{text!r} names a folder; give the database file in it, e.g. {text}pmgui.db")
    return Path(text)


def _rate(text: str) -> float:
    """A fee or slippage rate: a fraction of the price, as the paper venue takes it."""
    v = _non_negative(text)
    if not v < 0.1:
        raise argparse.ArgumentTypeError(
            f"must be a fraction below 0.1 (0.0005 is 0.05 %), got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pmgui", description="Live position monitor and manager for crypto futures.")
    p.add_argument("--version", action=_Version)
    p.add_argument("--headless", action="store_true",
                   help="run the engine without a window, logging to the console")
    p.add_argument("--db", type=_db_path,
                   help="SQLite database (default: user data directory)")
    p.add_argument("--new-db", action="store_true",
                   help="allow --db to create a new database for a live exchange")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--exchange", metavar="ID", help="exchange id (paper or a ccxt id)")
    p.add_argument("--paper", action="store_true", help="use the built-in paper exchange")
    p.add_argument("--exit-after", type=_positive, metavar="SECONDS",
                   help="quit after this many seconds")
    p.add_argument("--screenshot", type=Path, metavar="PNG",
                   help="save the main window to PNG after --exit-after and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    r = sub.add_parser(
        "replay", help="run the rules over a recorded price path",
        description=textwrap.fill(
            "Replay a recorded price path through the live engine and the paper exchange: "
            "one position is opened at --entry and managed by the preset's rules until it "
            "closes or the data ends; every action is printed.", 78),
        epilog=_presets_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("data", type=Path, help="CSV: timestamp,price or timestamp,open,high,low,close")
    r.add_argument("--side", required=True, choices=["long", "short"],
                   help="direction of the replayed position")
    r.add_argument("--entry", required=True, type=_positive,
                   help="entry price of the position (quote currency)")
    r.add_argument("--qty", required=True, type=_positive,
                   help="position size in coins (contracts)")
    r.add_argument("--leverage", type=_positive, default=1.0,
                   help="leverage: sets the margin, ROI and liquidation price (default: 1)")
    r.add_argument("--sl", type=_positive,
                   help="initial stop-loss price; defines 1R (optional)")
    r.add_argument("--tp", type=_positive,
                   help="take-profit price (optional)")
    r.add_argument("--preset", default="manual",
                   help="rule preset managing the position (listed below; default: manual)")
    r.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="RULE.PARAM=VALUE",
                   help="override one rule parameter, e.g. trailing.distance=0.02 "
                        "(repeatable)")
    r.add_argument("--fee", type=_rate, help="fee rate per side (default: paper taker)")
    r.add_argument("--slippage", type=_rate, default=0.0,
                   help="slippage of market fills as a fraction of the price (default: 0)")
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    r.add_argument("--symbol", default=None, help="symbol name to report (default: file name)")
    r.add_argument("--open-at", metavar="TIME", default=None,
                   help="open the position at the first price at or after TIME (epoch seconds "
                        "or ISO-8601); the rows before it are market history that warms the "
                        "indicators (default: the first row)")
    r.add_argument("--strict", action="store_true",
                   help="rows with an invalid price (NaN, zero, negative) are an error; by "
                        "default they are skipped and reported, as the live engine skips them")

    from pmgui.service.cli import add_arguments

    add_arguments(p, sub)

    s = sub.add_parser("positions", help="open positions with their SL/TP and orders")
    s.add_argument("--db", type=_db_path, dest="positions_db")
    s.add_argument("--json", action="store_true")
    return p


def _presets_epilog() -> str:
    """The presets `--preset` accepts, each with what it does."""
    try:
        from pmgui.rules.presets import PRESET_DESCRIPTIONS, PRESETS
    except ImportError:  # pragma: no cover - the rules package is part of pmgui
        return ""
    width = max(len(n) for n in PRESETS)
    lines = ["presets:"]
    for name in PRESETS:
        lines.append(textwrap.fill(PRESET_DESCRIPTIONS.get(name, ""), 78,
                                   initial_indent=f"  {name:<{width}}  ",
                                   subsequent_indent=" " * (width + 4)))
    return "\n".join(lines)


def disable_core_dumps() -> None:
    """The process holds the API secret: a core dump would write it to disk."""
    try:
        import resource
    except ImportError:  # Windows has no core dumps to disable
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: Sequence[str] | None = None) -> int:
    disable_core_dumps()
    parser = build_parser()
    args = parser.parse_args(argv)
    # A replay's output is its actions (stdout) and its summary; the engine's INFO lines (a
    # fee booked at the paper rate before the venue's fill record of it arrives, which then
    # confirms it) were interleaved with them on the terminal. Warnings and errors stay.
    quiet = args.command == "replay" and not args.verbose
    logging.basicConfig(level=logging.DEBUG if args.verbose else
                        logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from pmgui.redact import install_log_redaction

    install_log_redaction()
    from pmgui.service import cli as service_cli

    service_cli.check_arguments(parser, args)
    service_cli.setup_logging(args)
    try:
        if args.command in ("token", "service"):
            return service_cli.run_subcommand(args)
        if args.command == "replay":
            from pmgui.engine.replay import run_replay_cli

            return run_replay_cli(args)
        if args.command == "positions":
            return _positions(args.positions_db or args.db, args.json)
        if args.screenshot and not args.exit_after:
            parser.error("--screenshot needs --exit-after SECONDS")
        if args.screenshot and args.headless:
            parser.error("--screenshot needs the window; drop --headless")
        return _run(args)
    except PmguiError as exc:
        print(f"pmgui: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _reader_gone()
    except (OSError, _sqlite_error()) as exc:  # a full disk, unreadable files: one line
        log.debug("failed", exc_info=True)
        print(f"pmgui: error: {_os_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """The reader of stdout went away (`pmgui replay --json | head -1`): not a failure of
    pmgui's to report; the exit status a process stopped by SIGPIPE has. Stdout is pointed
    at the null device, so the flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + getattr(signal, "SIGPIPE", 13)


def _sqlite_error() -> type[BaseException]:
    """sqlite3.Error where sqlite3 is loaded (nothing raises it before it is imported)."""
    mod = sys.modules.get("sqlite3")
    return mod.Error if mod is not None else OSError


def _os_message(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"database error: {exc}"


def _stopped(engine) -> int:
    """Exit status after the engine stopped: a failure in its last act (the final save on
    a full disk) is one clear line and a non-zero status, never a silent 0."""
    error = getattr(engine, "error", None)
    if error is None:
        return 0
    what = str(error) if isinstance(error, PmguiError) else _os_message(error) \
        if isinstance(error, OSError | _sqlite_error()) else f"{type(error).__name__}: {error}"
    print(f"pmgui: error: the engine stopped with an error; the last state may not be saved: "
          f"{what}", file=sys.stderr)
    return 1


def _load(args: argparse.Namespace):
    from dataclasses import replace

    from pmgui.config import ExchangeConfig, ccxt_exchange_ids, default_db_path, load_config

    if args.exchange is not None and not args.exchange.strip():
        raise PmguiError("--exchange needs an exchange id (paper or a ccxt id such as "
                         "binanceusdm), got an empty one")
    config = load_config(args.config)
    if args.paper and args.exchange and args.exchange != "paper":
        raise PmguiError("--paper and --exchange contradict each other")
    if args.paper:
        config = replace(config, exchange=ExchangeConfig("paper"))
    elif args.exchange:
        if args.exchange != "paper" and args.exchange not in ccxt_exchange_ids():
            raise PmguiError(f"unknown exchange {args.exchange!r}")
        config = replace(config, exchange=replace(config.exchange, id=args.exchange))
    if args.db is None:
        return config, default_db_path()
    return config, _check_db_arg(args.db, live=config.exchange.id != "paper",
                                 new_db=args.new_db)


def _check_db_arg(db: Path, *, live: bool, new_db: bool) -> Path:
    """An explicit --db: a typo must not silently start somewhere else.

    The folder must exist (pmgui creates no folders for --db). For a live exchange the file
    must exist too, unless --new-db says a fresh journal is wanted: starting a live venue on
    an empty journal re-adopts every position as if pmgui had never seen it (its stops,
    history and client ids unknown), so pmgui refuses rather than asks — headless runs and
    services cannot answer a question.
    """
    from pmgui.store.db import check_db_path

    db = check_db_path(db).expanduser()
    parent = db.parent if str(db.parent) else Path(".")
    if not parent.is_dir():
        raise PmguiError(f"--db {db}: the folder {parent} does not exist (pmgui does not "
                         "create folders for --db; create it or fix the path)")
    if live and not db.exists() and not new_db:
        raise PmguiError(f"--db {db}: no database there; for a live exchange pmgui does not "
                         "start on a fresh empty journal by accident. Check the path, or add "
                         "--new-db to create it")
    return db


def _run(args: argparse.Namespace) -> int:
    from pmgui.service import cli as service_cli

    config, db = _load(args)
    if args.headless:
        from pmgui.engine.build import build_engine

        service_cli.check_listen(config, args.listen)
        service_cli.wait_for_db(args, db)
        from pmgui.engine.outbox import Outbox

        # nothing pulls from a headless engine's outbox: its log, notifier and service listen
        engine = build_engine(config, db, Outbox(buffered=False))
        return _headless(engine, args.exit_after, db,
                         service_cli.HeadlessService(engine, config, db, args.listen))
    # before the database exists: a window that cannot open, stops here
    from pmgui.qtcheck import check_qt_libraries

    _check_display(args.screenshot is not None)
    check_qt_libraries()
    from pmgui.ui.app import run_gui

    remote = service_cli.choose_remote(args, db)  # the window attaches to a running engine
    if remote is not None:
        stop_remote = _once(remote.stop)
        try:
            return run_gui(remote, exit_after=args.exit_after, screenshot=args.screenshot,
                           theme=config.ui.theme, confirm_drags=config.ui.confirm_drags,
                           on_window=service_cli.window_hook(remote), on_close=stop_remote)
        finally:
            stop_remote()  # (run_gui did it, unless it failed before its window)
    # the window first: the engine is built and started on a helper thread once the
    # window's first frame is painted (pmgui.launch); a failed start closes the window
    from pmgui.launch import EngineLauncher

    notifiers = []

    def build(outbox):
        from pmgui.engine.build import build_engine

        engine = build_engine(config, db, outbox)
        notifier = service_cli.attach_notifier(engine, config)
        if notifier is not None:
            notifiers.append(notifier)
        return engine

    engine = EngineLauncher(config.exchange.id, db, build, start=lambda e: _start(e, db))

    @_once
    def stop_engine() -> None:  # by run_gui, while the window's collector still runs
        engine.stop()
        for notifier in notifiers:
            notifier.stop()

    try:
        status = run_gui(engine, exit_after=args.exit_after, screenshot=args.screenshot,
                         theme=config.ui.theme, confirm_drags=config.ui.confirm_drags,
                         on_window=service_cli.window_hook(None), on_close=stop_engine)
    finally:
        stop_engine()  # (run_gui did it, unless it failed before its window)
        if engine.startup_error is None:
            service_cli.after_window(args, db)
    if engine.startup_error is not None:
        raise engine.startup_error
    return status or _stopped(engine)


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn`, run by the first call only (a stop both run_gui and the caller's `finally` ask
    for)."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return once


def _check_display(screenshot: bool) -> None:
    """Without a display Qt aborts the process; say what to do instead (or, for a
    screenshot, which needs no screen, render offscreen)."""
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return
    raise PmguiError("no display found: run with --headless, or set QT_QPA_PLATFORM=offscreen")


def _start(engine, db: Path) -> None:
    """Start the engine; a start-up that fails on a database this run created leaves no
    empty database behind (a full disk, a refused key: nothing changed)."""
    from pmgui.store.db import discard_unused

    fresh = not db.exists()
    try:
        engine.start()
    except BaseException:
        if fresh:
            discard_unused(db)
        raise


def console_listener(engine) -> Callable[[object], None]:
    """The headless console's outbox listener: one log line per action, error, close and
    correction of a closed position (numbers to the market's precision).

    A rule's level that follows the price (a trailing stop, a dynamic TP) moves at every new
    best price — in a fast market hundreds of lines a second over a large book, which bury
    the closes and errors a trader watches for, and cost the engine's thread a formatted
    line each (3 % of its CPU in the live storm at 500 positions). Those are logged at DEBUG
    (`--verbose`), as Freqtrade logs its stop adjustments; they stay in the action log
    (History, `pmgui positions`) as every decision does. One-off moves (breakeven, the
    trader's own) and failed moves stay at INFO."""
    from pmgui.domain.enums import ActionType, Reason
    from pmgui.domain.numbers import plain_price, plain_qty
    from pmgui.engine.events import ActionTaken, ErrorEvent, PositionCorrected, PositionRemoved

    level_moves = (ActionType.MOVE_SL, ActionType.MOVE_TP)
    following = (Reason.TRAILING, Reason.DYNAMIC_TP)

    def on_event(ev) -> None:
        if isinstance(ev, ActionTaken):
            a = ev.action
            level = logging.DEBUG if ev.ok and a.type in level_moves \
                and a.reason in following else logging.INFO
            if not log.isEnabledFor(level):
                return  # not even formatted
            m = engine.market(ev.symbol)  # numbers to the market's precision
            log.log(level, "%s %s %s qty=%s price=%s sl=%s tp=%s %s", ev.symbol, a.type.value,
                    a.reason.value, plain_qty(a.qty, m) if a.qty is not None else "-",
                    plain_price(a.price, m), plain_price(a.sl, m), plain_price(a.tp, m),
                    ev.detail)
        elif isinstance(ev, ErrorEvent):
            log.warning("%s", ev.message)
        elif isinstance(ev, PositionRemoved):
            p = ev.position
            log.info("closed %s %s @ %s (%s) P/L %.2f", p.symbol, p.side.value,
                     plain_price(p.exit_price, engine.market(p.symbol)), p.exit_reason,
                     p.realized_pnl)
        elif isinstance(ev, PositionCorrected):
            p = ev.position
            log.info("corrected closed %s %s %s: exit %s, fees %.6g, P/L %.2f (%s)", p.id,
                     p.symbol, p.side.value, plain_price(p.exit_price, engine.market(p.symbol)),
                     p.fees_paid, p.realized_pnl, ev.what)

    return on_event


def _headless(engine, exit_after: float | None, db: Path | None = None, service=None) -> int:
    on_event = console_listener(engine)

    engine.outbox.add_listener(on_event)
    if service is not None:
        service.attach()  # before start: the service sees every event
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if db is not None:
        _start(engine, db)
    else:
        engine.start()
    log.info("engine running on %s; Ctrl+C to stop", engine.exchange_id)
    deadline = time.monotonic() + exit_after if exit_after else None
    try:
        if service is not None:
            service.start()  # listen once the engine is connected and reconciled
        while not stop.is_set() and engine.running:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if service is not None:
                service.tick()
            stop.wait(0.25)
    finally:
        if service is not None:
            service.stop()
        engine.stop()
    status = _stopped(engine)
    if status == 0:
        log.info("stopped cleanly")
    return status


def _positions(db: Path | None, as_json: bool) -> int:
    from pmgui.config import default_db_path
    from pmgui.store.db import Store, check_db_path

    path = check_db_path(db) if db is not None else default_db_path()
    if not path.exists():
        raise PmguiError(f"no database at {path}")
    store = Store.open(path, readonly=True)
    try:
        report = store.positions_report()
    finally:
        store.close()
    if as_json:
        import json

        print(json.dumps(report, indent=2, default=str))
        return 0
    if not report:
        print("no open positions")
        return 0
    from pmgui.ui.fmt import plain_price, venue_decimals

    for p in report:
        # to the precision of the venue's own prices (the store keeps no tick sizes)
        d = venue_decimals(p["entry"], [o.get("trigger_price") for o in p.get("orders", [])])
        print(f"{p['symbol']:<18} {p['side']:<5} qty {p['qty']:<10g} "
              f"entry {plain_price(p['entry'], None, d):<12} "
              f"SL {plain_price(p.get('sl'), None, d)}  TP {plain_price(p.get('tp'), None, d)}"
              f"  orders {len(p.get('orders', []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
