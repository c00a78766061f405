"""Recorded price files (DESIGN §8): ticks `timestamp,price` or candles
`timestamp,open,high,low,close[,volume]`.

A row whose price (or open/high/low/close) is empty, not a number, not finite, zero or
negative is skipped, as the live engine skips such ticks; `PriceData.skipped` lists the line
numbers so replay can say how many and where. `strict=True` makes such a row an error instead.
Everything else wrong with a file (header, columns, timestamps, order, a high below the low)
is always an error.

The same loader serves `pmgui replay`, the paper exchange's replay feed and the bundled data,
so a file that replays in one place replays identically in the others. Every problem is a
`ValidationError` naming the file and its line, because a trader fixing a CSV needs to find
the offending row, and nothing half-loaded is ever returned.
"""

from __future__ import annotations

import csv
import gc
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, repeat
from operator import lt, truediv
from pathlib import Path
from typing import Literal

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle, Tick
from pmgui.domain.slots import slot_constructor
from pmgui.resources import resource_path

PriceKind = Literal["ticks", "candles"]
TickColumns = tuple[list[float], list[float], list[float] | None]

_TS_NAMES = ("timestamp", "time", "ts", "date", "datetime")
_CANDLE_COLS = ("open", "high", "low", "close")
# Epoch values at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973;
# and from 1e14 on microseconds (1e14 ms would be the year 5138 again).
_MS_THRESHOLD = 1e11
_US_THRESHOLD = 1e14
_QUOTES = ("USDT", "USDC", "BUSD", "USD")
_MAX_EPOCH = 253_402_300_799_999_999  # past 9999-12-31 even read as microseconds
_INF = math.inf
# `Tick(...)` / `Candle(...)` with every field given, without the frozen dataclass's
# per-field `object.__setattr__` (a file of a million ticks makes a million of them)
_new_tick = slot_constructor(Tick)
_new_candle = slot_constructor(Candle)


@dataclass(frozen=True, slots=True)
class PriceData:
    """A validated price file: either ticks or candles (the other tuple is empty)."""

    kind: PriceKind
    symbol: str
    ticks: tuple[Tick, ...] = ()
    candles: tuple[Candle, ...] = ()
    source: str = ""
    skipped: tuple[int, ...] = ()  # line numbers of rows skipped for an invalid price
    skipped_reasons: tuple[str, ...] = ()  # what was wrong, per skipped line (same order)
    # A tick file read a column at a time: the columns its ticks were made of, in order —
    # times (seconds, strictly increasing), prices, volumes (None: every volume 0.0) — for
    # `ReplayFeed`, which cuts its candles from them instead of from the tick objects.
    columns: TickColumns | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.ticks) if self.kind == "ticks" else len(self.candles)

    @property
    def first_price(self) -> float:
        return self.ticks[0].price if self.kind == "ticks" else self.candles[0].open

    @property
    def interval(self) -> float:
        """Candle interval in seconds: the smallest gap between consecutive candles (gaps in
        the data do not widen it); 60 for a single candle or for tick data."""
        if self.kind != "candles" or len(self.candles) < 2:
            return 60.0
        return min(b.ts - a.ts for a, b in zip(self.candles, self.candles[1:], strict=False))


def resources_dir() -> Path:
    """The bundled resources folder (kept for callers; new code uses `pmgui.resources`)."""
    return resource_path()


def symbol_from_filename(path: str | Path) -> str:
    """Guess the market a file stands for from its name's first token.

    `BTCUSD-1h-coinbase.csv` → `BTC/USDT:USDT`, `eth_usdt.csv` → `ETH/USDT:USDT`. USD spot
    data stand in for the USDT perpetual. A name without a recognisable quote is used as is
    (upper-cased), so the caller can always pass an explicit symbol instead.
    """
    stem = Path(path).name.split(".")[0]
    parts = [t for t in re.split(r"[-_ ]", stem.upper()) if t]
    if not parts:
        return stem
    first = parts[0]
    for quote in _QUOTES:
        if first.endswith(quote) and len(first) > len(quote):
            return f"{first[: -len(quote)]}/USDT:USDT"
    if len(parts) > 1 and parts[1] in _QUOTES:
        return f"{first}/USDT:USDT"
    return first


