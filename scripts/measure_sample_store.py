"""SQLite (stdlib sqlite3, WAL) or an append-only log for the sample store? Measured here.

    .venv/bin/python scripts/measure_sample_store.py [--records 2000] [--dir /var/tmp]

For each candidate, on this machine's disk: append latency (median, 99th percentile) and
throughput with every record made durable before append() returns (what Collect does), bytes
on disk per record, and what survives a zeroed 4 KiB page in the middle and at the start of
the file. Records are the daemon's: 128 float32 features and a 400 x 6 float32 window.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odar.sample_store import SampleStore, StoreLayout

FEATURES = 128
WINDOW = (400, 6)
PAGE = 4096


def zero_page(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset - offset % PAGE)
        file.write(bytes(PAGE))


def records(count: int):
    rng = np.random.default_rng(0)
    for index in range(count):
        yield (
            index % 2,
            rng.standard_normal(FEATURES).astype(np.float32),
            rng.standard_normal(WINDOW).astype(np.float32),
            float(index),
        )


def measure_log(directory: Path, count: int) -> dict:
    path = directory / "samples.odar"
    layout = StoreLayout("m" * 64, 2, FEATURES, WINDOW)
    latencies = []
    with SampleStore.open(path, layout) as store:
        for label, features, window, stamp in records(count):
            began = time.perf_counter()
            store.append(label, features, window, stamp)
            latencies.append(time.perf_counter() - began)
    size = path.stat().st_size
    survivors = {}
    for where, offset in (("middle", size // 2), ("start", 0)):
        copy = directory / f"log-{where}"
        copy.write_bytes(path.read_bytes())
        zero_page(copy, offset)
        try:
            with SampleStore.open(copy, layout) as store:
                survivors[where] = len(store)
        except Exception as error:
            survivors[where] = f"error: {error}"
    return summary("log (this code)", latencies, size, count, survivors)


def open_sqlite(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, label INTEGER, "
        "timestamp REAL, features BLOB, window BLOB)"
    )
    return connection


def measure_sqlite(directory: Path, count: int, synchronous: str) -> dict:
    path = directory / f"samples-{synchronous}.sqlite"
    connection = open_sqlite(path, synchronous)
    latencies = []
    for label, features, window, stamp in records(count):
        began = time.perf_counter()
        connection.execute(
            "INSERT INTO samples (label, timestamp, features, window) VALUES (?, ?, ?, ?)",
            (label, stamp, features.tobytes(), window.tobytes()),
        )
        latencies.append(time.perf_counter() - began)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    size = path.stat().st_size
    survivors = {}
    for where, offset in (("middle", size // 2), ("start", 0)):
        copy = directory / f"sqlite-{where}.sqlite"
        copy.write_bytes(path.read_bytes())
        zero_page(copy, offset)
        survivors[where] = readable_rows(copy, count)
    result = summary(f"sqlite WAL synchronous={synchronous}", latencies, size, count, survivors)
    if synchronous == "FULL":
        result["kept_after_zeroing_each_btree_page"] = btree_page_damage(directory, path, count)
    return result


def btree_page_damage(directory: Path, path: Path, count: int) -> dict:
    """Zero each page that is not an overflow page (page 1, interior and leaf pages of the
    table) in turn: the fewest rows kept, and after which page."""
    data = path.read_bytes()
    btree_pages = [
        number
        for number in range(len(data) // PAGE)
        if number == 0 or data[number * PAGE] in (0x05, 0x0D)  # interior / leaf table pages
    ]
    kept = {}
    copy = directory / "sqlite-btree.sqlite"
    for number in btree_pages:
        copy.write_bytes(data)
        zero_page(copy, number * PAGE)
        result = readable_rows(copy, count)
        kept[number + 1] = result if isinstance(result, int) else 0
    worst = min(kept, key=kept.get)
    interior = [n + 1 for n in btree_pages if data[n * PAGE] == 0x05]
    return {
        "btree_pages": len(btree_pages),
        "interior_pages": interior,
        "fewest_kept": kept[worst],
        "at_page": worst,
        "kept_per_interior_page": {n: kept[n] for n in interior},
        "median_kept": statistics.median(kept.values()),
    }


def readable_rows(path: Path, count: int) -> int | str:
    """Rows whose every column reads back, one query per row (a scan stops at the first
    error)."""
    try:
        connection = sqlite3.connect(path)
        good = 0
        for row_id in range(1, count + 1):
            try:
                row = connection.execute(
                    "SELECT label, features, window FROM samples WHERE id = ?", (row_id,)
                ).fetchone()
            except sqlite3.DatabaseError:
                continue
            good += row is not None
        connection.close()
        return good
    except sqlite3.DatabaseError as error:
        return f"error: {error}"


def summary(name: str, latencies: list[float], size: int, count: int, survivors: dict) -> dict:
    ordered = sorted(latencies)
    return {
        "store": name,
        "append_ms_median": round(statistics.median(ordered) * 1000, 3),
        "append_ms_p99": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
        "records_per_s": round(count / sum(latencies), 1),
        "bytes_per_record": round(size / count, 1),
        "kept_after_zeroed_page_middle": survivors["middle"],
        "kept_after_zeroed_page_start": survivors["start"],
        "records": count,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        directory = Path(scratch)
        results = [
            measure_log(directory, args.records),
            measure_sqlite(directory, args.records, "FULL"),
            measure_sqlite(directory, args.records, "NORMAL"),
        ]
    print(f"sqlite {sqlite3.sqlite_version}, {args.records} records, on {args.dir}")
    for result in results:
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
