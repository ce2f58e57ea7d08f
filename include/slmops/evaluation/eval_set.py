"""The eval set: what a model is scored on, built one way for every stage that scores.

Evaluation, the ONNX parity check (optimize), champion / challenger and the multi-adapter
build all score on an ``EvalPlan``: the task and its primary metric, the eval split
rebuilt exactly as training built it (same data settings and seed), the references,
labels and the models to compare. ``for_run`` builds it for a finished training folder;
``build`` for a whole ``EvaluateConfig``. Nothing here loads a model's weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmops.data.formatting import Example
from slmops.data.loading import PreparedData, prepare
from slmops.errors import ConfigError, EvaluationError
from slmops.evaluation.config import (
    LOSS_METRICS,
    TASK_METRICS,
    EvaluateConfig,
    config_for_run,
    read_run_metrics,
)
from slmops.evaluation.scoring import without_special_tokens
from slmops.layout import ADAPTER, MERGED, VALIDATION_REPORT
from slmops.models import ResolvedModel, load_padding_tokenizer, resolve
from slmops.progress import Log, no_log
from slmops.training.adapters import check_adapter_folder


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


def for_run(run_path: Path, *, log: Log = no_log, **settings: Any) -> EvalPlan:
    """The eval set of a finished training folder: the rows its evaluation scored, with
    ``settings`` (an ``EvaluateConfig``'s fields) overriding what the run recorded."""
    return build(config_for_run(Path(run_path), **settings), log)


def build(config: EvaluateConfig, log: Log = no_log) -> EvalPlan:
    """What to score (task, eval rows, references, labels, models) for ``config``, checked
    before any model is loaded."""
    task = config.resolved_task()
    primary = config.resolved_primary()
    _check_metric_names(config, task, primary)
    history = _training_history(config.run_path)
    validation = _validation_report(config.validation_path)
    model_name = config.model_name_or_path or (history or {}).get("model_name_or_path")
    base = resolve(model_name, log=log)
    tokenizer = load_padding_tokenizer(base, trust_remote_code=config.trust_remote_code)
    data = prepare(config, tokenizer, log=log)
    if not data.eval:
        raise EvaluationError("the eval split is empty; nothing to evaluate")
    adapter, whole = _fine_tuned_source(config, history)
    labels: list[str] = []
    if task == "classification":
        labels = sorted({*(data.train_labels or []), *(data.eval_labels or [])})
    references = [without_special_tokens(e.completion, tokenizer) for e in data.eval]
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
        _max_new_tokens(config, tokenizer, data.eval),
    )


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
    outputs = history.get("outputs", {})
    run_path = Path(config.run_path)
    if outputs.get(ADAPTER):
        return run_path / outputs[ADAPTER], None
    if outputs.get(MERGED):
        return None, run_path / outputs[MERGED]
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
