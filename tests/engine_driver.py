"""A scripted trader around the real headless engine, run as its own process by crash tests.

`python -m tests.engine_driver --config C --db D` builds the engine exactly as
`pmgui --headless` does (config file, credentials from the environment, store, ccxt
adapter, manager thread), prints `READY` once it is connected, reconciled and protecting,
then reads commands from stdin, one per line, and answers `OK …` or `ERR …`:

    open SYMBOL long|short QTY LEVERAGE

End of input stops the engine cleanly. A test SIGKILLs it whenever it likes: that is the
point — the kill can land in the middle of an open, a stop move or a fill.

Crash loops start this process dozens of times; `python -m` would spend most of each start
importing ccxt and pmgui (~3 s of CPU). `forked` is the same program as a child of a fork
server that imported `PRELOAD` once: a real process with its own pid, stdin, stdout and
stderr, SIGKILLed the same way, that builds its engine from nothing after the fork — only the
import is shared.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path

from pmgui.config import load_config
from pmgui.domain.enums import Side
from pmgui.domain.errors import PmguiError
from pmgui.engine import commands as cmd
from pmgui.engine.build import build_engine
from pmgui.engine.events import ActionTaken, ErrorEvent

#: What every engine process imports anyway (the venue factory pulls in ccxt and ccxt.pro;
#: pmgui.cli's headless path the engine builder and the service): a fork server loads it
#: once, its children start with it imported.
PRELOAD = ("tests.engine_driver", "pmgui.exchange.venues.factory", "pmgui.exchange.credentials",
           "pmgui.cli", "pmgui.engine.build", "pmgui.service.cli")
#: The fork server's context (one server per test process, started on first use).
FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(list(PRELOAD))


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="engine_driver")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--db", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("driver")
    engine = build_engine(load_config(args.config), args.db)

    def on_event(ev: object) -> None:
        if isinstance(ev, ActionTaken):
            a = ev.action
            log.info("%s %s %s qty=%s sl=%s %s", ev.symbol, a.type.value, a.reason.value,
                     a.qty, a.sl, ev.detail)
        elif isinstance(ev, ErrorEvent):
            log.warning("%s", ev.message)

    engine.outbox.add_listener(on_event)
    engine.start()
    _say("READY")
    try:
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] != "open" or len(parts) != 5:
                _say(f"ERR unknown command {line.strip()!r}")
                continue
            symbol, side, qty, lev = parts[1], Side(parts[2]), float(parts[3]), float(parts[4])
            try:
                res = engine.submit(cmd.OpenPosition(symbol, side, qty, lev)).result(60)
                _say(f"OK {res.message}")
            except PmguiError as exc:
                _say(f"ERR {exc}")
    finally:
        engine.stop()
    return 0


def forked(argv: list[str], env: Mapping[str, str], cwd: str, stdin: Connection,
           stdout: Connection, log: str) -> None:
    """`main(argv)` in a child of a fork server, wired as `python -m tests.engine_driver`.

    The pipes' descriptors become fds 0 and 1 (the line protocol, unchanged), `log` is
    appended to on fd 2, and the environment and working directory are the test's (the
    server kept the ones it started with). The exit code is main's.
    """
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd, target in ((stdin.fileno(), 0), (stdout.fileno(), 1), (err, 2)):
        os.dup2(fd, target)
    for conn in (stdin, stdout):
        conn.close()
    os.close(err)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)
    sys.exit(main(argv))


def cli_forked(argv: list[str], env: Mapping[str, str], cwd: str, out: str, err: str,
               passes: str) -> None:
    """`python -m pmgui.cli ARGV` in a child of the fork server: stdin is /dev/null, stdout
    and stderr go to the files `out` and `err`, the environment and working directory are
    the test's. The exit code is pmgui's. Only the imports are shared with the server: the
    command runs from `main` as in a fresh interpreter. Each housekeeping pass of its
    engine (EngineCore.periodic, about one a second) that ends adds a byte to `passes`: a
    test waits for one rather than for a number of seconds."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for path, target in ((out, 1), (err, 2)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)
    sys.argv = ["pmgui", *argv]
    from pmgui.cli import main as cli_main
    from pmgui.engine.core import EngineCore

    periodic = EngineCore.periodic

    async def counted(self: EngineCore) -> None:
        await periodic(self)
        with open(passes, "ab") as f:
            f.write(b".")

    EngineCore.periodic = counted  # type: ignore[method-assign]
    sys.exit(cli_main(argv))

if __name__ == "__main__":
    sys.exit(main())
