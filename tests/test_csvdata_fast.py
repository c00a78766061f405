"""`load_price_csv` reads the usual row by `str.split` and `float` and every other row through
`csv.reader`, `parse_timestamp` and `_number`: both ways must give the same file — the same
ticks or candles, the same skipped rows and reasons, the same error naming the same line.

Quoting every field of a data row sends that row down the csv path (a quote is never taken
by the split), so a file and its quoted twin compare the two readings of the same rows."""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmgui.domain.errors import ValidationError
from pmgui.exchange.csvdata import load_price_csv

NAME = "BTCUSDT-fast.csv"

# plain numbers (most rows) and everything a row may get wrong or write unusually
_ODD = ["", " ", "0", "-1", "-0.0", "nan", "inf", "-inf", "1e400", "abc", " 12.5 ", "\t7",
        "1_0", "+3", "1e3", "0x10"]
_ODD_TS = ["", "-5", "nan", "inf", "x", "1e18", "253402300799999999", "253402300800000000",
           "0", "-0.0", "99999999999", "100000000000", "100000000000000",
           "2024-01-01T00:00:00Z", "2024-01-01 00:00:30", " 1700000000 "]


def _number() -> st.SearchStrategy[str]:
    plain = st.floats(0.01, 1000.0).map(lambda v: f"{v:.4f}")
    return st.one_of(plain, plain, plain, st.sampled_from(_ODD))


def _timestamp(i: int) -> st.SearchStrategy[str]:
    base = 1_700_000_000 + 10 * i
    return st.one_of(st.just(str(base)), st.just(str(base)), st.just(str(base * 1000)),
                     st.just(str(base * 1_000_000)), st.just(f"{base}.5"),
                     st.sampled_from(_ODD_TS))


@st.composite
def _files(draw) -> tuple[list[str], list[list[str] | str]]:
    """A header and rows: each row its fields, or a raw line (blank, comment)."""
    cols = (["timestamp", "open", "high", "low", "close"] if draw(st.booleans())
            else ["timestamp", "price"])
    if draw(st.booleans()):
        cols.append("volume")
    cols = draw(st.permutations(cols))
    rows: list[list[str] | str] = []
    for i in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 15)) == 0:
            rows.append(draw(st.sampled_from(["", "   ", "# note", "  # note"])))
            continue
        fields = [draw(_timestamp(i)) if c == "timestamp" else draw(_number()) for c in cols]
        extra = draw(st.integers(0, 12))
        if extra == 0:
            fields = fields[:-1]  # a column short
        elif extra == 1:
            fields.append("x")  # extra columns are ignored
        rows.append(fields)
    return cols, rows


def _load(text: str, strict: bool) -> tuple:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / NAME
        p.write_text(text)
        try:
            data = load_price_csv(p, strict=strict)
        except ValidationError as e:
            return ("error", str(e), e.field)
    return (data.kind, data.symbol, data.ticks, data.candles, data.skipped,
            data.skipped_reasons)


@settings(max_examples=150, deadline=None)
@given(_files(), st.booleans())
def test_the_split_reading_and_the_csv_reading_give_the_same_file(file, strict):
    cols, rows = file

    def text(quoted: bool) -> str:
        lines = [",".join(cols)]
        for r in rows:
            line = r if isinstance(r, str) else ",".join(r)
            if quoted and not isinstance(r, str) and line.strip() \
                    and not line.lstrip().startswith("#"):
                # a data row (quoting a blank or comment line would make it one)
                line = ",".join(f'"{f}"' for f in r)
            lines.append(line)
        return "\n".join(lines) + "\n"

    assert _load(text(False), strict) == _load(text(True), strict)


def test_the_usual_rows_read_as_the_csv_path_reads_them(tmp_path):
    """The three epoch units, surrounding spaces and a volume column, side by side."""
    plain = tmp_path / "a" / NAME
    quoted = tmp_path / "b" / NAME
    rows = [("1700000000", " 100.5", "2"), ("1700000001000", "101 ", "0"),
            ("1700000002000000", "99.25", "1.5"), ("1700000003.5", "1e2", "-0.0")]
    for p, q in ((plain, ""), (quoted, '"')):
        p.parent.mkdir()
        p.write_text("timestamp,price,volume\n"
                     + "".join(",".join(f"{q}{f}{q}" for f in r) + "\n" for r in rows))
    a, b = load_price_csv(plain), load_price_csv(quoted)
    assert a.ticks == b.ticks
    assert [(t.ts, t.price, t.volume) for t in a.ticks] == [
        (1_700_000_000.0, 100.5, 2.0), (1_700_000_001.0, 101.0, 0.0),
        (1_700_000_002.0, 99.25, 1.5), (1_700_000_003.5, 100.0, -0.0)]


def _both(tmp_path, header: str, rows: list[list[str]], strict: bool) -> tuple[tuple, tuple]:
    out = []
    for sub, q in (("plain", ""), ("quoted", '"')):
        p = tmp_path / sub / NAME
        p.parent.mkdir()
        p.write_text(header + "\n" + "".join(",".join(f"{q}{f}{q}" for f in r) + "\n"
                                             for r in rows))
        try:
            d = load_price_csv(p, strict=strict)
            out.append((d.kind, d.ticks, d.candles, d.skipped, d.skipped_reasons))
        except ValidationError as e:
            out.append(("error", str(e)))
    return out[0], out[1]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("column,value", [("timestamp", v) for v in _ODD_TS]
                         + [(c, v) for c in ("price", "volume", "open", "high", "low", "close")
                            for v in _ODD])
def test_each_odd_value_in_an_otherwise_usual_file_reads_as_the_csv_path_reads_it(
        tmp_path, column, value, strict):
    """Every odd value alone in its column of the middle row: the same skip, error or
    value either way (the random files above mix them; here each one is certain to run)."""
    candles = column in ("open", "high", "low", "close")
    cols = ["timestamp", "open", "high", "low", "close", "volume"] if candles \
        else ["timestamp", "price", "volume"]
    rows = []
    for i in range(3):
        usual = {"timestamp": str(1_700_000_000 + 10 * i), "price": "100.5", "open": "10",
                 "high": "12", "low": "9", "close": "11", "volume": "3"}
        if i == 1:
            usual[column] = value
        rows.append([usual[c] for c in cols])
    plain, quoted = _both(tmp_path, ",".join(cols), rows, strict)
    assert plain == quoted


@pytest.mark.parametrize("text", ["timestamp,price\n1700000000,100\n", "timestamp,price\nx,1\n"])
@pytest.mark.parametrize("was_enabled", [True, False])
def test_the_collector_is_as_it_was_after_a_load(tmp_path, text, was_enabled):
    """The load pauses the cyclic collector (`_load`) and gives it back as it found it,
    after a file read and after an error."""
    p = tmp_path / NAME
    p.write_text(text)
    before = gc.isenabled()
    (gc.enable if was_enabled else gc.disable)()
    try:
        try:
            load_price_csv(p)
        except ValidationError:
            pass
        assert gc.isenabled() is was_enabled
    finally:
        (gc.enable if before else gc.disable)()


def _usual_rows(n: int, unit: float, volume: bool, start: int = 1_700_000_000) -> list[list[str]]:
    return [[f"{(start + 7 * i) * unit:.0f}", f"{100 + (i * 37 % 101) / 4:.2f}"]
            + ([f"{(i % 5) * 0.5}"] if volume else []) for i in range(n)]


@pytest.mark.parametrize("unit", [1, 1000, 1_000_000])
@pytest.mark.parametrize("volume", [False, True])
@pytest.mark.parametrize("order", [("timestamp", "price"), ("price", "timestamp")])
def test_a_usual_tick_file_reads_as_the_row_by_row_and_the_csv_paths_read_it(
        tmp_path, unit, volume, order):
    """A file of usual rows only is read a column at a time (`_tick_columns`); a comment
    line (the row loop) or quotes (the csv path) around the same rows read the same ticks."""
    cols = [*order] + (["volume"] if volume else [])
    rows = [[r[0] if c == "timestamp" else r[1] if c == "price" else r[2] for c in cols]
            for r in _usual_rows(40, unit, volume)]
    header = ",".join(cols)
    body = "".join(",".join(r) + "\n" for r in rows)
    loaded = []
    for sub, text in (("columns", header + "\n" + body),
                      ("rows", header + "\n" + body + "# the end\n"),
                      ("csv", header + "\n" + "".join(",".join(f'"{f}"' for f in r) + "\n"
                                                     for r in rows))):
        p = tmp_path / sub / NAME
        p.parent.mkdir()
        p.write_text(text)
        d = load_price_csv(p)
        loaded.append((d.kind, d.symbol, d.ticks, [type(t) for t in d.ticks], d.skipped))
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][2][1].ts == 1_700_000_007.0


@pytest.mark.parametrize("line", ["", "  ", "# note", "1700000300,-1", "1700000300,nan",
                                  "1700000300,inf", "1700000300,x", "1700000300,1e400",
                                  "1700000200,5", "1700000300", "1700000300,5,6",
                                  "1700000300000,5", "2024-01-01T00:00:00Z,5", '"1700000300",5',
                                  "1700000300,5\x00"])
def test_a_tick_file_with_one_unusual_line_reads_as_the_csv_path_reads_it(tmp_path, line):
    """One line the columns cannot take (blank, comment, a row to skip or to refuse, another
    epoch unit, out of order, a short or long row, quotes, NUL), among usual rows: the row
    loop reads the file, as the csv path does (the same ticks, skips and errors)."""
    rows = [r for r in _usual_rows(30, 1, False)]
    lines = [",".join(r) for r in rows[:20]] + [line] + [",".join(r) for r in rows[20:]]
    quoted = [",".join(f'"{f}"' for f in r) for r in rows[:20]] + [line] \
        + [",".join(f'"{f}"' for f in r) for r in rows[20:]]
    for strict in (False, True):
        plain = _load("timestamp,price\n" + "\n".join(lines) + "\n", strict)
        assert plain == _load("timestamp,price\n" + "\n".join(quoted) + "\n", strict)


