"""Load a dataset (local files, a local folder or a hub dataset), split it and format it.

``load_splits`` gives the raw train and eval frames (with the file and line of each row);
``prepare`` turns them into (prompt, completion) examples for training and evaluation.
Nothing is capped silently: ``max_samples`` is the only limit on the number of rows, and
every cut is logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from slmops.data.config import DataConfig
from slmops.data.formatting import Example, RowFormatter
from slmops.data.readers import (
    LINE,
    MAX_FILE_MB_ENV,
    META_COLUMNS,
    SOURCE,
    expand_paths,
    folder_files,
    limit_bytes,
)
from slmops.data.readers import read_file as read_local_file
from slmops.errors import DataError, FormatError
from slmops.models import transient_hub_error
from slmops.progress import Log, no_log


@dataclass
class RawSplits:
    """Train and eval rows as frames, plus how the eval rows were chosen."""

    train: pd.DataFrame
    eval: pd.DataFrame
    eval_origin: str  # "split" (from --eval_split) or "held_out"
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [name for name in self.train.columns if name not in META_COLUMNS]


@dataclass
class PreparedData:
    train: list[Example]
    eval: list[Example]
    train_labels: list[str] | None
    eval_labels: list[str] | None
    fingerprint: str


def load_splits(config: DataConfig, *, log: Log = no_log) -> RawSplits:
    """Train and eval frames as the config asks (slices, held-out split, max_samples)."""
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        log(message)

    train_source = _source_splits(config, config.train_subset, log)
    train = _select(train_source, config.train_split, "train_split", note)
    if train.empty:
        raise DataError(f"train_split {config.train_split!r} selects no rows")
    if config.eval_split is not None:
        eval_source = (
            train_source
            if config.eval_subset in (None, config.train_subset)
            else _source_splits(config, config.eval_subset, log)
        )
        evaluation = _select(eval_source, config.eval_split, "eval_split", note)
        if evaluation.empty:
            raise DataError(f"eval_split {config.eval_split!r} selects no rows")
        _note_overlap(train, evaluation, config, note)
        origin = "split"
    else:
        train, evaluation = hold_out(train, config, note)
        origin = "held_out"
    train = _cap(train, config.max_samples, "max_samples", "training", note)
    evaluation = _cap(evaluation, config.max_eval_samples, "max_eval_samples", "eval", note)
    return RawSplits(train.reset_index(drop=True), evaluation.reset_index(drop=True), origin, notes)


def prepare(config: DataConfig, tokenizer=None, *, log: Log = no_log) -> PreparedData:
    """Formatted train and eval examples; a row that cannot be formatted is an error that
    names its file and line."""
    splits = load_splits(config, log=log)
    formatter = RowFormatter(config, tokenizer)
    formatter.columns(splits.columns)
    train = format_rows(splits.train, formatter)
    evaluation = format_rows(splits.eval, formatter)
    label = config.label_field
    return PreparedData(
        train=train,
        eval=evaluation,
        train_labels=_labels(splits.train, label),
        eval_labels=_labels(splits.eval, label),
        fingerprint=fingerprint(train, evaluation),
    )


def format_rows(frame: pd.DataFrame, formatter: RowFormatter) -> list[Example]:
    examples = []
    for row in iter_rows(frame):
        try:
            examples.append(formatter.format(row))
        except FormatError as exc:
            raise FormatError(f"{location(row)}: {exc}") from None
    return examples


def iter_rows(frame: pd.DataFrame) -> Iterator[dict]:
    columns = list(frame.columns)
    for values in frame.itertuples(index=False, name=None):
        yield dict(zip(columns, values, strict=True))


def location(row: dict) -> str:
    """``file:line`` for text files, ``file row N`` for Parquet and hub data."""
    source, line = row[SOURCE], row[LINE]
    if source.startswith("hub:") or source.endswith(".parquet"):
        return f"{source} row {line}"
    return f"{source}:{line}"


def fingerprint(train: list[Example], evaluation: list[Example]) -> str:
    """sha256 of the formatted examples: equal data and format give an equal fingerprint."""
    digest = hashlib.sha256()
    for split, examples in (("train", train), ("eval", evaluation)):
        for example in examples:
            digest.update(json.dumps([split, example.prompt, example.completion]).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def hold_out(
    train: pd.DataFrame, config: DataConfig, note: Log
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``eval_fraction`` of the rows with a fixed seed, stratified by label."""
    from sklearn.model_selection import train_test_split

    if len(train) < 2:
        raise DataError(
            f"train_split {config.train_split!r} has {len(train)} row(s), too few to hold out "
            "an eval split; add rows or pass --eval_split"
        )
    stratify = None
    if config.label_field is not None:
        if config.label_field not in train.columns:
            raise DataError(
                f"label_field {config.label_field!r} names no column; columns are: "
                + ", ".join(c for c in train.columns if c not in META_COLUMNS)
            )
        stratify = train[config.label_field].astype(str)
        counts = stratify.value_counts()
        lonely = sorted(counts[counts < 2].index)
        if lonely:
            raise DataError(
                f"label_field {config.label_field!r}: label(s) {', '.join(map(repr, lonely))} "
                "have a single row, so a stratified eval split cannot include them; add rows "
                "for them or pass --eval_split"
            )
    eval_rows = max(1, round(len(train) * config.eval_fraction))
    if stratify is not None:
        eval_rows = max(eval_rows, stratify.nunique())
    try:
        kept, held = train_test_split(
            train, test_size=eval_rows, random_state=config.seed, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(f"cannot hold out an eval split: {exc}; pass --eval_split") from None
    how = f"stratified by {config.label_field!r}" if stratify is not None else "random"
    note(
        f"held out {len(held)} of {len(train)} rows for evaluation "
        f"({config.eval_fraction:.0%}, {how}, seed {config.seed})"
    )
    return kept.sort_index(), held.sort_index()


def _cap(frame: pd.DataFrame, limit: int | None, flag: str, what: str, note: Log) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    note(f"using the first {limit} of {len(frame)} {what} rows (--{flag} {limit})")
    return frame.iloc[:limit]


def _labels(frame: pd.DataFrame, label: str | None) -> list[str] | None:
    if label is None or label not in frame.columns:
        return None
    return [str(value) for value in frame[label]]


def _source_splits(config: DataConfig, subset: str | None, log: Log) -> dict[str, pd.DataFrame]:
    """Every split the source offers, as frames (local files are all one ``train`` split)."""
    roots = [Path(root) for root in config.data_roots] if config.data_roots else None
    if config.data_files is not None:
        if subset is not None:
            raise DataError("train_subset / eval_subset apply to hub datasets, not to data_files")
        return {"train": _concat(_read_entries(config.data_files, roots))}
    name = config.data_name or ""
    if Path(name).expanduser().is_dir():
        grouped = folder_files(Path(name).expanduser())
        return {
            split: _concat([read_local_file(p, roots) for p in files])
            for split, files in grouped.items()
        }
    return load_hub_splits(name, subset, revision=config.data_revision, log=log)


def _read_entries(entries: list[str], roots: list[Path] | None) -> list[pd.DataFrame]:
    frames = []
    for path in expand_paths(entries, roots):
        if path.is_dir():
            for paths in folder_files(path).values():
                frames.extend(read_local_file(p, roots) for p in paths)
        else:
            frames.append(read_local_file(path, roots))
    return frames


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def load_hub_splits(
    name: str, subset: str | None, *, revision: str | None = None, log: Log = no_log
) -> dict[str, pd.DataFrame]:
    """All splits of a hub dataset (``datasets.load_dataset``), for users with a network;
    at most $SLMOPS_MAX_DATA_FILE_MB of it in all. A hub failure that usually passes is a
    TransientError (retried), any other a DataError."""
    import datasets

    log(f"loading dataset {name}" + (f" ({subset})" if subset else "") + " with datasets")
    try:
        loaded = datasets.load_dataset(name, subset, revision=revision)
    except Exception as exc:  # offline, unknown id, gated, bad subset: all one message
        offline = os.environ.get("HF_DATASETS_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        transient = None if offline else transient_hub_error(exc, f"dataset {name!r}")
        if transient is not None:
            log(str(transient))
            raise transient from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"data_name {name!r}: could not load the dataset ({reason}). Without a network, "
            "pass local files with --data_files or a local folder as --data_name"
        ) from None
    limit = limit_bytes(MAX_FILE_MB_ENV)
    size = sum(dataset.data.nbytes for dataset in loaded.values())
    if size > limit:  # checked on the memory-mapped Arrow data, before any copy to pandas
        raise DataError(
            f"data_name {name!r}: the dataset is {size / 2**20:.1f} MB, over the limit of "
            f"{limit / 2**20:g} MB (${MAX_FILE_MB_ENV}); slice it on the hub side, or raise "
            f"${MAX_FILE_MB_ENV} where the workers have the memory for it"
        )
    frames = {}
    for split, dataset in loaded.items():
        frame = dataset.to_pandas()
        frame[SOURCE] = f"hub:{name}" + (f"/{subset}" if subset else "") + f"/{split}"
        frame[LINE] = range(1, len(frame) + 1)
        frames[split] = frame
    return frames


def _select(splits: dict[str, pd.DataFrame], spec: str, flag: str, note: Log) -> pd.DataFrame:
    """Rows a split spec such as ``train[4096:4224]`` names, in datasets' slicing syntax."""
    from datasets import ReadInstruction

    sizes = {name: len(frame) for name, frame in splits.items()}
    try:
        instructions = ReadInstruction.from_spec(spec).to_absolute(sizes)
    except (ValueError, AssertionError) as exc:
        message = str(exc)
        if "Unknown split" in message:
            message = f"unknown split; the data has: {', '.join(sorted(sizes))}"
        raise DataError(f"{flag} {spec!r}: {message}") from None
    parts = []
    for instruction in instructions:
        frame = splits[instruction.splitname]
        parts.append(frame.iloc[instruction.from_ : instruction.to])
    _note_clamped(spec, sizes, note)
    return _concat(parts)  # a valid spec always names at least one split


def _note_overlap(
    train: pd.DataFrame, evaluation: pd.DataFrame, config: DataConfig, note: Log
) -> None:
    """``--eval_split "train[4096:4224]"`` with the default ``--train_split train`` trains
    on the eval rows; say so (validation's leakage check then fails on them)."""
    shared = set(zip(train[SOURCE], train[LINE], strict=True)) & set(
        zip(evaluation[SOURCE], evaluation[LINE], strict=True)
    )
    if shared:
        note(
            f"warning: {len(shared)} of {len(evaluation)} eval rows are also training rows: "
            f"eval_split {config.eval_split!r} overlaps train_split {config.train_split!r}; "
            'narrow --train_split (e.g. "train[:4096]")'
        )


def _note_clamped(spec: str, sizes: dict[str, int], note: Log) -> None:
    """datasets clamps ``train[:6000]`` of a 5000-row split silently; we say so."""
    for name, stop in re.findall(r"(\w[\w.-]*)\[[^\]:]*:(-?\d+)\]", spec):
        if name in sizes and int(stop) > sizes[name]:
            note(f"{spec}: asks for rows up to {stop} but split {name!r} has {sizes[name]}")
