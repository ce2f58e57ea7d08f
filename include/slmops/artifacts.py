"""Where slmops keeps things, and how it writes them without leaving half-written files.

Every output is written to a temporary sibling, fsynced and renamed into place, so a
crash or a concurrent reader never sees a partial file or folder; the temporary's name
says which process wrote it, so the next writer removes what a killed one left. Large
writes check the free space first (``ensure_free_space``); writers of one thing take
turns with ``exclusive_lock``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

HOME_ENV = "SLMOPS_HOME"
_CHUNK = 4 * 1024 * 1024
STALE_AFTER_S = 24 * 3600  # a leftover of a writer on another machine, after this long
_OWNER = re.compile(r"\.(?:tmp|old)-[0-9a-f]{8}-(?P<pid>\d+)-(?P<host>.+)$")


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
    """Yield an empty temporary folder that replaces ``final`` only if the block succeeds.

    Its files and folders are fsynced before the rename (a power cut never leaves a
    renamed folder with empty files); an existing ``final`` is swapped out in one atomic
    step where Linux allows it (readers see the old folder or the new one, never none).
    The temporary's name records its owner, so a later writer tells a killed writer's
    leftover from a live one's (``remove_stale_temporaries``, run here first).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)  # a killed writer's leftovers (never a live one's)
    tag = _owner_tag()
    tmp = final.parent / f".{final.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists() and _exchange(tmp, final):  # one atomic step: old or new, never none
        fsync_folder(final.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
        return
    old = final.parent / f".{final.name}.old-{tag}"
    if final.exists():  # no atomic exchange on this file system: two renames
        final.rename(old)
    tmp.rename(final)
    fsync_folder(final.parent)
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the
    kernel, the C library or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    here = -100  # AT_FDCWD: the paths as given
    done = renameat2(here, os.fsencode(first), here, os.fsencode(second), _RENAME_EXCHANGE)
    return done == 0


@contextlib.contextmanager
def temporary_directory(parent: Path, label: str) -> Iterator[Path]:
    """A scratch folder in ``parent`` (same disk as the output), removed when the block
    ends; named like ``atomic_directory``'s, so ``remove_stale_temporaries(parent /
    label)`` cleans one a killed process left."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    folder = parent / f".{label}.tmp-{_owner_tag()}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, fsync it, rename it over ``path``, fsync the
    folder: readers see the old file or the new one, also after a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{_owner_tag()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (before it is renamed into place)."""
    for current, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(current, name)
            if os.path.islink(path):
                continue
            handle = os.open(path, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        fsync_folder(Path(current))


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


def remove_stale_temporaries(final: Path, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete what killed writes to ``final`` left beside it; returns what was removed.

    A leftover is stale when the process that made it is gone (same machine), when it is
    older than ``max_age_s`` (a writer on another machine of a shared volume), or when
    its name carries no owner (written before owners were recorded). A live writer's
    folder is never touched. A stale ``.old-`` folder whose writer died between its two
    renames is the previous ``final``: it is put back when ``final`` is missing.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    removed = []
    for entry in sorted(final.parent.glob(f".{glob.escape(final.name)}.*-*")):
        kind = entry.name[len(final.name) + 2 :].split("-", 1)[0]
        if kind not in ("tmp", "old") or not _is_stale(entry, max_age_s):
            continue
        if kind == "old" and not final.exists():
            try:
                entry.rename(final)  # the swap was cut between its renames: undo it
                continue
            except OSError:
                pass
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _owner_tag() -> str:
    """RANDOM-PID-HOST: unique, and says which process on which machine writes it."""
    return f"{uuid.uuid4().hex[:8]}-{os.getpid()}-{socket.gethostname()}"


def _is_stale(entry: Path, max_age_s: float) -> bool:
    owner = _OWNER.search(entry.name)
    if owner is None:
        return True  # no owner recorded: an older slmops's leftover
    pid, host = int(owner["pid"]), owner["host"]
    if host == socket.gethostname() and not process_alive(pid):
        return True
    try:
        age = time.time() - entry.lstat().st_mtime
    except OSError:
        return False  # gone meanwhile
    return age > max_age_s and not (host == socket.gethostname() and pid == os.getpid())


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def ensure_free_space(
    folder: Path,
    needed_bytes: int,
    *,
    what: str,
    remedy: str = "move the artifacts root ($SLMOPS_ARTIFACTS_ROOT) to a larger disk",
) -> None:
    """Refuse a large write before it starts when ``folder``'s disk has less than
    ``needed_bytes`` free: an OSError (ENOSPC) naming the folder, both sizes and what to
    do, raised before anything is written (a full disk is retried: space may be freed)."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), folder)
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise OSError(
            errno.ENOSPC,
            f"not enough disk space in {folder} for {what}: it needs about "
            f"{needed_bytes} bytes ({needed_bytes / 1e6:.1f} MB), {free} bytes "
            f"({free / 1e6:.1f} MB) are free; free some space or {remedy}",
        )


def tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (symlinks not followed)."""
    return sum(
        os.lstat(os.path.join(current, name)).st_size
        for current, _dirs, files in os.walk(folder)
        for name in files
    )


@contextlib.contextmanager
def exclusive_lock(path: Path, *, timeout_s: float, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (filelock: ``flock``, created when missing) for
    the block, waiting at most ``timeout_s``. A lock still busy then is a TimeoutError
    naming the file (retried: the holder finishes). The kernel drops the lock when its
    holder dies, so a killed process never leaves it taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise TimeoutError(
            f"{what}: another process has held {path} for more than {timeout_s:g} s; it is "
            "retried, or wait for the other publish to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()