def test_a_usual_tick_file_is_read_without_a_python_loop_over_its_rows(tmp_path):
    """The loader's own bytecode (csvdata's functions) does not grow with the rows of a
    usual tick file: they are split, converted and checked by C loops (`_tick_columns`).
    What remains per row is building its tick (`slot_constructor`'s generated code)."""
    import sys

    import pmgui.exchange.csvdata as csvdata

    def ops(n: int) -> int:
        p = tmp_path / f"{n}" / NAME
        p.parent.mkdir(exist_ok=True)
        p.write_text("timestamp,price,volume\n"
                     + "".join(",".join(r) + "\n" for r in _usual_rows(n, 1000, True)))
        count = 0

        def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
            nonlocal count
            if frame.f_code.co_filename != csvdata.__file__:
                return None
            frame.f_trace_opcodes = True
            if event == "opcode":
                count += 1
            return tracer

        sys.settrace(tracer)
        try:
            data = csvdata.load_price_csv(p)
        finally:
            sys.settrace(None)
        assert len(data.ticks) == n
        return count

    ops(50)  # Python 3.12.1 reports no opcode event in the first traced load, 0 == 0
    small, large = ops(50), ops(500)
    assert small > 0 and small == large


# the characters `_usual_ticks` takes in a row besides its commas, and some of each kind
_NUMBER_TEXT = st.text("0123456789.eE+-", max_size=6)


@st.composite
def _number_char_files(draw) -> str:
    """Tick files whose rows hold only number characters, commas and line ends — what the
    separator test of `_usual_ticks` reads — mostly usual, some rows with a comma too many
    or too few (or a line break a field early), empty or odd numbers (`1e`, `+-`, `.`), out
    of order, or no last line end."""
    cols = draw(st.permutations(["timestamp", "price"]
                                + (["volume"] if draw(st.booleans()) else [])))
    lines = []
    for i in range(draw(st.integers(1, 12))):
        values = {"timestamp": str(1_700_000_000 + 10 * i),
                  "price": f"{draw(st.floats(0.01, 1000.0)):.4f}",
                  "volume": str(draw(st.integers(0, 9)))}
        fields = [values[c] if draw(st.integers(0, 9)) else draw(_NUMBER_TEXT) for c in cols]
        change = draw(st.integers(0, 15))
        if change == 0:
            fields = fields[:-1]
        elif change == 1:
            fields.append(draw(_NUMBER_TEXT))
        elif change == 2 and len(fields) > 1:
            fields[0:2] = [fields[0] + fields[1]]  # two fields run together: a comma short
        elif change == 3 and lines and len(lines[-1]) > 1:
            fields.insert(0, lines[-1].pop())  # the line break a field early: every field
            # in its column, one row short and the next long
        lines.append(fields)
    end = "\n" if draw(st.integers(0, 4)) else ""
    return ",".join(cols) + "\n" + "\n".join(map(",".join, lines)) + end


@settings(max_examples=200, deadline=None)
@given(_number_char_files(), st.booleans())
def test_a_file_of_number_rows_reads_as_it_does_without_the_usual_file_reader(text, strict):
    """`_usual_ticks` reads a file of number rows without splitting its lines: whatever it
    takes, it takes as the line reading does (`_tick_columns`, the row loop, the csv path:
    the same ticks, skips and errors); a row with a comma too many or too few among usual
    ones must not shift the columns of the rows after it."""
    from unittest import mock

    import pmgui.exchange.csvdata as csvdata

    fast = _load(text, strict)
    with mock.patch.object(csvdata, "_usual_ticks", lambda *a: None):
        assert fast == _load(text, strict)


@pytest.mark.parametrize("volume", [False, True])
def test_a_usual_tick_file_is_read_by_the_usual_file_reader(tmp_path, volume):
    """A file of usual rows is read by `_usual_ticks` (its columns kept for the feed); the
    same rows with a space after each comma (split into lines: `_tick_columns`) and quoted
    (the csv path) read the same ticks."""
    import pmgui.exchange.csvdata as csvdata

    rows = _usual_rows(40, 1000, volume)
    header = "timestamp,price" + (",volume" if volume else "")
    texts = {"lf": header + "\n" + "".join(",".join(r) + "\n" for r in rows),
             "spaced": header + "\n" + "".join(", ".join(r) + "\n" for r in rows),
             "quoted": header + "\n" + "".join(",".join(f'"{f}"' for f in r) + "\n"
                                               for r in rows)}
    loaded = {}
    for name, text in texts.items():
        p = tmp_path / name / NAME
        p.parent.mkdir()
        p.write_text(text)
        usual = csvdata._usual_ticks(text, p, None)
        assert (usual is not None) == (name == "lf")
        loaded[name] = load_price_csv(p)
    assert loaded["lf"].ticks == loaded["spaced"].ticks == loaded["quoted"].ticks
    assert loaded["lf"].columns == (
        [t.ts for t in loaded["lf"].ticks], [t.price for t in loaded["lf"].ticks],
        [t.volume for t in loaded["lf"].ticks] if volume else None)
