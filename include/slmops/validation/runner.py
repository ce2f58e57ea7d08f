"""Validate a training dataset with Great Expectations before any training starts.

The rows of both splits go into one pandas frame with a few derived columns (formatted
text, a duplicate key, train/eval leakage, token counts); each check of the suite is a GX
expectation on that frame or on one split of it, run in an ephemeral GX context. The
report lists every check with its observed value and up to five offending rows by file
and line; a failed suite raises ``ValidationFailed`` naming each failed check.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from slmops.artifacts import atomic_write_json
from slmops.config import describe_validation_error
from slmops.data.config import DataConfig
from slmops.data.formatting import Example, RowFormatter
from slmops.data.loading import RawSplits, fingerprint, iter_rows, load_splits
from slmops.errors import ConfigError, FormatError, ValidationFailed
from slmops.layout import VALIDATION_REPORT
from slmops.progress import Log, no_log
from slmops.validation.expectations import (
    CLASS_ROWS,
    DUP_KEY,
    FORMAT_ERROR,
    IN_TRAIN,
    SPLIT,
    TEXT,
    TOKENS,
    CheckResult,
    build_checks,
    run_checks,
)
from slmops.validation.suites import SuiteConfig, load_suite


@dataclass
class ValidationReport:
    suite: str
    passed: bool
    data: dict
    checks: list[CheckResult]

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        failed = sum(not check.passed for check in self.checks)
        verdict = "PASSED" if self.passed else f"FAILED ({failed} failed)"
        lines = [
            f"validation suite {self.suite!r}: {verdict} - {len(self.checks)} checks on "
            f"{self.data['train_rows']} train + {self.data['eval_rows']} eval rows"
        ]
        for check in self.checks:
            mark = "ok  " if check.passed else "FAIL"
            lines.append(f"  {mark} {check.name}: {check.explanation}")
            if not check.passed:
                lines.extend(f"         {row['location']}: {row['value']!r}" for row in check.rows)
        return "\n".join(lines)


def run(
    data_config: DataConfig,
    suite: str | SuiteConfig = "default",
    *,
    model_name_or_path: str | None = None,
    max_seq_len: int | None = None,
    trust_remote_code: bool = False,
    output_dir: Path | None = None,
    log: Log = no_log,
) -> ValidationReport:
    """Validate with a suite (by name, path or object) and the tokenizer of a model.

    ``max_seq_len`` (a training run's) replaces the suite's token budget.
    """
    from slmops.model_store import DEFAULT_MODEL
    from slmops.models import load_tokenizer, resolve

    if not isinstance(suite, SuiteConfig):
        suite = load_suite(suite)
    if max_seq_len is not None:  # re-validated, so the suite's bounds apply to it
        try:
            suite = SuiteConfig.model_validate({**suite.model_dump(), "max_seq_len": max_seq_len})
        except ValidationError as exc:
            message = describe_validation_error(exc, source=suite.name, flag_style=False)
            raise ConfigError(message) from None
    model = resolve(model_name_or_path or DEFAULT_MODEL, log=log)
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
    return validate(data_config, suite, tokenizer, output_dir=output_dir, log=log)


def validate(
    data_config: DataConfig,
    suite: SuiteConfig,
    tokenizer,
    *,
    output_dir: Path | None = None,
    log: Log = no_log,
) -> ValidationReport:
    """Run the suite; write ``validation.json`` when ``output_dir`` is given; raise
    ``ValidationFailed`` when a check fails (after writing the report)."""
    # The suite's label column drives the label checks only: the rows are split exactly
    # as training splits them (stratified by the data's own label_field), so the report's
    # fingerprint is the one training computes and compares (slmops.training.validated).
    label = suite.label_column or data_config.label_field
    formatter = RowFormatter(data_config, tokenizer)
    splits = load_splits(data_config, log=log)
    columns = formatter.columns(splits.columns)
    frame, examples = build_frame(splits, formatter, tokenizer, label)
    checks = build_checks(suite, frame, columns, label, data_config)
    results = run_checks(checks, frame)
    report = ValidationReport(
        suite=suite.name,
        passed=all(result.passed for result in results),
        data={
            "train_rows": len(splits.train),
            "eval_rows": len(splits.eval),
            "eval_origin": splits.eval_origin,
            "columns": splits.columns,
            "label_column": label,
            "max_seq_len": suite.max_seq_len,
            "fingerprint": fingerprint(*examples),
            "notes": splits.notes,
        },
        checks=results,
    )
    if output_dir is not None:
        atomic_write_json(Path(output_dir) / VALIDATION_REPORT, report.to_dict())
    log(report.summary())
    if not report.passed:
        raise ValidationFailed(report)
    return report


def build_frame(
    splits: RawSplits, formatter: RowFormatter, tokenizer, label: str | None
) -> tuple[pd.DataFrame, tuple[list[Example], list[Example]]]:
    """Both splits in one frame plus the derived columns the checks read."""
    frame = pd.concat(
        [splits.train.assign(**{SPLIT: "train"}), splits.eval.assign(**{SPLIT: "eval"})],
        ignore_index=True,
    )
    examples, errors = [], []
    for row in iter_rows(frame):
        try:
            examples.append(formatter.format(row, strict=False))
            errors.append(None)
        except FormatError as exc:
            examples.append(Example("", ""))
            errors.append(str(exc))
    frame[TEXT] = [example.text for example in examples]
    frame[FORMAT_ERROR] = pd.Series(errors, dtype=object)
    # Duplicates and leakage compare the prompt (the input) when there is one: the same
    # question in train and eval leaks even when the answers differ.
    keys = [_normalise(example.prompt or example.text) for example in examples]
    frame[DUP_KEY] = [_normalise(example.text) for example in examples]
    is_train = frame[SPLIT] == "train"
    train_keys = {key for key, train in zip(keys, is_train, strict=True) if train}
    frame[IN_TRAIN] = [
        (not train) and key in train_keys for key, train in zip(keys, is_train, strict=True)
    ]
    frame[TOKENS] = count_tokens(tokenizer, frame[TEXT].tolist())
    if label and label in frame.columns:
        counts = frame.loc[is_train, label].astype(str).value_counts()
        frame[CLASS_ROWS] = frame[label].astype(str).map(counts).fillna(0).astype(int)
    n_train = int(is_train.sum())
    return frame, (examples[:n_train], examples[n_train:])


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Tokens per example as training will see it: with special tokens and the EOS."""
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    return [len(ids) + 1 for ids in encoded]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()
