"""The eval set the evaluate stage stores for the stages after it, and when they may use it.

Evaluate writes RUN_PATH/evaluation/eval_set.json: the rows it scored (prompt, completion,
reference, label), the labels, task, primary metric and max_new_tokens, and two digests:

- ``settings_sha256``: what produced it: the data settings, the task, metric and
  max_new_tokens as asked, the tokenizer files of the base model, and the content of every
  local data file (a hub dataset counts by its name, subset and revision);
- ``content_sha256``: the stored values themselves.

The eval set's ``fingerprint`` is the sha256 of both; the fine-tuned answers evaluate
stores beside it are keyed by it (``evaluation.answers``). A later stage (parity, champion /
challenger, the multi-adapter scores) computes the settings digest of the set it would
build and reads the stored one only when both digests match; otherwise it builds the set
from the data, as evaluate did (``eval_set.build`` is the one place that decides).
Standard library only.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Any

from slmops.artifacts import atomic_write_json, file_sha256

FORMAT = 1
CONTENT_KEYS = ("task", "primary_metric", "labels", "max_new_tokens", "data_fingerprint", "rows")
# Files of a model folder that decide how text becomes tokens and tokens become text.
_TOKENIZER_PREFIXES = (
    "tokenizer",
    "special_tokens_map",
    "added_tokens",
    "vocab",
    "merges",
    "chat_template",
)
_TOKENIZER_SUFFIXES = (".model", ".tiktoken")


def settings_sha256(
    data_settings: dict, *, task: str, primary: str, max_new_tokens: int | None, base: Path
) -> str:
    """The digest of what builds an eval set: ``data_settings`` (DataConfig's fields and
    trust_remote_code, as JSON), the task, primary metric and max_new_tokens asked for,
    the base model's tokenizer files and the local data files' content."""
    named = [data_settings.get("data_name")] if data_settings.get("data_name") else []
    sources = [*(data_settings.get("data_files") or []), *named]
    return _sha256_of(
        {
            "data": data_settings,
            "task": task,
            "primary_metric": primary,
            "max_new_tokens": max_new_tokens,
            "tokenizer": _tokenizer_digests(Path(base)),
            "sources": _source_digests(sources),
        }
    )


def content(
    *,
    task: str,
    primary: str,
    labels: list[str],
    max_new_tokens: int,
    data_fingerprint: str,
    rows: list[dict],
) -> dict:
    """An eval set's values as stored (rows: prompt, completion, reference[, label])."""
    values = (task, primary, labels, max_new_tokens, data_fingerprint, rows)
    return dict(zip(CONTENT_KEYS, values, strict=True))


def fingerprint(settings: str, values: dict) -> str:
    """The eval set's name: sha256 of its settings digest and its content."""
    return hashlib.sha256(f"{settings}:{_sha256_of(values)}".encode()).hexdigest()


def write(path: Path, settings: str, values: dict) -> None:
    atomic_write_json(
        path,
        {
            "format": FORMAT,
            "fingerprint": fingerprint(settings, values),
            "settings_sha256": settings,
            "content_sha256": _sha256_of(values),
            **values,
        },
    )


def read(path: Path, settings: str) -> tuple[dict | None, str]:
    """(the stored values, "") when ``path`` holds the eval set ``settings`` build, else
    (None, why not)."""
    path = Path(path)
    if not path.is_file():
        return None, f"no stored eval set at {path}"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable ({exc})"
    if stored.get("format") != FORMAT or stored.get("settings_sha256") != settings:
        return None, f"{path} was built with other data, settings or tokenizer"
    values = {key: stored.get(key) for key in CONTENT_KEYS}
    if stored.get("content_sha256") != _sha256_of(values):
        return None, f"{path} does not match its own digest (edited or damaged)"
    return values, ""


def _sha256_of(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _tokenizer_digests(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        path.name: file_sha256(path)
        for path in sorted(folder.iterdir())
        if path.is_file()
        and (path.name.startswith(_TOKENIZER_PREFIXES) or path.name.endswith(_TOKENIZER_SUFFIXES))
    }


def _source_digests(entries: list[str]) -> dict[str, str]:
    """sha256 of every local file the data settings name (files, globs, folders); a name
    that is no local path (a hub dataset) adds nothing: its name and revision are in the
    settings."""
    digests: dict[str, str] = {}
    for entry in entries:
        matches = glob.glob(entry, recursive=True) if any(c in entry for c in "*?[") else [entry]
        for match in sorted(matches):
            for path in _files(Path(match).expanduser()):
                digests[str(path)] = file_sha256(path)
    return digests


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(
        item
        for item in path.rglob("*")
        if item.is_file() and not any(part.startswith(".") for part in item.relative_to(path).parts)
    )
