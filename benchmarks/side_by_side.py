"""Two ways of building the same folder, timed side by side: each in turn for a number of
rounds, then their seconds as a table and whether the folders hold the same bytes
(benchmarks that claim an unchanged output check it with this)."""

from __future__ import annotations

import filecmp
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def same_files(left: Path, right: Path) -> bool:
    names = sorted(path.name for path in left.iterdir())
    if names != sorted(path.name for path in right.iterdir()):
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, names, shallow=False)
    return not mismatch and not errors


def alternate(
    ways: dict[str, Callable[[Path], float]], rounds: int, prefix: str
) -> tuple[dict[str, list[float]], bool]:
    """Each way builds into its own folder (and returns its seconds), in turn, ``rounds``
    times; the seconds of each and whether the two folders are identical."""
    seconds: dict[str, list[float]] = {label: [] for label in ways}
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        folders = {label: Path(scratch) / f"way-{index}" for index, label in enumerate(ways)}
        for round_ in range(rounds):
            for label, build in ways.items():
                seconds[label].append(build(folders[label]))
                print(f"round {round_ + 1}: {label}: {seconds[label][-1]:.1f} s", file=sys.stderr)
        return seconds, same_files(*folders.values())


def print_medians(what: str, seconds: dict[str, list[float]]) -> list[float]:
    """The table of each way's seconds; their medians, in order."""
    print(f"| {what} | seconds (each round) | median s |")
    print("|---|---|---:|")
    for label, times in seconds.items():
        rounds = ", ".join(f"{value:.1f}" for value in times)
        print(f"| {label} | {rounds} | {statistics.median(times):.1f} |")
    return [statistics.median(times) for times in seconds.values()]
