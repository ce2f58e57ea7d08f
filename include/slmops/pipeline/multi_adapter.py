"""Several LoRA adapters of one base, trained side by side and shipped as one ONNX model.

``plan_adapters`` gives each adapter (its own data, template and suite; the training
settings shared) a pipeline plan in RUN_DIR/adapters/NAME/. Once each is validated,
trained and evaluated, ``build`` exports the shared base with one ``.onnx_adapter`` file
per adapter (``slmops generate-adapter``'s format) into RUN_DIR/multi_adapter/TARGET/
and scores every adapter through that shared base on its own eval rows.
The report and the published version show each adapter's metrics side by side.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.config import describe_validation_error
from slmops.errors import ConfigError
from slmops.layout import (
    ADAPTERS_DIR,
    EVALUATION_FOLDER,
    EVALUATION_NAME,
    FINETUNE_DIR,
    MULTI_DIR,
    PLAN_NAME,
    REPORT_DIR,
    SCORES_NAME,
)
from slmops.pipeline import locations
from slmops.pipeline.params import TargetName, parse, split_settings
from slmops.pipeline.plan import evaluate_config, prepare, write_plan
from slmops.progress import Log, no_log
from slmops.report import Document, cell, verdict


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
    params = parse({**shared, "data_files": specs[0].data_files})
    if params.method != "lora":
        raise ConfigError(
            f"param method: {params.method} cannot share a base as switchable adapters; "
            "use lora (DoRA, QLoRA and full fine-tuning are not supported here)"
        )
    run_dir = locations.run_dir(artifacts_root, dag_id, run_id)
    adapters, planned = [], []
    for spec in specs:
        own = spec.model_dump(exclude={"name"}, exclude_none=True)
        if "label_field" not in spec.model_fields_set:
            own["label_field"] = None
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
            run_dir=run_dir / ADAPTERS_DIR / spec.name,
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
        "report_dir": str(run_dir / REPORT_DIR),
        "models_root": str(locations.models_root(artifacts_root)),
    }
    for plan in planned:  # every adapter checked: now write them
        write_plan(plan)
    atomic_write_json(run_dir / MULTI_DIR / PLAN_NAME, multi)
    return {
        **multi,
        **{stage: [a[stage] for a in adapters] for stage in ("validation", "finetune", "evaluate")},
    }


def is_multi_run(run_dir: Path) -> bool:
    return (Path(run_dir) / MULTI_DIR / PLAN_NAME).is_file()


def read_multi_plan(run_dir: Path) -> dict:
    path = Path(run_dir) / MULTI_DIR / PLAN_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: no multi-adapter plan; the plan_adapters task writes it")
    return json.loads(path.read_text(encoding="utf-8"))


def build(run_dir: Path, *, log: Log = no_log) -> dict:
    """Export the shared base with every adapter, then score each adapter through it."""
    from slmops.evaluation.run import plan as evaluation_plan
    from slmops.export.multi_adapter import generate_adapters, open_multi_adapter
    from slmops.export.parity import score_exported

    run_dir = Path(run_dir)
    multi = read_multi_plan(run_dir)
    folder = run_dir / MULTI_DIR / multi["target"]
    names = [adapter["name"] for adapter in multi["adapters"]]
    started = time.monotonic()
    generate_adapters(
        multi["base_model"],
        [Path(adapter["run_dir"]) / FINETUNE_DIR / "adapter" for adapter in multi["adapters"]],
        folder,
        target=multi["target"],
        adapter_names=names,
        log=log,
    )
    runner = open_multi_adapter(folder)
    scores: dict[str, Any] = {}
    try:
        for adapter in multi["adapters"]:
            eval_plan = evaluation_plan(evaluate_config(adapter["evaluate"]), log)
            own = score_exported(runner, eval_plan, adapter=adapter["name"])
            # The other adapters answer the same prompts: they must not answer alike.
            others = {
                other: score_exported(runner, eval_plan, adapter=other)["answers"]
                for other in names
                if other != adapter["name"]
            }
            scores[adapter["name"]] = {
                "primary_metric": eval_plan.primary,
                "metric": own["metrics"].get(eval_plan.primary),
                "metrics": own["metrics"],
                "eval_rows": len(eval_plan.data.eval),
                "samples": [
                    {
                        "prompt": example.prompt,
                        adapter["name"]: own["answers"][i],
                        **{other: answers[i] for other, answers in others.items()},
                    }
                    for i, example in enumerate(eval_plan.data.eval[:4])
                ],
                "same_answer_as": {
                    other: round(
                        sum(a == b for a, b in zip(own["answers"], answers, strict=True))
                        / max(len(answers), 1),
                        4,
                    )
                    for other, answers in others.items()
                },
            }
            log(
                f"adapter {adapter['name']} through the shared {multi['target']} base: "
                f"{eval_plan.primary} {cell(scores[adapter['name']]['metric'])}"
            )
    finally:
        del runner
        gc.collect()
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    record = {
        "target": multi["target"],
        "path": str(folder),
        "size_mb": round(size, 1),
        "adapters": scores,
        "seconds": round(time.monotonic() - started, 1),
    }
    atomic_write_json(run_dir / MULTI_DIR / SCORES_NAME, record)
    return record


def collect(run_dir: Path) -> dict:
    """The multi-adapter run's outcome: each adapter's stages and metrics."""
    run_dir = Path(run_dir)
    multi = read_multi_plan(run_dir)
    scores_path = run_dir / MULTI_DIR / SCORES_NAME
    scores = read_json_if_any(scores_path)
    adapters = {}
    for adapter in multi["adapters"]:
        evaluation_path = Path(adapter["run_dir"]) / FINETUNE_DIR / EVALUATION_FOLDER
        evaluation_file = evaluation_path / EVALUATION_NAME
        evaluation = read_json_if_any(evaluation_file)
        primary = evaluation["primary_metric"] if evaluation else None
        models = (evaluation or {}).get("models", {})
        through = (scores or {}).get("adapters", {}).get(adapter["name"], {})
        adapters[adapter["name"]] = {
            "data_files": adapter["data_files"],
            "evaluation": "no result" if evaluation is None else verdict(evaluation["passed"]),
            "primary_metric": primary,
            "base": models.get("base", {}).get("metrics", {}).get(primary),
            "fine_tuned": models.get("fine_tuned", {}).get("metrics", {}).get(primary),
            "shared_base": through.get("metric"),
            "same_answer_as": through.get("same_answer_as"),
            "samples": through.get("samples", []),
        }
    stages = {f"evaluation[{name}]": entry["evaluation"] for name, entry in adapters.items()}
    stages[f"multi_adapter[{multi['target']}]"] = "no result" if scores is None else "PASS"
    version = Path(multi["models_root"]) / multi["model_name"] / "versions"
    published = version / locations.safe_name(multi["run_id"])
    return {
        "dag_id": multi["dag_id"],
        "run_id": multi["run_id"],
        "model_name": multi["model_name"],
        "run_dir": str(run_dir),
        "base_model": multi["base_model"],
        "passed": all(state == "PASS" for state in stages.values()),
        "stages": stages,
        "adapters": adapters,
        "multi_adapter": scores and {k: scores[k] for k in ("target", "path", "size_mb")},
        "published": str(published) if published.is_dir() else None,
    }


def document(summary: dict) -> Document:
    doc = Document(f"{summary['dag_id']} {summary['model_name']}: run {summary['run_id']}")
    doc.paragraph(
        f"Outcome: {verdict(summary['passed'])}. {len(summary['adapters'])} LoRA adapters of "
        f"{summary['base_model']}, switched per request on one shared ONNX base."
    )
    doc.table(["stage", "outcome"], list(summary["stages"].items()))
    doc.heading("Adapters through the shared base")
    rows = [
        [
            name,
            ", ".join(Path(path).name for path in entry["data_files"] or []),
            entry["primary_metric"],
            entry["base"],
            entry["fine_tuned"],
            entry["shared_base"],
        ]
        for name, entry in summary["adapters"].items()
    ]
    headers = ["adapter", "data", "metric", "base", "fine-tuned (PyTorch)", "shared ONNX base"]
    doc.table(headers, rows)
    if summary["multi_adapter"]:
        multi = summary["multi_adapter"]
        doc.paragraph(f"{multi['target']} base and adapters: {cell(multi['size_mb'])} MB.")
    for name, entry in summary["adapters"].items():
        if entry["samples"]:
            doc.heading(f"Sample answers: {name}'s eval rows")
            others = [other for other in summary["adapters"] if other != name]
            doc.table(
                ["prompt", name, *others],
                [
                    [row["prompt"][-80:], row[name], *(row.get(o) for o in others)]
                    for row in entry["samples"]
                ],
            )
    return doc


def write(run_dir: Path, output_dir: Path) -> dict:
    from slmops.pipeline.summary import write_report

    summary = collect(run_dir)
    write_report(summary, document(summary), output_dir)
    return summary


def publish(run_dir: Path, models_root: Path) -> dict:
    """MODELS_ROOT/NAME/versions/RUN/: the shared base and its adapters, the report and a
    manifest with each adapter's metrics; NAME/latest.json points at it."""
    from slmops.errors import PublishError
    from slmops.pipeline.publish import asset_uri, version_dir, write_version

    multi = read_multi_plan(run_dir)
    summary = collect(run_dir)
    if not summary["passed"]:
        failed = [stage for stage, state in summary["stages"].items() if state != "PASS"]
        raise PublishError(f"run {multi['run_id']} is not published: {', '.join(failed)} failed")
    version = locations.safe_name(multi["run_id"])
    final = version_dir(models_root, multi["model_name"], version)
    target = multi["target"]
    manifest = {
        "uri": asset_uri(multi["model_name"]),
        "name": multi["model_name"],
        "version": version,
        "path": str(final),
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dag_id": multi["dag_id"],
        "run_id": multi["run_id"],
        "base_model": multi["base_model"],
        "dataset_fingerprint": None,  # one per adapter, in each adapter's run folder
        "config": multi["params"],
        "metrics": {
            "adapters": {
                name: {key: entry[key] for key in ("primary_metric", "base", "shared_base")}
                for name, entry in summary["adapters"].items()
            }
        },
        "targets": {target: {"path": f"{MULTI_DIR}/{target}", **summary["multi_adapter"]}},
    }
    trees = {f"{MULTI_DIR}/{target}": run_dir / MULTI_DIR / target}
    write_version(final, trees, Path(multi["report_dir"]), manifest)
    return manifest
