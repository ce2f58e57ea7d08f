"""The published versions of a model: their names, the per-model lock, the latest pointer
that only moves forward, and the checksums that prove a version intact.

A version is named by the DAG and the run that made it (two DAGs whose runs share an id
never share a folder). Every write to a model's store happens under its lock
(``model_lock``): champion / challenger against the current latest, the version folder,
then latest.json. Each version gets a sequence number, one more than any before it,
kept when the same run publishes again; latest.json moves only to a version whose
number is at least its own, so a retried or cleared older run never takes it back.

No model library is imported (the UI's catalog imports it).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from slmops.artifacts import (
    atomic_write_json,
    exclusive_lock,
    file_sha256,
    read_json_if_any,
    remove_stale_temporaries,
)
from slmops.layout import MANIFEST_NAME, ModelStore
from slmops.pipeline.locations import safe_name

LOCK_WAIT_ENV = "SLMOPS_PUBLISH_LOCK_WAIT_S"
LOCK_WAIT_S = 900.0  # a publish that challenges scores two models while it holds the lock


def version_name(dag_id: str, run_id: str) -> str:
    """The version folder of the run ``run_id`` of DAG ``dag_id``: one path component,
    with a digest of both (so "a"/"b_c" and "a_b"/"c" stay apart)."""
    return safe_name(f"{dag_id}/{run_id}")


def legacy_version_name(run_id: str) -> str:
    """What versions were named before the DAG was part of the name (older stores)."""
    return safe_name(run_id)


def model_lock(store: ModelStore, name: str) -> AbstractContextManager[None]:
    """The lock of model ``name`` (NAME/.publish.lock), waiting at most
    $SLMOPS_PUBLISH_LOCK_WAIT_S seconds (default 900)."""
    wait = float(os.environ.get(LOCK_WAIT_ENV) or LOCK_WAIT_S)
    return exclusive_lock(store.lock(name), timeout_s=wait, what=f"publishing model {name}")


def sequence_of(version_dir: Path) -> int | None:
    """A whole version's sequence number (0 for one published before numbers existed)."""
    manifest = read_manifest(version_dir)
    return None if manifest is None else int(manifest.get("sequence") or 0)


def next_sequence(store: ModelStore, name: str) -> int:
    """One more than any version of ``name`` and its latest pointer (call under the lock)."""
    folder = store.versions(name)
    numbers = [sequence_of(version) for version in _children(folder)]
    latest = store.latest_record(name) or {}
    numbers.append(int(latest.get("sequence") or 0))
    return max((number for number in numbers if number is not None), default=0) + 1


def advance_latest(store: ModelStore, name: str, version_dir: Path, manifest: dict) -> str:
    """Point latest.json at ``version_dir`` unless the latest version is newer (a higher
    sequence number and still there); returns the version that is latest afterwards.
    Call under the lock."""
    current = store.latest_named(name)
    latest = store.latest_record(name) or {}
    if (
        current is not None
        and current.name != version_dir.name
        and store.manifest(current).is_file()
        and int(latest.get("sequence") or sequence_of(current) or 0) > manifest["sequence"]
    ):
        return current.name
    remove_stale_temporaries(store.latest(name))
    atomic_write_json(
        store.latest(name),
        {
            "version": version_dir.name,
            "path": store.relative(version_dir),
            "sequence": manifest["sequence"],
            "published_at": manifest["published_at"],
        },
    )
    return version_dir.name


def checksums(version_dir: Path) -> dict[str, str]:
    """sha256 of every file in a version folder but its manifest, by relative path."""
    root = Path(version_dir)
    return {
        path.relative_to(root).as_posix(): file_sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST_NAME
    }


def verify(version_dir: Path) -> list[str]:
    """What is wrong with a published version, file by file (empty when intact): a file
    missing, changed since it was published (its sha256 differs from the manifest's) or
    not in the manifest."""
    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    if manifest is None:
        return [f"{version_dir}: no readable {MANIFEST_NAME}; the version is incomplete"]
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return [f"{version_dir}: its manifest records no checksums (published by an older slmops)"]
    problems = []
    found = checksums(version_dir)
    for relative, digest in sorted(recorded.items()):
        if relative not in found:
            problems.append(f"{version_dir / relative}: missing")
        elif found[relative] != digest:
            problems.append(
                f"{version_dir / relative}: sha256 {found[relative][:12]}... differs from the "
                f"manifest's {digest[:12]}... (corrupted or edited after publishing)"
            )
    problems += [
        f"{version_dir / relative}: not in the manifest (added after publishing)"
        for relative in sorted(set(found) - set(recorded))
    ]
    return problems


def has_checksums(version_dir: Path) -> bool:
    """Whether the version's manifest is readable and records its files' sha256s (versions
    published before checksums existed do not: ``verify`` cannot tell them intact)."""
    manifest = read_manifest(version_dir)
    return manifest is not None and isinstance(manifest.get("files"), dict)


def read_manifest(version_dir: Path) -> dict | None:
    """A version's manifest, or None when it is missing or unreadable."""
    try:
        manifest = read_json_if_any(ModelStore.manifest(version_dir))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _children(folder: Path) -> list[Path]:
    try:
        return [e for e in Path(folder).iterdir() if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []
