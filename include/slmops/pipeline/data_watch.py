"""Has a data file changed since the last look? The producer side of data-change retraining.

Each check hashes the file and compares it with the hash recorded at the last check
(ARTIFACTS/data_watch/STATE.json). The first sighting of a file only records it, so
turning a watcher on does not start a retraining by itself; every later change is
reported once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from slmops.artifacts import atomic_write_json, file_sha256

WATCH_DIR = "data_watch"


def state_path(artifacts_root: Path, watcher: str) -> Path:
    return Path(artifacts_root) / WATCH_DIR / f"{watcher}.json"


def look(path: Path, state_file: Path) -> dict:
    """What changed in ``path`` since the last look, recorded in ``state_file``:
    ``{"changed": bool, "first_seen": bool, "sha256", "previous_sha256", "size_bytes"}``."""
    path = Path(path)
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    previous = state.get(str(path), {}).get("sha256")
    digest = file_sha256(path)
    state[str(path)] = {
        "sha256": digest,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(state_file, state)
    return {
        "path": str(path),
        "changed": previous is not None and previous != digest,
        "first_seen": previous is None,
        "sha256": digest,
        "previous_sha256": previous,
        "size_bytes": path.stat().st_size,
    }
