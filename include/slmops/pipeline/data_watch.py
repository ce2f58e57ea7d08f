"""Has a data file changed since the last look? The producer side of data-change retraining.

Each check hashes the file and compares it with the hash recorded for that file by the
same watcher (ARTIFACTS/data_watch/WATCHER/NAME-ID.json, one state file per watched file,
so parallel checks never rewrite each other's state). The first sighting of a file only
records it, so turning a watcher on does not start a retraining by itself. A change is
recorded only after its event was emitted (``record``, called by the task after the
check's): a check killed in between reports the change again next time rather than
losing it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from slmops.artifacts import atomic_write_json, file_sha256
from slmops.errors import ConfigError

WATCH_DIR = "data_watch"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def state_path(artifacts_root: Path, watcher: str, path: Path) -> Path:
    """The state file of ``watcher``'s looks at ``path``."""
    path = Path(path)
    key = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name)
    return Path(artifacts_root) / WATCH_DIR / watcher / f"{name}-{key}.json"


def legacy_state_path(artifacts_root: Path, watcher: str) -> Path:
    """One state file for all of a watcher's files, as before: read, never written."""
    return Path(artifacts_root) / WATCH_DIR / f"{watcher}.json"


def compare(path: Path, state_file: Path, legacy_file: Path | None = None) -> dict:
    """What changed in ``path`` since the hash recorded in ``state_file`` (or, when that
    does not exist yet, in ``legacy_file``): ``{"changed", "first_seen", "sha256",
    "previous_sha256", "size_bytes", "path"}``. Writes nothing."""
    path = Path(path)
    previous = _recorded(state_file, path)
    if previous is None and legacy_file is not None:
        previous = _recorded(legacy_file, path)
    digest = file_sha256(path)
    return {
        "path": str(path),
        "changed": previous is not None and previous != digest,
        "first_seen": previous is None,
        "sha256": digest,
        "previous_sha256": previous,
        "size_bytes": path.stat().st_size,
    }


def record(path: Path, sha256: str, state_file: Path) -> None:
    """Remember ``sha256`` as the last seen content of ``path``."""
    if not _SHA256.match(str(sha256)):
        raise ConfigError(f"{sha256!r} is not a sha256 hex digest; nothing recorded")
    atomic_write_json(
        state_file,
        {
            "path": str(path),
            "sha256": sha256,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def _recorded(state_file: Path, path: Path) -> str | None:
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if "sha256" in state and state.get("path") == str(path):  # one file's state
        return state["sha256"]
    return state.get(str(path), {}).get("sha256")  # the legacy file: path -> state
