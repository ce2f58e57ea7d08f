"""Cost of checking the bundled model on every resolve: stat cache vs full re-hash.

`resolve()` runs `verify()` on each call; it re-hashes a file only when its size or mtime
changed. This prints both costs, measured side by side in one run, and their ratio.
"""

from __future__ import annotations

import statistics
import time

from slmops.model_store import pull, verify

ALIAS = "smollm2-135m-instruct"


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    folder = pull(ALIAS).path
    assert verify(folder, full=True) == []
    quick = _median_seconds(lambda: verify(folder), repeats=50)
    full = _median_seconds(lambda: verify(folder, full=True), repeats=5)
    print(f"verify (stat cache):   {quick * 1e3:9.3f} ms")
    print(f"verify (full sha256):  {full * 1e3:9.3f} ms")
    print(f"full / stat-cache ratio: {full / quick:,.0f}x")


if __name__ == "__main__":
    main()
