"""A run's params turned into each stage's settings, checked before any work starts.

``prepare`` validates the params, confines every file they name to the data roots,
builds (and so validates) each stage's config, and writes ``plan.json`` into the run's
own folder. The stages then read nothing but their slice of the plan.

A hub id is accepted only where the deployment allows it (``locations.check_hub_allowed``)
and is pinned here to the commit it names now: ``plan["sources"]`` records it, the model
is passed on as ``owner/name@SHA`` and a dataset's sha as ``data_revision``, so every
stage loads that commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from slmops import model_store
from slmops.artifacts import atomic_write_json
from slmops.config import describe_validation_error
from slmops.data.config import DataConfig
from slmops.errors import ConfigError, ModelError
from slmops.evaluation.config import EvaluateConfig, GateThresholds, config_for_run
from slmops.export.targets import TARGETS
from slmops.layout import RunLayout
from slmops.models import is_hub_id, pin_hub_revision, split_revision
from slmops.pipeline import locations
from slmops.pipeline.params import PipelineParams, parse
from slmops.training.config import FinetuneConfig
from slmops.validation.suites import load_suite

# Gates each stage judges: the optimize stage judges the ONNX exports, evaluate the rest.
_OPTIMIZE_GATES = frozenset({"max_export_degradation"})
# Data settings that only the chat template reads.
_CHAT_FIELDS = frozenset({"input_field", "output_field", "system_prompt"})


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

    Every param that a stage config also has reaches that stage as it is (``_shared``);
    only what is derived is set here: paths confined to the data roots, the output
    folders in the run folder, and the data settings of the chosen template kind.
    """
    params = parse(conf)
    run_dir = Path(run_dir) if run_dir else locations.run_dir(artifacts_root, dag_id, run_id)
    run = RunLayout(run_dir)
    sources: dict[str, dict] = {}
    data = _data_settings(params, data_roots, sources)
    model = name_or_path(params.model_name_or_path, data_roots, "model_name_or_path")
    finetune = _checked(
        FinetuneConfig,
        {
            **_shared(params, FinetuneConfig, exclude=DataConfig.model_fields),
            **data,
            "model_name_or_path": _pinned(model, "model", "model_name_or_path", sources),
            "output_path": str(run.finetune.root),
            # training refuses data other than what the validate stage checked
            "validation_path": str(run.validation),
        },
    )
    gates = _checked(GateThresholds, _shared(params, GateThresholds))
    plan = {
        "dag_id": dag_id,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model_name": params.model_name,
        "params": params.model_dump(mode="json"),
        "sources": sources,
        "validation": {
            "data": data,
            "suite": _suite(params.suite, data_roots),
            "model_name_or_path": finetune["model_name_or_path"],
            "max_seq_len": params.max_seq_len,
            "output_path": str(run.validation),
        },
        "finetune": finetune,
        "evaluate": {
            "run_path": finetune["output_path"],
            "validation_path": str(run.validation),
            **{name: value for name, value in gates.items() if name not in _OPTIMIZE_GATES},
            "min_primary_metric": params.min_primary_metric,
        },
        "optimize": {
            "run_path": finetune["output_path"],
            **{name: value for name, value in gates.items() if name in _OPTIMIZE_GATES},
            "benchmark": params.benchmark,
        },
        "cpu_targets": [name for name in params.targets if TARGETS[name].device == "cpu"],
        "gpu_targets": [name for name in params.targets if TARGETS[name].device == "gpu"],
        "train_on_gpu": params.device == "gpu",
        "report_dir": str(run.report),
        "models_root": str(locations.models_root(artifacts_root)),
    }
    if write:
        write_plan(plan)
    return plan


def _shared(params: PipelineParams, model: type[BaseModel], exclude: Iterable[str] = ()) -> dict:
    """The params that ``model`` (a stage config) has too, by name, as they are."""
    left_out = set(exclude)
    return {
        name: getattr(params, name)
        for name in type(params).model_fields
        if name in model.model_fields and name not in left_out
    }


def write_plan(plan: dict) -> None:
    """RUN_DIR/plan.json. DAGs that plan several pipelines at once (HPO trials, adapters)
    check them all with ``prepare(..., write=False)`` first, so a bad one writes nothing."""
    atomic_write_json(RunLayout(Path(plan["run_dir"])).plan, plan)


def read_plan(run_dir: Path) -> dict:
    path = RunLayout(Path(run_dir)).plan
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


def _data_settings(params: PipelineParams, roots: list[Path], sources: dict) -> dict:
    """The data params as DataConfig takes them: files confined to the roots (which the
    readers check again for every file they open), a hub dataset pinned to a commit, and
    only the settings of the chosen template kind (the chat fields only for chat)."""
    kind = params.template_kind
    data = _shared(params, DataConfig, exclude=() if kind == "chat" else _CHAT_FIELDS)
    data_name = name_or_path(params.data_name, roots, "data_name")
    if data_name is not None and is_hub_id(split_revision(data_name)[0]):
        data_name, revision = _pinned(data_name, "dataset", "data_name", sources).split("@")
        data["data_revision"] = revision
    data.update(
        data_roots=[str(root) for root in roots],
        data_name=data_name,
        data_files=[
            str(path)
            for path in locations.confine_all(params.data_files or [], roots, "data_files")
        ]
        or None,
        label_field=params.label_field or None,
        text_template=params.text_template if kind == "template" else None,
        text_field=params.text_field if kind == "text" else None,
        use_chat_template=kind == "chat",
    )
    if kind == "chat":
        data["system_prompt"] = params.system_prompt or None
    return _checked(DataConfig, data)


def name_or_path(value: str | None, roots: list[Path], param: str) -> str | None:
    """A bundled name; a file or folder under a data root (confined); or a hub id
    (``owner/name``, optionally ``@REVISION``) where the deployment allows hub ids.
    Anything else is refused: a relative path is looked up in the data roots only, never
    later against a worker's working directory."""
    if value is None or value in model_store.BUNDLED_MODELS:
        return value
    path = Path(value).expanduser()
    looks_like_path = path.is_absolute() or value.startswith((".", "~"))
    if looks_like_path or any((root / path).exists() for root in roots):
        return str(locations.confine(value, roots, param))
    repo_id, _ = split_revision(value)
    if is_hub_id(repo_id):
        locations.check_hub_allowed(repo_id, param)
        return value
    allowed = ", ".join(str(root) for root in roots) or "(none configured)"
    raise ConfigError(
        f"param {param}: {value} is neither a file or folder under the data roots "
        f"({allowed}) nor a hub id (owner/name); check the spelling, or put it in a data root"
    )


def _pinned(value: str | None, repo_type: str, param: str, sources: dict) -> str | None:
    """A hub id as ``owner/name@SHA``, the commit its revision (default: main) names now,
    recorded in ``sources``; any other value as it is."""
    if value is None:
        return None
    repo_id, revision = split_revision(value)
    if not is_hub_id(repo_id):  # a bundled name or a confined (absolute) path
        return value
    try:
        sha = pin_hub_revision(repo_id, repo_type=repo_type, revision=revision)
    except ModelError as exc:
        raise ConfigError(f"param {param}: {exc}") from None
    sources[repo_type] = {"id": repo_id, "revision": sha}
    return f"{repo_id}@{sha}"


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
