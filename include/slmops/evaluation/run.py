"""Evaluation: ``run(config) -> EvaluationResult`` (metrics, base vs fine-tuned, gates, report).

The eval split is rebuilt exactly as training built it (same data settings and seed); a
run's own data settings that now read other data than training did (a file changed in
between) are refused before any model is loaded.
The base model and the fine-tuned model (base + adapter) answer every eval prompt by
batched greedy generation and are scored on the same rows; the gates then judge the
training history and the scores. Everything lands in one folder, written whole or not at
all: evaluation.json, gates.json, predictions.jsonl, report.md, report.html and the plots.
A failed gate raises ``GateFailure`` after the folder is written, so the report says why.
For the stages after it, the folder also holds the eval set it scored (eval_set.json) and
the fine-tuned model's answers as token ids (fine_tuned_answers.json): parity and
champion / challenger read them instead of building the set and generating them again
(``eval_set.for_run``, ``answers.reusable``).
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmops.artifacts import atomic_directory, atomic_write_json, atomic_write_text
from slmops.data.config import DataConfig
from slmops.devices import place
from slmops.errors import DataError, GateFailure
from slmops.evaluation import answers as stored_answers
from slmops.evaluation import eval_set, gates
from slmops.evaluation.config import (
    LOWER_IS_BETTER,
    EvaluateConfig,
    GateThresholds,
)
from slmops.evaluation.eval_set import EvalPlan
from slmops.evaluation.gates import GateRecord
from slmops.evaluation.report import write_report
from slmops.evaluation.scoring import (
    classification_metrics,
    generation_metrics,
    label_of,
    language_modeling_metrics,
    text_metrics,
)
from slmops.gc_scope import collect_only_new
from slmops.inference import decode_answers, greedy_token_ids
from slmops.layout import (
    ANSWERS_NAME,
    EVAL_SET_NAME,
    EVALUATION_NAME,
    GATES_NAME,
    MERGED,
    METRICS_NAME,
)
from slmops.models import (
    MODEL_LIBRARIES,
    load_causal_lm,
    quiet_libraries,
)
from slmops.progress import Log, no_log
from slmops.report import verdict
from slmops.training.adapters import apply_adapter
from slmops.training.folder import recorded_output

PREDICTIONS_NAME = "predictions.jsonl"


@dataclass
class EvaluationResult:
    output_path: Path
    summary: dict
    gates: list[GateRecord]

    @property
    def failed(self) -> list[GateRecord]:
        return gates.failed(self.gates)


@collect_only_new(*MODEL_LIBRARIES)
def run(config: EvaluateConfig, *, log: Log = no_log) -> EvaluationResult:
    """Score, judge and report; raises ``GateFailure`` when a gate fails (and
    ``config.fail_on_gates``), after the results are written."""
    quiet_libraries()
    device = place(device=config.device).device
    eval_plan = eval_set.build(config, log)
    require_training_data(config, eval_plan)
    scored = _score_models(eval_plan, config, device, log)
    records = _judge(config, eval_plan, scored)
    predictions = _prediction_rows(eval_plan, scored)
    summary = _summary(config, eval_plan, scored, records, predictions[: config.sample_rows])
    with atomic_directory(config.output_dir) as folder:
        atomic_write_json(folder / EVALUATION_NAME, summary)
        atomic_write_json(folder / GATES_NAME, [record.as_dict() for record in records])
        lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in predictions)
        atomic_write_text(folder / PREDICTIONS_NAME, "".join(lines))
        eval_set.store(eval_plan, folder / EVAL_SET_NAME)
        _store_answers(folder / ANSWERS_NAME, eval_plan, config, device, scored["fine_tuned"])
        write_report(folder, summary, eval_plan.history, eval_plan.validation)
    result = EvaluationResult(config.output_dir, summary, records)
    for record in records:
        log(f"gate {record.name}: {verdict(record.passed)} ({record.explanation})")
    log(f"report: {config.output_dir / 'report.html'}")
    if result.failed and config.fail_on_gates:
        raise GateFailure(result.failed)
    return result


def require_training_data(config: EvaluateConfig, eval_plan: EvalPlan) -> None:
    """Refuse (``DataError``, before any model is loaded) to evaluate a run with its own
    data settings when the data they read now are not the data it was trained on: a file
    changed after training. Data chosen on purpose (other data settings) are scored and
    recorded as other data."""
    history = eval_plan.history
    trained = ((history or {}).get("dataset") or {}).get("fingerprint")
    if trained is None or trained == eval_plan.data.fingerprint:
        return
    fields = set(DataConfig.model_fields)
    settings = config.model_dump(mode="json", include=fields)
    if settings != {name: history["config"].get(name) for name in fields}:
        return
    sources = ", ".join(config.data_files or []) or f"dataset {config.data_name}"
    raise DataError(
        f"the evaluation data are not the data this run was trained on: {sources} now give "
        f"fingerprint {eval_plan.data.fingerprint}, but {Path(config.run_path) / METRICS_NAME} "
        f"records training on fingerprint {trained}. The data changed after training; "
        "nothing was evaluated. Rerun the whole run on the data as they are now (or pass "
        "other data settings to score this model on other data on purpose)"
    )


def _load(path: Path, config: EvaluateConfig, device: str):
    return load_causal_lm(str(path), trust_remote_code=config.trust_remote_code).to(device)


def _score_models(
    eval_plan: EvalPlan, config: EvaluateConfig, device: str, log: Log
) -> dict[str, dict]:
    """Scores of the base (when there is a fine-tuned model to compare) and the fine-tuned
    model, holding one model in memory at a time: the adapter goes onto the scored base."""
    scored: dict[str, dict] = {}
    model = None
    if config.compare_base and (eval_plan.adapter or eval_plan.fine_tuned_model):
        model = _load(eval_plan.base.path, config, device)
        scored["base"] = _score("base", model, eval_plan, config, log)
    if eval_plan.fine_tuned_model is not None or model is None:
        model = None
        gc.collect()
        model = _load(eval_plan.fine_tuned_model or eval_plan.base.path, config, device)
    if eval_plan.adapter is not None:
        model = apply_adapter(model, eval_plan.adapter, eval_plan.base.name)
    scored["fine_tuned"] = _score("fine_tuned", model, eval_plan, config, log)
    scored["fine_tuned"]["weights"] = _identities(model, eval_plan, config)
    return scored


def _identities(model, eval_plan: EvalPlan, config: EvaluateConfig) -> list[dict]:
    """The fine-tuned model's weights as files (``answers.weights``): the folder loaded
    and the adapter applied, and the run's merged/ when it holds exactly these weights
    (what parity loads from a LoRA run)."""
    if eval_plan.task == "language_modeling":
        return []  # no answers to store
    loaded = eval_plan.fine_tuned_model or eval_plan.base.path
    identities = [stored_answers.weights(loaded, eval_plan.adapter)]
    merged = (
        recorded_output(Path(config.run_path), eval_plan.history, MERGED)
        if eval_plan.adapter is not None and config.run_path is not None
        else None
    )
    if merged is not None and stored_answers.holds(model, merged):
        identities.append(stored_answers.weights(merged, None))
    return identities


def _score(name: str, model, eval_plan: EvalPlan, config: EvaluateConfig, log: Log) -> dict:
    examples = eval_plan.data.eval
    started = time.monotonic()
    scores: dict[str, Any] = {"answers": None}
    metrics: dict[str, float] = {}
    if eval_plan.task != "language_modeling":
        token_ids = greedy_token_ids(
            model,
            eval_plan.tokenizer,
            [example.prompt for example in examples],
            max_new_tokens=eval_plan.max_new_tokens,
            batch_size=config.per_device_eval_batch_size,
        )
        answers = decode_answers(eval_plan.tokenizer, token_ids)
        scores["answers"], scores["token_ids"] = answers, token_ids
        answer_scores = score_answers(eval_plan, answers, config.extra_metrics or ())
        metrics.update(answer_scores.pop("metrics"))
        scores.update(answer_scores)
    metrics.update(
        language_modeling_metrics(
            model,
            eval_plan.tokenizer,
            examples,
            max_seq_len=config.max_seq_len,
            batch_size=config.per_device_eval_batch_size,
        )
    )
    scores["metrics"] = metrics
    scores["seconds"] = round(time.monotonic() - started, 2)
    shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items())
    log(f"{name}: {shown} ({len(examples)} rows, {scores['seconds']:.1f} s)")
    return scores


def score_answers(eval_plan: EvalPlan, answers: list[str], extra_metrics=()) -> dict:
    """Metrics of one model's answers to the plan's eval prompts: {"metrics": {...}} plus,
    for classification, predicted_labels, per_class, confusion_matrix and unrecognised."""
    if eval_plan.task == "classification":
        predicted = [label_of(answer, eval_plan.labels) for answer in answers]
        scored = classification_metrics(predicted, eval_plan.data.eval_labels, eval_plan.labels)
        scored["metrics"].update(text_metrics(extra_metrics, answers, eval_plan.references))
        return {"predicted_labels": predicted, **scored}
    return {"metrics": generation_metrics(answers, eval_plan.references, extra_metrics)}


def _store_answers(
    path: Path, eval_plan: EvalPlan, config: EvaluateConfig, device: str, scores: dict
) -> None:
    """The fine-tuned model's token ids, keyed as ``answers.reusable`` checks them."""
    if scores.get("token_ids") is None:
        return  # a language-modelling run: no answers
    stored_answers.write(
        path,
        eval_set=eval_plan.fingerprint,
        weights=scores["weights"],
        generation=stored_answers.generation(
            eval_plan.tokenizer,
            [example.prompt for example in eval_plan.data.eval],
            max_new_tokens=eval_plan.max_new_tokens,
            batch_size=config.per_device_eval_batch_size,
            device=device,
        ),
        token_ids=scores["token_ids"],
    )


