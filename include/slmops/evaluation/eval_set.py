"""The eval set: what a model is scored on, built one way for every stage that scores.

Evaluation, the ONNX parity check (optimize), champion / challenger and the multi-adapter
build all score on an ``EvalPlan``: the task and its primary metric, the eval split
rebuilt exactly as training built it (same data settings and seed), the references,
labels and the models to compare. ``for_run`` builds it for a finished training folder;
``build`` for a whole ``EvaluateConfig``. Nothing here loads a model's weights.

The evaluate stage stores the set it scored (``store``: RUN_PATH/evaluation/eval_set.json,
with its fingerprint); ``for_run`` reads that file instead of re-reading and re-formatting
the data when it is the set its settings would build (``slmops.evaluation.stored``), so
parity and champion / challenger score exactly the rows evaluate scored. ``build`` is the
one place that decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from slmops.data.config import DataConfig
from slmops.data.formatting import Example
from slmops.data.loading import PreparedData, prepare
from slmops.errors import ConfigError, EvaluationError
from slmops.evaluation import stored
from slmops.evaluation.config import (
    LOSS_METRICS,
    TASK_METRICS,
    EvaluateConfig,
    config_for_run,
    read_run_metrics,
)
from slmops.evaluation.scoring import without_special_tokens
from slmops.layout import ADAPTER, MERGED, VALIDATION_REPORT, TrainingLayout
from slmops.models import ResolvedModel, load_padding_tokenizer, resolve
from slmops.progress import Log, no_log
from slmops.training.adapters import check_adapter_folder
from slmops.training.folder import recorded_output


@dataclass
class EvalPlan:
    """What to score, checked before any model is loaded."""

    task: str
    primary: str
    base: ResolvedModel
    tokenizer: Any
    data: PreparedData
    labels: list[str]
    references: list[str]  # the completions as a model's answer reads (no special tokens)
    adapter: Path | None  # applied to the base for the fine-tuned model
    fine_tuned_model: Path | None  # a whole fine-tuned model (full fine-tuning)
    history: dict | None
    validation: dict | None
    max_new_tokens: int
    settings_sha256: str = ""  # the digest of what built it (``stored.settings_sha256``)

    @property
    def stored_values(self) -> dict:
        """The eval set as ``store`` writes it (train rows are not kept: nothing that
        scores reads them)."""
        rows = []
        for index, example in enumerate(self.data.eval):
            row = {"prompt": example.prompt, "completion": example.completion}
            row["reference"] = self.references[index]
            if self.data.eval_labels is not None:
                row["label"] = self.data.eval_labels[index]
            rows.append(row)
        return stored.content(
            task=self.task,
            primary=self.primary,
            labels=self.labels,
            max_new_tokens=self.max_new_tokens,
            data_fingerprint=self.data.fingerprint,
            rows=rows,
        )

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the settings that built the eval set and of its content: equal for
        the set evaluate stored and the same set built again."""
        return stored.fingerprint(self.settings_sha256, self.stored_values)


def for_run(run_path: Path, *, log: Log = no_log, **settings: Any) -> EvalPlan:
    """The eval set of a finished training folder: the rows its evaluation scored, with
    ``settings`` (an ``EvaluateConfig``'s fields) overriding what the run recorded; the
    one its evaluation stored when it is the set these settings build."""
    run_path = Path(run_path)
    config = config_for_run(run_path, **settings)
    return build(config, log, stored_at=TrainingLayout(run_path).eval_set)


def store(eval_plan: EvalPlan, path: Path) -> None:
    """Write the eval set (``path``: an eval_set.json) for the stages that score later."""
    stored.write(path, eval_plan.settings_sha256, eval_plan.stored_values)


