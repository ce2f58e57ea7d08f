"""Settings of ``slmops evaluate``: which models, which data, which metrics, which gates.

``GateThresholds`` holds every gate's threshold with its documented default; the DAG's
trigger form and the CLI flags are built from these fields. ``config_for_run`` fills the
data and model settings from a finished ``slmops finetune`` run, so evaluating a run needs
only its path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from slmops.config import SettingsModel, split_commas
from slmops.data.config import DataConfig
from slmops.errors import ConfigError
from slmops.layout import EVALUATION_FOLDER, METRICS_NAME, TrainingLayout

Task = Literal["auto", "classification", "generation", "language_modeling"]

# Metrics each task reports; the primary one is first. Lower is better for the losses.
TASK_METRICS = {
    "classification": ("accuracy", "macro_f1", "macro_precision", "macro_recall"),
    "generation": ("rougeL", "rouge1", "rouge2", "bleu", "exact_match"),
    "language_modeling": (),
}
LOSS_METRICS = ("eval_loss", "perplexity")
LOWER_IS_BETTER = frozenset(LOSS_METRICS)
DEFAULT_MIN_METRIC = {"classification": {"accuracy": 0.8}}


def parse_thresholds(value: Any) -> Any:
    """``"accuracy=0.8, macro_f1=0.7"`` (a flag or form field) -> ``{"accuracy": 0.8, ...}``."""
    if not isinstance(value, str):
        return value
    thresholds: dict[str, float] = {}
    for item in split_commas(value) or []:
        name, sep, number = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not METRIC=VALUE, e.g. accuracy=0.8")
        try:
            thresholds[name.strip()] = float(number)
        except ValueError:
            raise ValueError(f"{item!r}: {number!r} is not a number") from None
    return thresholds


class GateThresholds(SettingsModel):
    """Thresholds of the gates that stop a bad model before it is exported."""

    model_config = ConfigDict(extra="forbid")

    max_loss_gap: float = Field(
        2.0,
        gt=1.0,
        description="overfitting: fail when the final eval loss / final train loss ratio is "
        "above this and the two differ by more than --min_loss_gap_difference",
    )
    min_loss_gap_difference: float = Field(
        0.1,
        ge=0.0,
        description="eval minus train loss (nats) below which the loss gap passes whatever its "
        "ratio: a ratio of two near-zero losses says nothing",
    )
    rising_eval_loss_window: int = Field(
        3,
        ge=0,
        le=100,
        description="overfitting: fail when the eval loss rose at each of the last K "
        "evaluations (0 turns the gate off)",
    )
    min_metric: dict[str, float] | None = Field(
        None,
        description="lowest acceptable fine-tuned scores, e.g. accuracy=0.8,macro_f1=0.7 "
        "(default: accuracy=0.8 for classification, none for other tasks)",
    )
    max_metric: dict[str, float] | None = Field(
        None,
        description="highest acceptable values of lower-is-better metrics, e.g. perplexity=20",
    )
    min_improvement: float = Field(
        0.01,
        description="the fine-tuned model's primary metric must beat the base model's by at "
        "least this, in the metric's units (for eval_loss, a decrease)",
    )
    max_export_degradation: float = Field(
        0.02,
        ge=0.0,
        description="an exported (ONNX) model may score at most this much below the PyTorch "
        "fine-tuned model on the primary metric",
    )
    fail_on_gates: bool = Field(
        True, description="stop with an error when a gate fails (false: only report it)"
    )

    _parse_thresholds = field_validator("min_metric", "max_metric", mode="before")(parse_thresholds)

    def metric_floors(self, task: str) -> dict[str, float]:
        if self.min_metric is not None:
            return self.min_metric
        return DEFAULT_MIN_METRIC.get(task, {})


class EvaluateConfig(DataConfig, GateThresholds):
    """Everything ``slmops evaluate`` needs (data settings as ``slmops finetune``)."""

    run_path: Path | None = Field(
        None,
        description="a finished `slmops finetune` output path: its model, data settings, "
        "adapter and loss history are used (flags given too win)",
    )
    model_name_or_path: str | None = Field(
        None, description="base model (default: the run's); bundled name, local folder or hub id"
    )
    adapter_path: Path | None = Field(
        None,
        description="adapter applied to the base for the fine-tuned model (default: the run's "
        "adapter/, or merged/ for full fine-tuning)",
    )
    trust_remote_code: bool = Field(False, description="run Python code shipped with the model")
    output_path: Path | None = Field(
        None,
        description="folder for evaluation.json, gates.json, predictions and the report "
        "(default: RUN_PATH/evaluation)",
    )
    task: Task = Field(
        "auto",
        description="auto: classification when --label_field is set, language_modeling for "
        "--text_field data, generation otherwise",
    )
    primary_metric: str | None = Field(
        None,
        description="metric the improvement and export gates compare (default: accuracy, "
        "rougeL or eval_loss by task)",
    )
    extra_metrics: list[str] | None = Field(
        None,
        description="more `evaluate` metrics on the answers, comma-separated: shipped names, "
        "hub names (need a network) or paths of metric scripts",
    )
    compare_base: bool = Field(True, description="also score the base model, for the delta")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="longest generated answer (default: 1.5x the longest reference + 8, "
        "at least 16)",
    )
    per_device_eval_batch_size: int = Field(16, ge=1, le=4096, description="rows per batch")
    max_seq_len: int = Field(
        1024, ge=8, le=131072, description="token budget of an example for the eval loss"
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="where to run the models (auto: a GPU when one is visible)"
    )
    validation_path: Path | None = Field(
        None, description="validation.json of `slmops validate` (or its folder) for the report"
    )
    sample_rows: int = Field(12, ge=0, le=1000, description="answers shown in the report")

    _split_metrics = field_validator("extra_metrics", mode="before")(split_commas)

    @model_validator(mode="after")
    def _check_sources(self) -> EvaluateConfig:
        if self.run_path is None and self.model_name_or_path is None:
            raise ValueError("give run_path (a fine-tuning run) or model_name_or_path")
        if self.run_path is None and self.output_path is None:
            raise ValueError("give output_path (there is no run_path to put the results in)")
        return self

    @property
    def output_dir(self) -> Path:
        return self.output_path or Path(self.run_path) / EVALUATION_FOLDER

    def resolved_primary(self) -> str:
        """The metric the improvement and export gates compare."""
        return self.primary_metric or (TASK_METRICS[self.resolved_task()] or LOSS_METRICS)[0]

    def resolved_task(self) -> str:
        """The task ``auto`` stands for, refusing tasks the data cannot support."""
        if self.task == "auto":
            if self.text_field is not None:
                return "language_modeling"
            return "classification" if self.label_field else "generation"
        if self.task == "classification" and not self.label_field:
            raise ConfigError("task classification needs --label_field (the class column)")
        if self.task in ("classification", "generation") and self.text_field is not None:
            raise ConfigError(
                f"task {self.task} needs prompts and answers; --text_field rows are whole "
                "texts (use --text_template with a completion placeholder, or task "
                "language_modeling)"
            )
        return self.task


_SOURCE_KEYS = ("data_name", "data_files")
_FORMAT_KEYS = ("text_field", "text_template", "use_chat_template")


def read_run_metrics(run_path: Path) -> dict:
    """A finished fine-tuning run's training_metrics.json (its history and settings)."""
    metrics_file = TrainingLayout(run_path).metrics
    if not metrics_file.is_file():
        raise ConfigError(
            f"run_path {run_path}: no {METRICS_NAME}, so this is not a finished "
            "`slmops finetune` run (finish or resume the run first, or pass "
            "--model_name_or_path and --adapter_path with the data flags)"
        )
    return json.loads(metrics_file.read_text(encoding="utf-8"))


def run_settings(run_path: Path) -> dict:
    """The settings a finished fine-tuning run was trained with."""
    return read_run_metrics(run_path)["config"]


def defaults_from_run(run_path: Path, given: dict) -> dict:
    """The run's model and data settings, minus those that ``given`` replaces.

    Giving another data source (``data_files`` for ``data_name``) or another formatting
    kind drops the run's, since each pair admits only one.
    """
    trained = run_settings(run_path)
    keep = set(DataConfig.model_fields) | {"model_name_or_path", "trust_remote_code", "max_seq_len"}
    defaults = {key: value for key, value in trained.items() if key in keep}
    for group in (_SOURCE_KEYS, _FORMAT_KEYS):
        if any(given.get(key) not in (None, False) for key in group):
            for key in group:
                defaults.pop(key, None)
    return defaults


def config_for_run(run_path: Path, **settings: Any) -> EvaluateConfig:
    """An ``EvaluateConfig`` for a finished run, with ``settings`` overriding the run's."""
    defaults = defaults_from_run(run_path, settings)
    return EvaluateConfig.model_validate({**defaults, **settings, "run_path": run_path})