def parse_timestamp(text: str) -> float:
    """Epoch seconds, milliseconds or microseconds (told apart by magnitude) or ISO-8601
    → seconds (UTC).

    Raises ValueError with a short reason; the caller adds the file and line.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    try:
        v = float(s)
    except ValueError:
        v = None
    if v is not None:
        if not math.isfinite(v):
            raise ValueError(f"timestamp {s!r} is not finite")
        if v < 0:
            raise ValueError(f"timestamp {s!r} is negative")
        if v > _MAX_EPOCH:
            raise ValueError(f"timestamp {s!r} is beyond the year 9999")
        if v >= _US_THRESHOLD:
            return v / 1_000_000.0
        return v / 1000.0 if v >= _MS_THRESHOLD else v
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        d = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"timestamp {s!r} is neither epoch seconds/milliseconds nor ISO-8601") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


class InvalidPrice(ValueError):
    """A price field that the live engine would skip (not a finite positive number)."""


def _is_row(line: str) -> bool:
    """Neither blank nor a `#` comment."""
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _number(text: str, col: str, *, positive: bool = True) -> float:
    bad = InvalidPrice if positive else ValueError
    s = text.strip()
    if not s:
        raise bad(f"{col} is empty")
    try:
        v = float(s)
    except ValueError:
        raise bad(f"{col} {s!r} is not a number") from None
    if not math.isfinite(v):
        raise bad(f"{col} {s!r} is not a finite number")
    if positive and v <= 0:
        raise bad(f"{col} must be positive (got {s})")
    if not positive and v < 0:
        raise ValueError(f"{col} cannot be negative (got {s})")
    return v


def load_price_csv(path: str | Path, symbol: str | None = None, *,
                   strict: bool = False) -> PriceData:
    """Load and validate a tick or candle CSV (rows with invalid prices skipped unless
    `strict`, see the module docstring).

    The first non-blank line that is not a `#` comment is the header (case and surrounding
    spaces ignored; extra columns ignored). With open/high/low/close present the file is
    candles, else with `price` it is ticks. Rows must be strictly increasing in time.
    `symbol` defaults to `symbol_from_filename(path)`.
    """
    enabled = gc.isenabled()
    gc.disable()  # see `_load`
    try:
        return _load(Path(path), symbol, strict)
    finally:
        if enabled:
            gc.enable()


def _load(p: Path, symbol: str | None, strict: bool) -> PriceData:
    """`load_price_csv` with the cyclic collector paused: the rows make no reference cycles
    and every tick (or candle) read lives to the end of the load, so each pass of the
    collector — one per 700 ticks made, a full one as they pile up — would walk the ticks
    read so far: a fifth of the instructions of loading a 200k-tick file."""
    name = p.name
    try:
        raw = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationError(f"{p}: file not found", field="path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError(f"{p}: cannot be read ({e})", field="path") from None
    usual = _usual_ticks(raw, p, symbol)
    if usual is not None:
        return usual

    lines = raw.splitlines()
    first = next((i for i, line in enumerate(lines) if _is_row(line)), None)
    if first is None:
        raise ValidationError(f"{name}: the file is empty (expected a header line)", field="path")
    header_line, header_text = first + 1, lines[first]
    header = [h.strip().lower() for h in next(csv.reader([header_text]))]
    ts_col = next((header.index(n) for n in _TS_NAMES if n in header), None)
    if ts_col is None:
        raise ValidationError(
            f"{name} line {header_line}: missing column 'timestamp' "
            f"(header is {header_text.strip()!r})", field="path")
    has_candles = all(c in header for c in _CANDLE_COLS)
    if not has_candles and "price" not in header:
        missing = [c for c in _CANDLE_COLS if c not in header]
        raise ValidationError(
            f"{name} line {header_line}: missing column 'price' (tick file) or "
            f"{', '.join(repr(c) for c in missing)} (candle file); header is "
            f"{header_text.strip()!r}", field="path")
    body = lines[first + 1:]
    if not any(_is_row(line) for line in body):
        raise ValidationError(f"{name}: no data rows after the header", field="path")

    sym = symbol or symbol_from_filename(p)
    ticks: list[Tick] = []
    candles: list[Candle] = []
    last_ts: float | None = None
    last_line = 0
    vol_idx = header.index("volume") if "volume" in header else None
    if has_candles:
        o_idx, h_idx, l_idx, c_idx = (header.index(c) for c in _CANDLE_COLS)
    else:
        price_idx = header.index("price")
    width = len(header)
    field_limit = csv.field_size_limit()
    if not has_candles:
        columns = _tick_columns(body, width, ts_col, price_idx, vol_idx, field_limit)
        if columns is not None:
            return _tick_data(sym, p, columns)
    skipped: list[int] = []
    reasons: list[str] = []

    for lineno, text in enumerate(body, first + 2):
        if not "0" <= text[:1] <= "9" and not _is_row(text):  # (a digit first: a row)
            continue  # blank or a comment
        # The usual row — no quote or NUL, no field beyond csv's size limit, enough columns,
        # every number a plain float that passes its check — is read by `str.split` and
        # `float` alone (what `csv.reader`, `parse_timestamp` and `_number` give for it: float
        # ignores the surrounding spaces they strip); any other row, valid or not, takes the
        # general path below, which makes the decision and the message.
        fields = text.split(",") if '"' not in text and "\x00" not in text \
            and len(text) <= field_limit else None
        if fields is not None and len(fields) >= width:
            try:
                ts = float(fields[ts_col])
                volume = float(fields[vol_idx]) if vol_idx is not None else 0.0
                if has_candles:
                    o, h = float(fields[o_idx]), float(fields[h_idx])
                    lo, c = float(fields[l_idx]), float(fields[c_idx])
                    usual = 0.0 < o < _INF and 0.0 < h < _INF and 0.0 < lo < _INF \
                        and 0.0 < c < _INF
                else:
                    price = float(fields[price_idx])
                    usual = 0.0 < price < _INF
            except ValueError:
                usual = False
            if usual and 0.0 <= volume < _INF and 0.0 <= ts < _MS_THRESHOLD:
                pass  # epoch seconds (`parse_timestamp` of larger values divides)
            elif usual and 0.0 <= volume < _INF and 0.0 <= ts <= _MAX_EPOCH:
                ts = ts / 1_000_000.0 if ts >= _US_THRESHOLD else ts / 1000.0
            else:
                fields = None
        else:
            fields = None
        if fields is None:
            fields = next(csv.reader([text]))
            if len(fields) < width:
                raise ValidationError(
                    f"{name} line {lineno}: expected {width} columns, found {len(fields)}",
                    field="path")
            try:
                ts = parse_timestamp(fields[ts_col])
                volume = (_number(fields[vol_idx], "volume", positive=False)
                          if vol_idx is not None and fields[vol_idx].strip() else 0.0)
                if has_candles:
                    o = _number(fields[o_idx], "open")
                    h = _number(fields[h_idx], "high")
                    lo = _number(fields[l_idx], "low")
                    c = _number(fields[c_idx], "close")
                else:
                    price = _number(fields[price_idx], "price")
            except InvalidPrice as e:
                if strict:
                    raise ValidationError(f"{name} line {lineno}: {e}", field="path") from None
                skipped.append(lineno)
                reasons.append(str(e))
                continue
            except ValueError as e:
                raise ValidationError(f"{name} line {lineno}: {e}", field="path") from None
        try:
            if has_candles:
                if h < lo:
                    raise ValueError(f"high {h:g} is below low {lo:g}")
                for col, v in (("open", o), ("close", c)):
                    if not lo <= v <= h:
                        raise ValueError(f"{col} {v:g} is outside the low-high range "
                                         f"{lo:g}-{h:g}")
        except ValueError as e:
            raise ValidationError(f"{name} line {lineno}: {e}", field="path") from None
        if last_ts is not None and ts <= last_ts:
            what = "duplicate" if ts == last_ts else "out-of-order"
            raise ValidationError(
                f"{name} line {lineno}: {what} timestamp {fields[ts_col].strip()} "
                f"(line {last_line} has {_fmt_ts(last_ts)}; rows must be sorted oldest "
                f"first, each time once)", field="path")
        last_ts, last_line = ts, lineno
        if has_candles:
            candles.append(_new_candle(ts, o, h, lo, c, volume))
        else:
            ticks.append(_new_tick(sym, price, ts, volume, False))

    if not ticks and not candles:
        raise ValidationError(
            f"{name}: no valid price rows ({len(skipped)} skipped for an invalid price: "
            f"{describe_lines(skipped)})", field="path")
    extra = {"source": str(p), "skipped": tuple(skipped), "skipped_reasons": tuple(reasons)}
    if has_candles:
        return PriceData(kind="candles", symbol=sym, candles=tuple(candles), **extra)
    return PriceData(kind="ticks", symbol=sym, ticks=tuple(ticks), **extra)


# what `_usual_ticks` deletes from a tick file's body: the characters of a plain number
_NUMBER_CHARS = str.maketrans("", "", "0123456789.eE+-")


def _usual_ticks(raw: str, p: Path, symbol: str | None) -> PriceData | None:
    """The usual tick file — its first line the header, with `price` and without candle
    columns; every other line a row of plain numbers (digits, `.`, `e`, `E`, `+`, `-`)
    with exactly one field per column, ended by `\n` — read without splitting it into
    lines: once the number characters are deleted, what is left of the body must be the
    separators of such rows (`,` column-1 times, then `\n`), row after row. Then the body's
    fields are the body split at `,` and `\n`, as `_tick_columns` makes them of its lines,
    and they are converted and checked the same way (`_tick_values`). None for any other
    file, and `_load` reads it as before (that decides, and words any message).

    Why: `raw.splitlines()` and `_tick_columns`' checks of each line (its length, its
    commas) were ~1,500 of the ~7,200 instructions per row of reading the bench's file;
    deleting characters and comparing strings are C loops over the text."""
    nl = raw.find("\n")
    head = raw[:nl + 1].splitlines()
    if nl < 0 or len(head) != 1 or not _is_row(head[0]):
        return None
    header = [h.strip().lower() for h in next(csv.reader(head))]
    if "price" not in header or all(c in header for c in _CANDLE_COLS):
        return None
    ts_col = next((header.index(n) for n in _TS_NAMES if n in header), None)
    if ts_col is None:
        return None
    body = raw[nl + 1:]
    if body[-1:] != "\n":
        body += "\n"  # the last row without its line end
    width = len(header)
    unit = "," * (width - 1) + "\n"
    seps = body.translate(_NUMBER_CHARS)
    rows = len(seps) // len(unit)
    if rows == 0 or seps != unit * rows:
        return None
    fields = body[:-1].replace("\n", ",").split(",")
    # every line within csv's field size limit, as `_tick_columns` requires (a line is
    # `width` fields and their commas)
    if max(map(len, fields)) * width + width - 1 > csv.field_size_limit():
        return None
    vol_idx = header.index("volume") if "volume" in header else None
    columns = _tick_values(fields, width, ts_col, header.index("price"), vol_idx)
    if columns is None:
        return None
    return _tick_data(symbol or symbol_from_filename(p), p, columns)


def _tick_data(sym: str, p: Path,
               columns: tuple[list[float], list[float], list[float] | repeat[float]]
               ) -> PriceData:
    """The price data of a tick file's converted and checked columns."""
    ts_values, prices, volumes = columns
    return PriceData(kind="ticks", symbol=sym, source=str(p), ticks=tuple(map(
        _new_tick, repeat(sym), prices, ts_values, volumes, repeat(False))),
        columns=(ts_values, prices, volumes if isinstance(volumes, list) else None))


