"""The settings a stage of a DAG run may use: the ones its plan holds, nothing else.

In Airflow a stage's settings arrive as an XCom, and XComs can be written through the
REST API. So a stage called from a DAG run (``from_run``) takes its settings from the
plan that ``prepare`` wrote into the run's own folder: the XCom must name a path inside
that folder, and equal, key by key, the slice of the nearest plan.json above that path
(a single pipeline's plan at the run folder's top, an HPO trial's or an adapter's in its
sub-folder, the HPO search's in hpo/). And whatever any plan says, a DAG run never gets
the settings that run code or reach the network (``refuse_code_and_network``): those
stay with the command line, where the person running it decides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmops.errors import ConfigError
from slmops.layout import PLAN_NAME

# The key of each stage's slice that says where it works: it locates the plan.
ANCHORS = {
    "validation": "output_path",
    "finetune": "output_path",
    "evaluate": "run_path",
    "optimize": "run_path",
}
# What an input may change from the plan's value (missing: the field's default, on),
# because the stage then only does less: trials and adapters are never exported, so they
# need no merged copy of the weights; a gpu task on the test cluster's CUDA-less gpu
# worker runs on CPU (slmops_airflow.gpu_queue, a tests-only switch).
_MAY_CHANGE: dict[str, tuple[tuple[Any, ...], Any]] = {
    "merge_adapter": ((True, None), False),
    "device": (("gpu",), "cpu"),
}


def inside_run(value: Any, run_dir: Path, what: str, *, folder: str = "this run's folder") -> Path:
    """``value`` as a resolved absolute path that is ``run_dir`` or lies inside it
    (``folder`` says what ``run_dir`` is, for the error)."""
    run_dir = Path(run_dir).resolve()
    path = Path(value) if isinstance(value, str | Path) and "\x00" not in str(value) else None
    if path is None or not str(value) or not path.is_absolute():
        raise ConfigError(
            f"{what}: {value!r:.200} is not an absolute path inside {folder} {run_dir}"
        )
    resolved = path.resolve()
    if not resolved.is_relative_to(run_dir):
        raise ConfigError(
            f"{what}: {value} is not inside {folder} {run_dir}; a DAG run's tasks read and "
            "write only where its plan says, whatever their input claims"
        )
    return resolved


def planned_settings(settings: Any, stage: str, *, run_dir: Path) -> tuple[dict, dict]:
    """(the plan's slice for ``stage``, the whole plan) once ``settings`` (an XCom) is
    found to equal that slice; a mismatch is a ConfigError naming the stage and key."""
    if not isinstance(settings, dict):
        raise ConfigError(
            f"{stage} settings: expected the plan's {stage} slice, got {settings!r:.200}"
        )
    anchor = ANCHORS[stage]
    where = inside_run(settings.get(anchor), run_dir, f"{stage} settings: {anchor}")
    plan_file = _nearest_plan(where, Path(run_dir).resolve())
    plan = json.loads(plan_file.read_text(encoding="utf-8"))
    planned = plan.get(stage)
    if not isinstance(planned, dict):
        raise ConfigError(f"{stage} settings: {plan_file} has no {stage} slice")
    for key in sorted(set(settings) | set(planned)):
        given, expected = settings.get(key, _MISSING), planned.get(key, _MISSING)
        if given == expected or _narrower(key, given, expected):
            continue
        raise ConfigError(
            f"{stage} settings: {key} is {_shown(given)} in the task's input but "
            f"{_shown(expected)} in the run's plan {plan_file}; a stage of a DAG run takes "
            "its settings from the plan that prepare wrote (change them in the trigger form)"
        )
    narrowed = {key: settings[key] for key in _MAY_CHANGE if key in settings}
    return {**planned, **narrowed}, plan


def planned_trial(trial: Any, *, run_dir: Path) -> dict:
    """The HPO trial of this run's search plan (hpo/plan.json) that ``trial`` (an XCom)
    is, once found equal to it; its settings then pass ``refuse_code_and_network``."""
    from slmops.layout import RunLayout

    plan_file = RunLayout(Path(run_dir).resolve()).hpo_plan
    if not plan_file.is_file():
        raise ConfigError(f"{plan_file}: no search plan in this run's folder (plan_trials)")
    index = trial.get("index") if isinstance(trial, dict) else None
    trials = json.loads(plan_file.read_text(encoding="utf-8"))["trials"]
    planned = next((entry for entry in trials if entry.get("index") == index), None)
    if planned is None:
        raise ConfigError(f"trial settings: no trial {index!r:.40} in the run's plan {plan_file}")
    for key in sorted(set(trial) | set(planned)):
        given, expected = trial.get(key, _MISSING), planned.get(key, _MISSING)
        if given != expected:
            raise ConfigError(
                f"trial settings: {key} is {_shown(given)} in the task's input but "
                f"{_shown(expected)} in the run's plan {plan_file}; a trial takes its settings "
                "from the search plan that plan_trials wrote"
            )
    refuse_code_and_network("finetune", planned["finetune"])
    refuse_code_and_network("evaluate", planned["evaluate"])
    return planned


def refuse_code_and_network(stage: str, settings: dict) -> None:
    """Settings that run code or reach the network never come from a DAG run, whatever
    its plan says; the command line keeps them (``slmops finetune --trust_remote_code``)."""
    from slmops.evaluation.metrics import SHIPPED

    refused = []
    if settings.get("trust_remote_code"):
        refused.append(("trust_remote_code", "runs Python code shipped with the model"))
    if settings.get("loss"):
        refused.append(("loss", "imports and runs a custom loss"))
    if settings.get("builder_options"):
        refused.append(("builder_options", "passes options to the ONNX builder unchecked"))
    outside = [name for name in settings.get("extra_metrics") or () if name not in SHIPPED]
    if outside:
        refused.append(
            ("extra_metrics", f"{', '.join(outside)} would load a metric from the hub or a file")
        )
    if refused:
        name, why = refused[0]
        raise ConfigError(
            f"{stage} settings: {name} cannot come from a DAG run ({why}); run the stage "
            f"from the command line (slmops {_COMMANDS.get(stage, stage)}) where you trust it"
        )


_COMMANDS = {"finetune": "finetune", "evaluate": "evaluate", "optimize": "auto-opt"}
_MISSING = object()


def _narrower(key: str, given: Any, expected: Any) -> bool:
    """Whether ``given`` only narrows the plan's ``expected`` (see _MAY_CHANGE)."""
    if key not in _MAY_CHANGE:
        return False
    planned, allowed = _MAY_CHANGE[key]
    return given == allowed and (expected is _MISSING or expected in planned)


def _shown(value: Any) -> str:
    return "missing" if value is _MISSING else f"{value!r:.120}"


def _nearest_plan(path: Path, run_dir: Path) -> Path:
    """The plan.json nearest above ``path`` (itself included), up to ``run_dir``: the
    pipeline that ``path`` belongs to, or the HPO search's plan in hpo/."""
    for folder in (path, *path.parents):
        if (folder / PLAN_NAME).is_file():
            return folder / PLAN_NAME
        if folder == run_dir:
            break
    raise ConfigError(
        f"{path}: no plan.json in this run's folder {run_dir}; prepare writes it first"
    )
