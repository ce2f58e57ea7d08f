"""A run's params turned into each stage's settings, checked before any work starts.

``prepare`` validates the params, confines every file they name to the data roots,
builds (and so validates) each stage's config, and writes ``plan.json`` into the run's
own folder. The stages then read nothing but their slice of the plan.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slmops import model_store
from slmops.artifacts import atomic_write_json
from slmops.config import describe_validation_error
from slmops.data.config import DataConfig
from slmops.errors import ConfigError
from slmops.evaluation.config import EvaluateConfig, GateThresholds, config_for_run
from slmops.export.targets import TARGETS
from slmops.layout import FINETUNE_DIR, PLAN_NAME, REPORT_DIR, VALIDATION_DIR
from slmops.pipeline import locations
from slmops.pipeline.params import PipelineParams, parse
from slmops.training.config import FinetuneConfig
from slmops.validation.suites import load_suite


def prepare(
    conf: dict,
    *,
    dag_id: str,
    run_id: str,
    artifacts_root: Path,
    data_roots: list[Path],
    run_dir: Path | None = None,
    write: bool = True,
) -> dict:
    """The run's plan (a small JSON-able dict), also written to RUN_DIR/plan.json.

    ``run_dir`` defaults to the run's own folder under the artifacts root; a DAG that
    runs several pipelines in one run (HPO trials, one per adapter) gives each a subfolder
    and writes the plans with ``write_plan`` once all are checked.
    """
    params = parse(conf)
    run_dir = Path(run_dir) if run_dir else locations.run_dir(artifacts_root, dag_id, run_id)
    data = _data_settings(params, data_roots)
    finetune = _checked(
        FinetuneConfig,
        {
            **data,
            "model_name_or_path": name_or_path(
                params.model_name_or_path, data_roots, "model_name_or_path"
            ),
            "output_path": str(run_dir / FINETUNE_DIR),
            "method": params.method,
            "lora_r": params.lora_r,
            "lora_alpha": params.lora_alpha,
            "lora_dropout": params.lora_dropout,
            "target_modules": params.target_modules,
            "modules_to_save": params.modules_to_save,
            "max_steps": params.max_steps,
            "per_device_train_batch_size": params.per_device_train_batch_size,
            "gradient_accumulation_steps": params.gradient_accumulation_steps,
            "learning_rate": params.learning_rate,
            "weight_decay": params.weight_decay,
            "max_seq_len": params.max_seq_len,
            "eval_steps": params.eval_steps,
            "early_stopping_patience": params.early_stopping_patience,
            "device": params.device,
        },
    )
    gates = _checked(
        GateThresholds,
        {
            "min_improvement": params.min_improvement,
            "max_loss_gap": params.max_loss_gap,
            "max_export_degradation": params.max_export_degradation,
        },
    )
    plan = {
        "dag_id": dag_id,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model_name": params.model_name,
        "params": params.model_dump(mode="json"),
        "validation": {
            "data": data,
            "suite": _suite(params.suite, data_roots),
            "model_name_or_path": finetune["model_name_or_path"],
            "max_seq_len": params.max_seq_len,
            "output_path": str(run_dir / VALIDATION_DIR),
        },
        "finetune": finetune,
        "evaluate": {
            "run_path": finetune["output_path"],
            "validation_path": str(run_dir / VALIDATION_DIR),
            "min_improvement": gates["min_improvement"],
            "max_loss_gap": gates["max_loss_gap"],
            "min_primary_metric": params.min_primary_metric,
        },
        "optimize": {
            "run_path": finetune["output_path"],
            "max_export_degradation": gates["max_export_degradation"],
            "benchmark": params.benchmark,
        },
        "cpu_targets": [name for name in params.targets if TARGETS[name].device == "cpu"],
        "gpu_targets": [name for name in params.targets if TARGETS[name].device == "gpu"],
        "train_on_gpu": params.device == "gpu",
        "report_dir": str(run_dir / REPORT_DIR),
        "models_root": str(locations.models_root(artifacts_root)),
    }
    if write:
        write_plan(plan)
    return plan


def write_plan(plan: dict) -> None:
    """RUN_DIR/plan.json. DAGs that plan several pipelines at once (HPO trials, adapters)
    check them all with ``prepare(..., write=False)`` first, so a bad one writes nothing."""
    atomic_write_json(Path(plan["run_dir"]) / PLAN_NAME, plan)


def read_plan(run_dir: Path) -> dict:
    path = Path(run_dir) / PLAN_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: no plan; the prepare task writes it first")
    return json.loads(path.read_text(encoding="utf-8"))


def evaluate_config(settings: dict) -> EvaluateConfig:
    """The evaluate stage's config: the finished run's settings, the plan's gates, and
    ``min_primary_metric`` as the floor of whichever metric is primary for the task."""
    settings = dict(settings)
    floor = settings.pop("min_primary_metric", None)
    config = config_for_run(Path(settings.pop("run_path")), **settings)
    if floor is None:
        return config
    return config.model_copy(update={"min_metric": {config.resolved_primary(): floor}})


def _data_settings(params: PipelineParams, roots: list[Path]) -> dict:
    kind = params.template_kind
    data = {
        "data_name": name_or_path(params.data_name, roots, "data_name"),
        "data_files": [
            str(locations.confine(name, roots, "data_files")) for name in params.data_files or []
        ]
        or None,
        "train_split": params.train_split,
        "eval_split": params.eval_split,
        "eval_fraction": params.eval_fraction,
        "label_field": params.label_field or None,
        "text_template": params.text_template if kind == "template" else None,
        "text_field": params.text_field if kind == "text" else None,
        "use_chat_template": kind == "chat",
    }
    if kind == "chat":
        data.update(
            input_field=params.input_field,
            output_field=params.output_field,
            system_prompt=params.system_prompt or None,
        )
    return _checked(DataConfig, data)


def name_or_path(value: str | None, roots: list[Path], param: str) -> str | None:
    """Bundled names and hub ids pass; anything that is a path must lie in a data root."""
    if value is None or value in model_store.BUNDLED_MODELS:
        return value
    path = Path(value).expanduser()
    looks_like_path = path.is_absolute() or value.startswith((".", "~")) or path.exists()
    under_a_root = any((root / path).exists() for root in roots)
    if looks_like_path or under_a_root:
        return str(locations.confine(value, roots, param))
    return value


def _suite(value: str, roots: list[Path]) -> str:
    """A shipped suite's name, or the confined path of a suite YAML; checked by loading."""
    if value.endswith((".yaml", ".yml")) or "/" in value:
        value = str(locations.confine(value, roots, "suite"))
    try:
        load_suite(value)
    except ConfigError as exc:
        raise ConfigError(f"param suite: {exc}") from None
    return value


def _checked(model: type, settings: dict[str, Any]) -> dict:
    """``settings`` validated by a stage's config model, as the JSON the stage will read."""
    try:
        checked = model.model_validate(settings)
    except ValidationError as exc:
        message = describe_validation_error(exc, source=None, flag_style=False)
        raise ConfigError(f"invalid params: {message}") from None
    fields = set(settings)
    return {key: value for key, value in checked.model_dump(mode="json").items() if key in fields}