def _tick_columns(body: list[str], width: int, ts_col: int, price_idx: int,
                  vol_idx: int | None, field_limit: int
                  ) -> tuple[list[float], list[float], list[float] | repeat[float]] | None:
    """The timestamps (seconds), prices and volumes of a tick file's body read a column at a
    time, when every line is a usual row (as the row loop of `_load` takes it by `str.split`
    and `float`): exactly `width` fields, no quote or NUL, no line beyond csv's field size
    limit, every price finite and positive, every volume finite and not negative, every
    timestamp of one epoch unit, strictly increasing. None otherwise — a blank or comment
    line, a row to skip or to refuse, anything unusual — and the row loop reads the file,
    decides and words the message.

    Why: a recorded tick file is read by `pmgui replay` before its first tick; a column is
    split, converted and checked by C loops (`map`, `min`, `sum`), not by a Python loop
    per row — the per-row loop was a quarter of the command's instructions per tick."""
    n = len(body)
    if max(map(len, body)) > field_limit:
        return None
    text = ",".join(body)
    if '"' in text or "\x00" in text \
            or list(map(str.count, body, repeat(","))).count(width - 1) != n:
        return None
    return _tick_values(text.split(","), width, ts_col, price_idx, vol_idx)


def _tick_values(fields: list[str], width: int, ts_col: int, price_idx: int,
                 vol_idx: int | None
                 ) -> tuple[list[float], list[float], list[float] | repeat[float]] | None:
    """`_tick_columns` of the body's fields (its lines joined by commas, split at them):
    the columns converted and checked, None when a value is not usual."""
    try:
        ts = list(map(float, islice(fields, ts_col, None, width)))
        prices = list(map(float, islice(fields, price_idx, None, width)))
        volumes = list(map(float, islice(fields, vol_idx, None, width))) \
            if vol_idx is not None else None
    except ValueError:
        return None
    # a sum is finite only when every term is (no NaN, no infinity): then min/max are exact
    total = sum(prices)
    if not (total - total == 0.0 and min(prices) > 0.0):
        return None
    if volumes is not None:
        total = sum(volumes)
        if not (total - total == 0.0 and min(volumes) >= 0.0):
            return None
    total = sum(ts)
    if not total - total == 0.0:
        return None
    lo, hi = min(ts), max(ts)
    if not 0.0 <= lo:
        return None
    if hi < _MS_THRESHOLD:
        pass  # epoch seconds
    elif _MS_THRESHOLD <= lo and hi < _US_THRESHOLD:
        ts = list(map(truediv, ts, repeat(1000.0)))
    elif _US_THRESHOLD <= lo and hi <= _MAX_EPOCH:
        ts = list(map(truediv, ts, repeat(1_000_000.0)))
    else:
        return None  # units mixed: the rows are read one by one
    if not all(map(lt, ts, islice(ts, 1, None))):
        return None  # a duplicate or out-of-order row: the row loop names it
    return ts, prices, (volumes if volumes is not None else repeat(0.0))


def describe_lines(lines: tuple[int, ...] | list[int], first: int = 10) -> str:
    """`lines 3, 7, 9` or `lines 3, 7, … (12 in all)` for messages."""
    shown = ", ".join(str(n) for n in lines[:first])
    if len(lines) > first:
        shown += f", … ({len(lines)} in all)"
    return ("line " if len(lines) == 1 else "lines ") + shown


def _fmt_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def candle_path_ticks(candle: Candle) -> list[float]:
    """The intra-candle price path (DESIGN §8): open→low→high→close for a rising candle
    (close ≥ open), open→high→low→close for a falling one.

    Visiting the adverse extreme first for a rising candle is the conservative guess: a stop
    inside the candle's range is hit before the target.
    """
    if candle.close >= candle.open:
        return [candle.open, candle.low, candle.high, candle.close]
    return [candle.open, candle.high, candle.low, candle.close]
