"""Where a pipeline run reads from and writes to.

Runs write under one artifacts root (``$SLMOPS_ARTIFACTS_ROOT``; a shared volume when
workers are many): ``ROOT/runs/DAG_ID/RUN_ID/`` per run, ``ROOT/models/NAME/`` for what
is published. Parameters that name files may only point inside the data roots
(``$SLMOPS_DATA_ROOTS``, separated by ``:``), so a trigger form cannot read
``/etc/passwd`` or walk out with ``../..``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from slmops.artifacts import slmops_home, source_checkout_root
from slmops.errors import ConfigError

ARTIFACTS_ENV = "SLMOPS_ARTIFACTS_ROOT"
DATA_ROOTS_ENV = "SLMOPS_DATA_ROOTS"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def artifacts_root(configured: str | None = None) -> Path:
    """``configured`` (an Airflow Variable, say), else $SLMOPS_ARTIFACTS_ROOT, else
    ``SLMOPS_HOME/artifacts``."""
    value = configured or os.environ.get(ARTIFACTS_ENV)
    return Path(value).expanduser().resolve() if value else slmops_home() / "artifacts"


def data_roots(configured: str | None = None) -> list[Path]:
    """Folders that file parameters may name: ``configured`` or $SLMOPS_DATA_ROOTS, else
    the project's include/data and ``SLMOPS_HOME/data``."""
    value = configured or os.environ.get(DATA_ROOTS_ENV)
    if value:
        roots = [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
    else:
        checkout = source_checkout_root()
        roots = [checkout / "include" / "data"] if checkout else []
        roots.append(slmops_home() / "data")
    return [root.resolve() for root in roots]


def confine(value: str, roots: list[Path], param: str) -> Path:
    """The file ``value`` names, which must lie inside one of ``roots``.

    A relative path is taken relative to each root in turn (the first that has it wins),
    so a form can say ``phrase_tones.jsonl``. Symlinks are resolved before the check.
    """
    if not value or "\x00" in value:
        raise ConfigError(f"param {param}: empty or malformed path {value!r}")
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    inside = [
        resolved
        for resolved in (candidate.resolve() for candidate in candidates)
        if any(resolved.is_relative_to(root) for root in roots)
    ]
    allowed = ", ".join(str(root) for root in roots) or "(none configured)"
    if not inside:
        raise ConfigError(
            f"param {param}: {value} is outside the data roots ({allowed}); put the file "
            f"in one of them or add its folder to ${DATA_ROOTS_ENV}"
        )
    for resolved in inside:
        if resolved.exists():
            return resolved
    raise ConfigError(f"param {param}: {value} does not exist under {allowed}")


def safe_name(text: str) -> str:
    """``text`` as one path component. Run ids carry ``:`` from timestamps (and may carry
    ``/``); a name that had to be changed gets a digest of the original, so two run ids
    never share a folder ("a:b" and "a_b" stay apart)."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    if cleaned == text:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}" if cleaned else digest


def run_dir(root: Path, dag_id: str, run_id: str) -> Path:
    """The run's own folder: two runs never share one, a retried task finds its own."""
    return Path(root) / "runs" / safe_name(dag_id) / safe_name(run_id)


def models_root(root: Path) -> Path:
    return Path(root) / "models"
