"""Data readers scale linearly: seconds per MB of a JSON array, JSON Lines and CSV file
of tone-like rows at 1, 4, 16 and 64 MB, read with ``slmops.data.readers.read_file`` (what
validate, finetune and evaluate use), one after the other in one run.

    python benchmarks/reader_scaling.py [--sizes 1,4,16,64] [--rounds 3]

Before, a JSON array's reader counted each row's line from the start of the file
(quadratic: about 43 s for 4.4 MB, against 0.14 s for the same rows as JSON Lines); it now
counts from the previous row. Goal (the hardening issue): the time per MB stays flat from
1 MB to 64 MB. Prints a table and, per format, the 64 MB time per MB over the 1 MB one.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from slmops.data.readers import read_file

TONES = ("joyful", "angry", "sad", "fearful", "grateful", "curious")


def rows_for(megabytes: float) -> list[dict]:
    """Rows of about 150 bytes until the JSON Lines form reaches ``megabytes``."""
    rows, size, index = [], 0, 0
    while size < megabytes * 2**20:
        row = {
            "phrase": f"Row {index}: the train was late again and nobody said why, {index % 97}.",
            "tone": TONES[index % len(TONES)],
        }
        rows.append(row)
        size += len(json.dumps(row)) + 1
        index += 1
    return rows


def write(rows: list[dict], folder: Path, kind: str) -> Path:
    path = folder / f"rows.{kind}"
    if kind == "json":
        path.write_text("[\n" + ",\n".join(json.dumps(row, indent=2) for row in rows) + "\n]\n")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(buffer.getvalue())
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,64", help="MB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [float(size) for size in args.sizes.split(",")]
    per_mb: dict[tuple[str, float], float] = {}
    print("| format | MB | rows | read s (median) | s per MB |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="slmops-readers-") as tmp:
        for size in sizes:
            rows = rows_for(size)
            for kind in ("json", "jsonl", "csv"):
                path = write(rows, Path(tmp), kind)
                megabytes = path.stat().st_size / 2**20
                seconds = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    frame = read_file(path)
                    seconds.append(time.perf_counter() - started)
                assert len(frame) == len(rows)
                median = statistics.median(seconds)
                per_mb[kind, size] = median / megabytes
                print(f"| {kind} | {megabytes:.1f} | {len(rows):,} | {median:.2f} | "
                      f"{per_mb[kind, size]:.3f} |", flush=True)  # fmt: skip
                path.unlink()
    print()
    flat = True
    for kind in ("json", "jsonl", "csv"):
        ratio = per_mb[kind, sizes[-1]] / per_mb[kind, sizes[0]]
        print(f"{kind}: s per MB at {sizes[-1]:g} MB / at {sizes[0]:g} MB = {ratio:.2f}x "
              "(flat: <= 1.5x)")  # fmt: skip
        flat &= ratio <= 1.5
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
