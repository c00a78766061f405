"""Recorded price files: formats, timestamps, and errors that name the line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle
from pmgui.exchange.csvdata import (
    candle_path_ticks,
    load_price_csv,
    parse_timestamp,
    resources_dir,
    symbol_from_filename,
)
from pmgui.resources import resource_path


def _write(tmp_path, text: str, name: str = "BTCUSDT-test.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_tick_file(tmp_path):
    d = load_price_csv(_write(tmp_path, "timestamp,price\n1700000000,100.5\n1700000001,101\n"))
    assert d.kind == "ticks" and d.symbol == "BTC/USDT:USDT" and d.candles == ()
    assert [(t.ts, t.price) for t in d.ticks] == [(1_700_000_000.0, 100.5),
                                                 (1_700_000_001.0, 101.0)]
    assert all(t.symbol == "BTC/USDT:USDT" for t in d.ticks)


def test_candle_file_with_and_without_volume(tmp_path):
    d = load_price_csv(_write(tmp_path, "timestamp,open,high,low,close,volume\n"
                                        "0,10,12,9,11,5\n60,11,11.5,10,10.5,7\n"))
    assert d.kind == "candles" and d.ticks == ()
    assert d.candles == (Candle(0, 10, 12, 9, 11, 5), Candle(60, 11, 11.5, 10, 10.5, 7))
    assert d.interval == 60
    d2 = load_price_csv(_write(tmp_path, "timestamp,open,high,low,close\n0,10,12,9,11\n",
                               "x.csv"), symbol="ETH/USDT:USDT")
    assert d2.candles[0].volume == 0.0 and d2.symbol == "ETH/USDT:USDT"


def test_header_is_case_insensitive_and_comments_are_skipped(tmp_path):
    d = load_price_csv(_write(tmp_path, "# recorded 2024\n Timestamp , PRICE \n\n5,1.5\n"))
    assert [t.price for t in d.ticks] == [1.5]


def test_timestamps_in_seconds_milliseconds_and_iso(tmp_path):
    iso = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert parse_timestamp("1704164645") == iso
    assert parse_timestamp("1704164645000") == iso
    assert parse_timestamp("1704164645500") == iso + 0.5
    assert parse_timestamp("1704164645000000") == iso  # microseconds
    assert parse_timestamp("2024-01-02T03:04:05Z") == iso
    assert parse_timestamp("2024-01-02T03:04:05+00:00") == iso
    assert parse_timestamp("2024-01-02 03:04:05") == iso  # naive means UTC
    assert parse_timestamp("2024-01-02T05:04:05+02:00") == iso
    d = load_price_csv(_write(tmp_path, "timestamp,price\n1704164645000,1\n"
                                        "2024-01-02T03:04:06Z,2\n"))
    assert [t.ts for t in d.ticks] == [iso, iso + 1]


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("timestamp,price\n", "no data rows after the header"),
    ("time_of_day,price\n1,2\n", "line 1: missing column 'timestamp'"),
    ("timestamp,open,high,close\n1,2,3,4\n", "line 1: missing column 'price' (tick file) or "
                                             "'low' (candle file)"),
    ("timestamp,price\n1,100\n2,abc\n", "line 3: price 'abc' is not a number"),
    ("timestamp,price\n1,100\n2,0\n", "line 3: price must be positive (got 0)"),
    ("timestamp,price\n1,100\n2,-5\n", "line 3: price must be positive (got -5)"),
    ("timestamp,price\n1,nan\n", "line 2: price 'nan' is not a finite number"),
    ("timestamp,price\n1,inf\n", "line 2: price 'inf' is not a finite number"),
    ("timestamp,price\n1,100\n2\n", "line 3: expected 2 columns, found 1"),
    ("timestamp,price\nyesterday,100\n", "line 2: timestamp 'yesterday' is neither"),
    ("timestamp,price\n2,100\n1,101\n", "line 3: out-of-order timestamp 1"),
    ("timestamp,price\n1,100\n1,101\n", "line 3: duplicate timestamp 1"),
    ("timestamp,open,high,low,close\n1,10,9,11,10\n", "line 2: high 9 is below low 11"),
    ("timestamp,open,high,low,close\n1,13,12,9,11\n", "line 2: open 13 is outside the low-high"),
    ("timestamp,open,high,low,close\n1,10,12,9,8\n", "line 2: close 8 is outside the low-high"),
    ("timestamp,open,high,low,close,volume\n1,10,12,9,11,-1\n",
     "line 2: volume cannot be negative"),
])
def test_errors_name_the_file_and_line(tmp_path, text, message):
    p = _write(tmp_path, text, "prices.csv")
    with pytest.raises(ValidationError) as e:
        load_price_csv(p, strict=True)
    assert "prices.csv" in str(e.value)
    assert message in str(e.value)


def test_blank_and_comment_lines_do_not_shift_line_numbers(tmp_path):
    p = _write(tmp_path, "timestamp,price\n\n# note\n1,100\n2,x\n")
    with pytest.raises(ValidationError, match="line 5: price 'x'"):
        load_price_csv(p, strict=True)
    assert load_price_csv(p).skipped == (5,)


def test_invalid_price_rows_are_skipped_like_the_live_engine(tmp_path):
    p = _write(tmp_path, "timestamp,price\n1,100\n2,nan\n3,0\n4,101\n5,-2\n6,\n7,inf\n"
                         "8,abc\n9,102\n")
    d = load_price_csv(p)
    assert [t.price for t in d.ticks] == [100.0, 101.0, 102.0]
    assert d.skipped == (3, 4, 6, 7, 8, 9)
    assert d.skipped_reasons[0] == "price 'nan' is not a finite number"
    # the skipped row's timestamp does not count for the ordering check
    q = _write(tmp_path, "timestamp,open,high,low,close\n1,10,12,9,11\n5,10,nan,9,11\n"
                         "3,10,12,9,11\n", "c.csv")
    c = load_price_csv(q)
    assert [x.ts for x in c.candles] == [1.0, 3.0] and c.skipped == (3,)
    with pytest.raises(ValidationError, match="c.csv line 3: high 'nan'"):
        load_price_csv(q, strict=True)
    # structural problems stay errors even when not strict
    with pytest.raises(ValidationError, match="out-of-order"):
        load_price_csv(_write(tmp_path, "timestamp,price\n2,1\n1,2\n", "o.csv"))
    with pytest.raises(ValidationError, match="no valid price rows .2 skipped.*lines 2, 3"):
        load_price_csv(_write(tmp_path, "timestamp,price\n1,0\n2,nan\n", "z.csv"))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        load_price_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(("name", "symbol"), [
    ("BTCUSD-1h-coinbase-2019.csv", "BTC/USDT:USDT"),
    ("ETHUSDT.csv", "ETH/USDT:USDT"),
    ("eth_usdt_1m.csv", "ETH/USDT:USDT"),
    ("sol-usdc.csv", "SOL/USDT:USDT"),
    ("mydata.csv", "MYDATA"),
])
def test_symbol_from_filename(name, symbol):
    assert symbol_from_filename(name) == symbol


def test_candle_path_rising_and_falling():
    assert candle_path_ticks(Candle(0, 10, 12, 9, 11)) == [10, 9, 12, 11]  # open→low→high→close
    assert candle_path_ticks(Candle(0, 11, 12, 9, 10)) == [11, 12, 9, 10]  # open→high→low→close
    assert candle_path_ticks(Candle(0, 10, 10, 10, 10)) == [10, 10, 10, 10]  # flat is rising


def test_resources_dir_is_the_package_resources_folder():
    assert resources_dir() == resource_path()
    assert (resources_dir() / "data" / "README.md").is_file()