def _judge(
    config: EvaluateConfig, eval_plan: EvalPlan, scored: dict[str, dict]
) -> list[GateRecord]:
    history = eval_plan.history or {}
    fine_tuned = scored["fine_tuned"]["metrics"]
    base = scored.get("base", {}).get("metrics", {})
    eval_losses = [point["eval_loss"] for point in history.get("eval_loss_history", [])]
    return [
        gates.loss_gap(
            history.get("final_train_loss"),
            history.get("final_eval_loss"),
            config.max_loss_gap,
            config.min_loss_gap_difference,
        ),
        gates.rising_eval_loss(eval_losses, config.rising_eval_loss_window),
        *gates.metric_bounds(
            fine_tuned, config.metric_floors(eval_plan.task), config.max_metric or {}
        ),
        gates.improvement(
            base.get(eval_plan.primary),
            fine_tuned[eval_plan.primary],
            eval_plan.primary,
            config.min_improvement,
            lower_is_better=eval_plan.primary in LOWER_IS_BETTER,
        ),
    ]


def _summary(
    config: EvaluateConfig,
    eval_plan: EvalPlan,
    scored: dict[str, dict],
    records: list[GateRecord],
    samples: list[dict],
) -> dict:
    models = {}
    for name, scores in scored.items():
        entry = {
            key: value
            for key, value in scores.items()
            if key not in ("answers", "token_ids", "weights", "predicted_labels")
        }
        entry["model"] = eval_plan.base.name
        if name == "fine_tuned":
            entry["adapter"] = str(eval_plan.adapter) if eval_plan.adapter else None
            entry["model"] = (
                str(eval_plan.fine_tuned_model)
                if eval_plan.fine_tuned_model
                else eval_plan.base.name
            )
        models[name] = entry
    delta = {}
    if "base" in scored:
        delta = {
            key: value - scored["base"]["metrics"][key]
            for key, value in scored["fine_tuned"]["metrics"].items()
            if key in scored["base"]["metrics"]
        }
    trained_fingerprint = ((eval_plan.history or {}).get("dataset") or {}).get("fingerprint")
    return {
        "task": eval_plan.task,
        "primary_metric": eval_plan.primary,
        "lower_is_better": sorted(LOWER_IS_BETTER),
        "labels": eval_plan.labels,
        "eval_rows": len(eval_plan.data.eval),
        "max_new_tokens": eval_plan.max_new_tokens,
        "models": models,
        "delta": delta,
        "gates": [record.as_dict() for record in records],
        "passed": not gates.failed(records),
        "thresholds": config.model_dump(mode="json", include=set(GateThresholds.model_fields)),
        "data": {
            "fingerprint": eval_plan.data.fingerprint,
            "training_fingerprint": trained_fingerprint,
            "same_as_training": None
            if trained_fingerprint is None
            else trained_fingerprint == eval_plan.data.fingerprint,
        },
        "samples": samples,
        "run_path": str(config.run_path) if config.run_path else None,
        "config": config.model_dump(mode="json"),
    }


def _prediction_rows(eval_plan: EvalPlan, scored: dict[str, dict]) -> list[dict]:
    """One row per eval example: prompt, reference, label and each model's answer."""
    rows = []
    for index, example in enumerate(eval_plan.data.eval):
        row: dict[str, Any] = {
            "row": index,
            "prompt": example.prompt,
            "reference": eval_plan.references[index],
        }
        if eval_plan.data.eval_labels:
            row["label"] = eval_plan.data.eval_labels[index]
        for name, scores in scored.items():
            if scores.get("answers") is not None:
                row[f"{name}_answer"] = scores["answers"][index]
            if scores.get("predicted_labels") is not None:
                row[f"{name}_label"] = scores["predicted_labels"][index]
        rows.append(row)
    return rows