def build(config: EvaluateConfig, log: Log = no_log, *, stored_at: Path | None = None) -> EvalPlan:
    """What to score (task, eval rows, references, labels, models) for ``config``, checked
    before any model is loaded. The rows are those stored at ``stored_at`` (an
    eval_set.json) when it holds the set ``config`` builds; else they are built from the
    data (read, split and formatted as training did)."""
    task = config.resolved_task()
    primary = config.resolved_primary()
    _check_metric_names(config, task, primary)
    history = _training_history(config.run_path)
    validation = _validation_report(config.validation_path)
    model_name = config.model_name_or_path or (history or {}).get("model_name_or_path")
    base = resolve(model_name, log=log)
    tokenizer = load_padding_tokenizer(base, trust_remote_code=config.trust_remote_code)
    settings = stored.settings_sha256(
        config.model_dump(mode="json", include={*DataConfig.model_fields, "trust_remote_code"}),
        task=task,
        primary=primary,
        max_new_tokens=config.max_new_tokens,
        base=base.path,
    )
    values, why_not = stored.read(stored_at, settings) if stored_at is not None else (None, "")
    if values is not None:
        log(f"eval set: the {len(values['rows'])} rows evaluate stored ({stored_at})")
        data, labels, references, max_new_tokens = _from_stored(values)
    else:
        if why_not:
            log(f"eval set: built from the data ({why_not})")
        data, labels, references, max_new_tokens = _from_data(config, task, tokenizer, log)
    adapter, whole = _fine_tuned_source(config, history)
    return EvalPlan(
        task,
        primary,
        base,
        tokenizer,
        data,
        labels,
        references,
        adapter,
        whole,
        history,
        validation,
        max_new_tokens,
        settings,
    )


def _from_data(
    config: EvaluateConfig, task: str, tokenizer, log: Log
) -> tuple[PreparedData, list[str], list[str], int]:
    """(data, labels, references, max_new_tokens) read, split and formatted from the data."""
    data = prepare(config, tokenizer, log=log)
    if not data.eval:
        raise EvaluationError("the eval split is empty; nothing to evaluate")
    labels: list[str] = []
    if task == "classification":
        labels = sorted({*(data.train_labels or []), *(data.eval_labels or [])})
    references = [without_special_tokens(e.completion, tokenizer) for e in data.eval]
    return data, labels, references, _max_new_tokens(config, tokenizer, data.eval)


def _from_stored(values: dict) -> tuple[PreparedData, list[str], list[str], int]:
    """The same four from a stored eval set (``stored.read``'s values)."""
    rows = values["rows"]
    labelled = bool(rows) and all("label" in row for row in rows)
    data = PreparedData(
        train=[],
        eval=[Example(row["prompt"], row["completion"]) for row in rows],
        train_labels=None,
        eval_labels=[row["label"] for row in rows] if labelled else None,
        fingerprint=values["data_fingerprint"],
    )
    references = [row["reference"] for row in rows]
    return data, list(values["labels"]), references, values["max_new_tokens"]


def _check_metric_names(config: EvaluateConfig, task: str, primary: str) -> None:
    """Gate and primary metric names must be metrics this task computes."""
    if config.extra_metrics:
        return  # their keys are known only once they are computed
    known = (*TASK_METRICS[task], *LOSS_METRICS)
    named = {"--primary_metric": [primary]}
    named["--min_metric"] = list(config.metric_floors(task))
    named["--max_metric"] = list(config.max_metric or {})
    for flag, names in named.items():
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"{flag}: {name!r} is not a metric of a {task} evaluation; it reports "
                    f"{', '.join(known)}"
                )


def _training_history(run_path: Path | None) -> dict | None:
    if run_path is None:
        return None
    history = read_run_metrics(run_path)
    return {**history, "model_name_or_path": history["config"]["model_name_or_path"]}


def _fine_tuned_source(
    config: EvaluateConfig, history: dict | None
) -> tuple[Path | None, Path | None]:
    """(adapter to apply to the base, or a whole fine-tuned model folder)."""
    if config.adapter_path is not None:
        return check_adapter_folder(config.adapter_path), None
    if history is None:
        return None, None  # a single model, scored on its own
    run_path = Path(config.run_path)
    adapter = recorded_output(run_path, history, ADAPTER)
    if adapter is not None:
        return adapter, None
    merged = recorded_output(run_path, history, MERGED)
    if merged is not None:
        return None, merged
    raise EvaluationError(f"run_path {run_path}: the run recorded neither an adapter nor a model")


def _max_new_tokens(config: EvaluateConfig, tokenizer, examples: list[Example]) -> int:
    if config.max_new_tokens is not None:
        return config.max_new_tokens
    longest = max(
        len(tokenizer(example.completion, add_special_tokens=False)["input_ids"])
        for example in examples
    )
    return min(4096, max(16, longest * 3 // 2 + 8))


def _validation_report(path: Path | None) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        path = path / VALIDATION_REPORT
    if not path.is_file():
        raise ConfigError(f"--validation_path {path}: no such validation report")
    return json.loads(path.read_text(encoding="utf-8"))
