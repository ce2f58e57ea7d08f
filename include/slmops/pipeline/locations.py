"""Where a pipeline run reads from and writes to.

Runs write under one artifacts root (``$SLMOPS_ARTIFACTS_ROOT``; a shared volume when
workers are many): ``ROOT/runs/DAG_ID/RUN_ID/`` per run, ``ROOT/models/NAME/`` for what
is published. Parameters that name files may only point inside the data roots
(``$SLMOPS_DATA_ROOTS``, separated by ``:``), so a trigger form cannot read
``/etc/passwd`` or walk out with ``../..``; a glob pattern is expanded inside each root.

Hub ids (``owner/name``) in a run's params make a worker download; they are refused
unless the deployment allows them with ``$SLMOPS_ALLOW_HUB``: ``1`` for any id, or
comma-separated patterns of ids (``HuggingFaceTB/*,my-org/*``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from pathlib import Path

from slmops.artifacts import slmops_home, source_checkout_root
from slmops.errors import ConfigError

ARTIFACTS_ENV = "SLMOPS_ARTIFACTS_ROOT"
DATA_ROOTS_ENV = "SLMOPS_DATA_ROOTS"
HUB_ENV = "SLMOPS_ALLOW_HUB"
_GLOB_CHARS = frozenset("*?[")
_OFF = frozenset({"", "0", "false", "no", "off"})
_ON = frozenset({"1", "true", "yes", "on", "*"})
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


def confine_all(values: list[str], roots: list[Path], param: str) -> list[Path]:
    """``confine`` for each value; a glob pattern (``*``, ``?``, ``[...]``, ``**``) stands
    for the files it matches, sorted, each confined. The folder before the first wildcard must lie
    inside a root (a relative one is looked up in each root), so a pattern never makes
    prepare walk the file system outside them. A pattern matching nothing is an error."""
    paths: list[Path] = []
    for value in values:
        if _GLOB_CHARS.isdisjoint(value) or _exists(value, roots):  # data[1].jsonl is a file
            paths.append(confine(value, roots, param))
        else:
            paths.extend(
                confine(str(match), roots, param) for match in _matches(value, roots, param)
            )
    return paths


def _exists(value: str, roots: list[Path]) -> bool:
    path = Path(value).expanduser()
    return path.exists() if path.is_absolute() else any((root / path).exists() for root in roots)


def _matches(value: str, roots: list[Path], param: str) -> list[Path]:
    pattern = Path(value).expanduser()
    if ".." in pattern.parts:
        raise ConfigError(f"param {param}: the pattern {value} may not contain '..'")
    wild = next(i for i, part in enumerate(pattern.parts) if not _GLOB_CHARS.isdisjoint(part))
    literal, rest = Path(*pattern.parts[:wild]), str(Path(*pattern.parts[wild:]))
    if pattern.is_absolute():
        bases = [confine(str(literal), roots, param)]
    else:
        bases = [
            base.resolve()
            for base in (root / literal for root in roots)
            if base.is_dir() and any(base.resolve().is_relative_to(root) for root in roots)
        ]
    # Files only: a folder matched too would be read again through its files.
    matches = sorted({match for base in bases for match in base.glob(rest) if match.is_file()})
    if not matches:
        allowed = ", ".join(str(root) for root in roots) or "(none configured)"
        raise ConfigError(f"param {param}: the pattern {value} matches nothing under {allowed}")
    return matches


def hub_allowed(repo_id: str) -> bool:
    """Whether the deployment ($SLMOPS_ALLOW_HUB) lets runs name the hub id ``repo_id``."""
    setting = os.environ.get(HUB_ENV, "").strip()
    if setting.lower() in _OFF:
        return False
    if setting.lower() in _ON:
        return True
    patterns = [part.strip() for part in setting.split(",") if part.strip()]
    return any(fnmatch.fnmatchcase(repo_id, pattern) for pattern in patterns)


def check_hub_allowed(repo_id: str, param: str) -> None:
    """ConfigError unless the deployment lets runs download ``repo_id`` from the hub."""
    if hub_allowed(repo_id):
        return
    setting = os.environ.get(HUB_ENV, "").strip()
    now = (
        f"allows only the hub ids matching ${HUB_ENV}={setting!r}"
        if setting.lower() not in _OFF
        else f"lets runs download nothing from the hub (${HUB_ENV} is not set)"
    )
    raise ConfigError(
        f"param {param}: {repo_id!r} is a Hugging Face hub id, and this deployment {now}. "
        f"Put the files in a data root, or have the deployment set ${HUB_ENV}=1 (any id) or "
        f"${HUB_ENV}=OWNER/* (ids matching comma-separated patterns) in the workers' "
        "environment"
    )


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


def narrowed_roots(value: str | None, deployment: list[Path], setting: str) -> list[Path]:
    """The roots a runtime setting (an Airflow Variable, say) names, ``os.pathsep``
    separated: each must lie inside one of the ``deployment`` roots (the environment's),
    so such a setting can narrow where runs read and write, never widen it. Nothing
    given: the deployment's roots."""
    parts = [part.strip() for part in (value or "").split(os.pathsep) if part.strip()]
    if not parts:
        return list(deployment)
    allowed = ", ".join(str(root) for root in deployment) or "(none configured)"
    roots = []
    for part in parts:
        root = Path(part).expanduser()
        inside = root.is_absolute() and any(
            root.resolve().is_relative_to(base) for base in deployment
        )
        if not inside:
            raise ConfigError(
                f"{setting} = {value!r}: {part} is not a folder inside the deployment's roots "
                f"({allowed}); this setting may only narrow them: name an absolute folder inside "
                f"one, or change the deployment's ${ARTIFACTS_ENV} / ${DATA_ROOTS_ENV}"
            )
        roots.append(root.resolve())
    return roots


def narrowed_data_roots(value: str | None, setting: str) -> list[Path]:
    """The data roots a runtime setting names, each inside the deployment's ``data_roots()``."""
    return narrowed_roots(value, data_roots(), setting)


def narrowed_artifacts_root(value: str | None, setting: str) -> Path:
    """The artifacts root a runtime setting names, inside the deployment's ``artifacts_root()``."""
    deployment = artifacts_root()
    roots = narrowed_roots(value, [deployment], setting)
    if len(roots) > 1:
        raise ConfigError(f"{setting} = {value!r}: name one folder, not {len(roots)}")
    return roots[0]
