"""Whether two folders hold the same file names with the same bytes (benchmarks that
claim an unchanged output check it with this)."""

from __future__ import annotations

import filecmp
from pathlib import Path


def same_files(left: Path, right: Path) -> bool:
    names = sorted(path.name for path in left.iterdir())
    if names != sorted(path.name for path in right.iterdir()):
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, names, shallow=False)
    return not mismatch and not errors
