"""Where slmops keeps things, and how it writes them without leaving half-written files.

Every output is written to a temporary sibling and renamed into place, so a crash or a
concurrent reader never sees a partial file or folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOME_ENV = "SLMOPS_HOME"
_CHUNK = 4 * 1024 * 1024


def source_checkout_root() -> Path | None:
    """The project root when slmops runs from its source tree (editable install)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "include").is_dir() else None


def slmops_home() -> Path:
    """Root for models and run artifacts: $SLMOPS_HOME, else `.slmops/` in the project."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    root = source_checkout_root()
    return root / ".slmops" if root else Path.home() / ".cache" / "slmops"


def models_dir(home: Path | None = None) -> Path:
    return (home or slmops_home()) / "models"


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = final.parent / f".{final.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{tag}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json_if_any(path: Path) -> Any:
    """The JSON in ``path``, or None when there is no such file (a stage not run yet)."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temporaries(final: Path) -> None:
    """Delete leftovers of writes to ``final`` that were killed mid-way.

    Call it only while holding the lock that serialises writers of ``final``.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return
    for entry in final.parent.glob(f".{final.name}.*-*"):
        if entry.name.startswith((f".{final.name}.tmp-", f".{final.name}.old-")):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
