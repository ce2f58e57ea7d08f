"""Several LoRA adapters of one base, trained side by side and shipped as one ONNX model:
the run's settings and each adapter's plan.

``plan_adapters`` gives each adapter (its own data, template and suite; the training
settings shared) a pipeline plan in RUN_DIR/adapters/NAME/, all checked before any is
written, and the multi-adapter plan in RUN_DIR/multi_adapter/plan.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slmops.artifacts import atomic_write_json
from slmops.config import describe_validation_error
from slmops.errors import ConfigError
from slmops.layout import RunLayout
from slmops.pipeline import locations
from slmops.pipeline.params import TargetName, parse, split_settings
from slmops.pipeline.plan import prepare, write_plan


class AdapterSpec(BaseModel):
    """One adapter: its name and its data; everything else is the shared params'."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="adapter name")
    data_files: list[str] = Field(min_length=1, description="its data, under the data roots")
    template_kind: Literal["chat", "template", "text"] | None = None
    text_template: str | None = None
    text_field: str | None = None
    input_field: str | None = None
    output_field: str | None = None
    label_field: str | None = Field(None, description="class label column, or none")
    system_prompt: str | None = None
    suite: str | None = None


class MultiAdapterSettings(BaseModel):
    """The multi-adapter DAG's own params, beside the shared pipeline params."""

    model_config = ConfigDict(extra="forbid")

    adapters: list[dict[str, Any]] = Field(
        min_length=2,
        description="two or more adapters, each {name, data_files, and optionally "
        "template_kind, text_template, text_field, input_field, output_field, label_field, "
        "system_prompt, suite}",
    )
    multi_target: TargetName = Field(  # type: ignore[valid-type]
        "cpu-int4", description="the ONNX target of the shared base (gpu-int4 is not supported)"
    )


def split_conf(conf: dict) -> tuple[MultiAdapterSettings, list[AdapterSpec], dict]:
    settings, shared = split_settings(conf, MultiAdapterSettings)
    specs = []
    for index, entry in enumerate(settings.adapters):
        try:
            specs.append(AdapterSpec.model_validate(entry))
        except ValidationError as exc:
            message = describe_validation_error(exc, source=None, flag_style=False)
            raise ConfigError(f"invalid params: adapters.{index}: {message}") from None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"invalid params: adapters: names repeat ({', '.join(names)})")
    return settings, specs, shared


def plan_adapters(
    conf: dict,
    *,
    dag_id: str,
    run_id: str,
    artifacts_root: Path,
    data_roots: list[Path],
) -> dict:
    """Each adapter's plan, all checked before any training; written to RUN/multi_adapter/."""
    settings, specs, shared = split_conf(conf)
    # The shared params as the first adapter completes them: with neutral defaults the
    # adapters may bring the data columns and templates the shared form does not name.
    params = parse({**shared, **_own_settings(specs[0])})
    if params.method != "lora":
        raise ConfigError(
            f"param method: {params.method} cannot share a base as switchable adapters; "
            "use lora (DoRA, QLoRA and full fine-tuning are not supported here)"
        )
    run_dir = locations.run_dir(artifacts_root, dag_id, run_id)
    layout = RunLayout(run_dir)
    adapters, planned = [], []
    for spec in specs:
        own = _own_settings(spec)
        plan = prepare(
            {
                **shared,
                **own,
                "model_name": f"{params.model_name}-{spec.name}"[:64],
                "targets": [settings.multi_target],
            },
            dag_id=dag_id,
            run_id=run_id,
            artifacts_root=artifacts_root,
            data_roots=data_roots,
            run_dir=layout.adapter(spec.name).root,
            write=False,
        )
        planned.append(plan)
        adapters.append(
            {
                "name": spec.name,
                "run_dir": plan["run_dir"],
                "data_files": plan["validation"]["data"]["data_files"],
                "validation": plan["validation"],
                "finetune": {**plan["finetune"], "merge_adapter": False},
                "evaluate": plan["evaluate"],
            }
        )
    multi = {
        "dag_id": dag_id,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model_name": params.model_name,
        "base_model": adapters[0]["finetune"]["model_name_or_path"],
        "target": settings.multi_target,
        "params": params.model_dump(mode="json"),
        "adapters": adapters,
        "report_dir": str(layout.report),
        "models_root": str(locations.models_root(artifacts_root)),
    }
    for plan in planned:  # every adapter checked: now write them
        write_plan(plan)
    atomic_write_json(layout.multi_plan, multi)
    return {
        **multi,
        **{stage: [a[stage] for a in adapters] for stage in ("validation", "finetune", "evaluate")},
    }


def _own_settings(spec: AdapterSpec) -> dict:
    """What an adapter sets for itself; an unset label_field means none (generation)."""
    own = spec.model_dump(exclude={"name"}, exclude_none=True)
    if "label_field" not in spec.model_fields_set:
        own["label_field"] = None
    return own


def read_multi_plan(run_dir: Path) -> dict:
    path = RunLayout(run_dir).multi_plan
    if not path.is_file():
        raise ConfigError(f"{path}: no multi-adapter plan; the plan_adapters task writes it")
    return json.loads(path.read_text(encoding="utf-8"))
