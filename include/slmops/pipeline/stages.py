"""The one API of a pipeline run: every task as one call, returning a small dict.

The Airflow operators, ``slmops run`` and ``slmops report`` call only these, so a stage
behaves the same with or without Airflow. The pipeline tasks, in order::

    prepare -> validate -> finetune -> evaluate -> optimize[target] -> (challenge)
      -> report -> publish

and the run kinds built from them: hyperparameter search (``plan_trials``, ``run_trial``,
``select_best``) and several adapters on one base (``plan_adapters``, ``build_adapters``).
Whether a run folder holds one pipeline or a multi-adapter run is decided here, once
(``_kind``), for the report, the summary and publishing. Heavy libraries are imported
inside each stage, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmops.layout import RunLayout
from slmops.pipeline.summary import key_numbers, latest_run
from slmops.progress import Log, no_log

__all__ = [
    "build_adapters",
    "challenge",
    "evaluate",
    "finetune",
    "key_numbers",
    "latest_run",
    "optimize",
    "plan_adapters",
    "plan_trials",
    "prepare",
    "publish",
    "report",
    "run_trial",
    "select_best",
    "summarize",
    "validate",
    "watch_data",
    "record_data_look",
]


def prepare(
    conf: dict,
    *,
    dag_id: str,
    run_id: str,
    artifacts_root: Path,
    data_roots: list[Path],
) -> dict:
    """Check the params, confine every file they name and write RUN_DIR/plan.json; the
    plan holds each later stage's settings."""
    from slmops.pipeline.plan import prepare as plan_run

    return plan_run(
        conf, dag_id=dag_id, run_id=run_id, artifacts_root=artifacts_root, data_roots=data_roots
    )


def validate(settings: dict, *, log: Log = no_log, from_run: Path | None = None) -> dict:
    """Great Expectations checks of the data as training formats it (plan["validation"]).
    ``from_run``: the folder of the DAG run calling (see ``_from_run``)."""
    from slmops.data.config import DataConfig
    from slmops.validation.runner import run

    settings = _from_run(settings, "validation", from_run)
    report = run(
        _checked(DataConfig.model_validate, _required(settings, "data", "validate"), "validate"),
        settings.get("suite", "default"),
        model_name_or_path=settings.get("model_name_or_path"),
        max_seq_len=settings.get("max_seq_len"),
        output_dir=settings.get("output_path"),
        log=log,
    )
    return {
        "passed": report.passed,
        "train_rows": report.data["train_rows"],
        "eval_rows": report.data["eval_rows"],
        "fingerprint": report.data["fingerprint"],
        "output_path": settings.get("output_path"),
    }


def finetune(
    settings: dict,
    *,
    log: Log = no_log,
    timeout: float | None = None,
    from_run: Path | None = None,
) -> dict:
    """Train (plan["finetune"]); a finished run with the same settings is reused. A run
    with num_processes > 1 is a torchrun group, stopped after ``timeout`` seconds.
    ``from_run``: the folder of the DAG run calling (see ``_from_run``)."""
    from slmops.training.config import FinetuneConfig
    from slmops.training.run import run

    settings = _from_run(settings, "finetune", from_run)
    config = _checked(FinetuneConfig.model_validate, settings, "finetune")
    _refuse_from_run("finetune", config.model_dump(), from_run)
    return run(config, log=log, timeout=timeout).summary()


def stop_training() -> None:
    """Stop the training process groups this process started (a killed task)."""
    from slmops.training.group import stop_all

    stop_all()


def evaluate(settings: dict, *, log: Log = no_log, from_run: Path | None = None) -> dict:
    """Score base and fine-tuned models and judge the gates (plan["evaluate"]).
    ``from_run``: the folder of the DAG run calling (see ``_from_run``)."""
    from slmops.evaluation.run import run
    from slmops.pipeline.plan import evaluate_config

    settings = _from_run(settings, "evaluate", from_run)
    _required(settings, "run_path", "evaluate")
    config = _checked(evaluate_config, settings, "evaluate")
    # the finished run's own settings (trust_remote_code...) are part of the config
    _refuse_from_run("evaluate", config.model_dump(), from_run)
    result = run(config, log=log)
    summary = result.summary
    return {
        "output_path": str(result.output_path),
        "passed": summary["passed"],
        "primary_metric": summary["primary_metric"],
        "fine_tuned": summary["models"]["fine_tuned"]["metrics"].get(summary["primary_metric"]),
        "delta": summary["delta"].get(summary["primary_metric"]),
    }


def optimize(
    settings: dict, target: str, *, log: Log = no_log, from_run: Path | None = None
) -> dict:
    """Export one ONNX target, check its parity and time it (plan["optimize"]).
    ``from_run``: the folder of the DAG run calling (see ``_from_run``); the target must
    be one of its plan's."""
    from slmops.export.optimize import optimize as optimize_target

    settings = _from_run(settings, "optimize", from_run, target=target)
    _refuse_from_run("optimize", settings, from_run)
    settings = dict(settings)
    model = settings.pop("model_name_or_path", None)
    result = optimize_target(model, target, settings.pop("output_path", None), **settings, log=log)
    decode = next((row for row in result.benchmark or [] if row["kind"] == "onnx"), {})
    return {
        "target": target,
        "output_path": str(result.output_path),
        "passed": not result.failed,
        "size_mb": result.record["size_mb"],
        "decode_speedup": decode.get("decode_speedup"),
    }


def challenge(run_dir: Path, *, log: Log = no_log) -> dict:
    """Champion / challenger on the same eval rows; writes RUN_DIR/champion/decision.json."""
    from slmops.pipeline.champion import challenge as challenge_champion

    return challenge_champion(Path(run_dir), log=log)


def summarize(run_dir: Path) -> dict:
    """The run's outcome from what its stages wrote (stages without output: "no result")."""
    return _kind(run_dir).collect(Path(run_dir))


def report(
    run_dir: Path,
    output_dir: Path | None = None,
    *,
    tracking_uri: str | None = None,
    log: Log = no_log,
) -> dict:
    """report.md, report.html and summary.json in ``output_dir`` (default RUN_DIR/report);
    returns the summary. The run and its stages go to the tracker first (MLflow at
    ``tracking_uri``, else as ``slmops.tracking.settings`` resolves it), so the report
    says where it is tracked, or why not; a tracker problem never fails the report."""
    from slmops.tracking import runs

    run_dir = Path(run_dir)
    output_dir = Path(output_dir) if output_dir else RunLayout(run_dir).report
    kind = _kind(run_dir)
    tracked = not RunLayout(run_dir).is_multi_adapter  # multi-adapter runs: not yet
    if tracked:
        settings = _tracking(run_dir, tracking_uri)
        runs.record_run(run_dir, kind.collect(run_dir), settings, log=log)
    summary = kind.write(run_dir, output_dir)
    if tracked:
        runs.record_report(run_dir, output_dir, settings, summary["passed"], log=log)
    return summary


def publish(
    run_dir: Path, models_root: Path, *, tracking_uri: str | None = None, log: Log = no_log
) -> dict:
    """Ship a passed run as a new version in the model store (``slmops.layout.ModelStore``)
    and make it the latest unless a newer version is (``slmops.pipeline.model_versions``);
    returns the version's manifest (with "latest": the model's latest version after it,
    and "registry": the MLflow registry's aliases). Raises PublishError for a run that
    did not pass and NotPromoted when the champion stays. Whatever the outcome, the
    registry is then brought in line with the store (``slmops.tracking.registry``)."""
    from slmops.errors import NotPromoted, PublishError
    from slmops.tracking.registry import KEPT_OUT, PUBLISHED, REFUSED

    run_dir = Path(run_dir)
    try:
        manifest = _kind(run_dir).publish(run_dir, Path(models_root))
    except NotPromoted:
        _register(run_dir, KEPT_OUT, tracking_uri, log)
        raise
    except PublishError:
        _register(run_dir, REFUSED, tracking_uri, log)
        raise
    if manifest.get("latest") != manifest["version"]:
        log(
            f"{manifest['name']} version {manifest['version']} is written, but the latest "
            f"stays {manifest.get('latest')}: it was published after this run"
        )
    return {**manifest, "registry": _register(run_dir, PUBLISHED, tracking_uri, log)}


def _tracking(run_dir: Path, uri: str | None):
    from slmops.pipeline.plan import read_plan
    from slmops.tracking.settings import artifacts_root_of, settings_for

    return settings_for(artifacts_root_of(read_plan(run_dir)["models_root"]), uri)


def _register(run_dir: Path, outcome: str, uri: str | None, log: Log) -> dict | None:
    """The registry after the publish decision (single pipelines; a multi-adapter run's
    versions are not registered yet)."""
    from slmops.pipeline.model_versions import version_name
    from slmops.pipeline.plan import read_plan
    from slmops.tracking.registry import register

    if RunLayout(run_dir).is_multi_adapter:
        return None
    plan = read_plan(run_dir)
    version = version_name(plan["dag_id"], plan["run_id"])
    settings = _tracking(run_dir, uri)
    return register(run_dir, settings, version=version, outcome=outcome, log=log)


def watch_data(
    data_file: str, *, artifacts_root: Path, data_roots: list[Path], watcher: str
) -> dict:
    """Hash a data file (under the data roots) and compare it with ``watcher``'s last look:
    ``first_seen``, ``changed``, ``sha256``, ``previous_sha256``, ``path``, ``size_bytes``.
    A first sighting is recorded at once; a change only by ``record_data_look``, after its
    event went out."""
    from slmops.pipeline import locations
    from slmops.pipeline.data_watch import compare, legacy_state_path, record, state_path

    path = locations.confine(data_file, data_roots, "data_file")
    state = state_path(artifacts_root, watcher, path)
    seen = compare(path, state, legacy_state_path(artifacts_root, watcher))
    if seen["first_seen"]:
        record(path, seen["sha256"], state)
    return seen


def record_data_look(
    seen: dict, *, data_file: str, artifacts_root: Path, data_roots: list[Path], watcher: str
) -> Path:
    """Record the hash ``watch_data`` reported for ``data_file`` (its result, ``seen``),
    once the change it found has been announced; returns the state file."""
    from slmops.errors import ConfigError
    from slmops.pipeline import locations
    from slmops.pipeline.data_watch import record, state_path

    path = locations.confine(data_file, data_roots, "data_file")
    if not isinstance(seen, dict) or seen.get("path") != str(path):
        raise ConfigError(
            f"the look to record is not of {path} (got {seen!r:.200}); nothing recorded"
        )
    state = state_path(artifacts_root, watcher, path)
    record(path, seen.get("sha256"), state)
    return state


# -- hyperparameter search


def plan_trials(
    conf: dict, *, dag_id: str, run_id: str, artifacts_root: Path, data_roots: list[Path]
) -> dict:
    """Every trial's plan, all checked before any is written (RUN_DIR/hpo/)."""
    from slmops.pipeline.hpo import plan_trials as plan_search

    return plan_search(
        conf, dag_id=dag_id, run_id=run_id, artifacts_root=artifacts_root, data_roots=data_roots
    )


def run_trial(trial: dict, *, log: Log = no_log, from_run: Path | None = None) -> dict:
    """Train and score one trial, recorded in its trial.json whatever the outcome. A
    refused trial is its result, not an exception; a crash (out of memory, a busy folder)
    is raised after it is recorded, so the task is retried.
    ``from_run``: the folder of the DAG run calling; ``trial`` (an XCom) must then be
    one of the trials its search plan holds (``slmops.pipeline.planned.planned_trial``)."""
    from slmops.pipeline.hpo import run_trial as train_trial

    if from_run is not None:
        from slmops.pipeline.planned import planned_trial

        trial = planned_trial(trial, run_dir=Path(from_run))
    return train_trial(trial, finetune=finetune, evaluate=evaluate, log=log)


def select_best(run_dir: Path, results: list[dict], *, log: Log = no_log) -> dict:
    """The best trial's params for the full run; writes RUN_DIR/hpo/trials.json."""
    from slmops.pipeline.hpo import select_best as pick_best

    return pick_best(Path(run_dir), results, log=log)


# -- several adapters on one base


def plan_adapters(
    conf: dict, *, dag_id: str, run_id: str, artifacts_root: Path, data_roots: list[Path]
) -> dict:
    """Each adapter's plan, all checked before any is written (RUN_DIR/adapters/NAME/)."""
    from slmops.pipeline.multi_adapter import plan_adapters as plan_each

    return plan_each(
        conf, dag_id=dag_id, run_id=run_id, artifacts_root=artifacts_root, data_roots=data_roots
    )


def build_adapters(run_dir: Path, *, log: Log = no_log) -> dict:
    """One shared ONNX base with an .onnx_adapter per adapter, each scored through it."""
    from slmops.pipeline.multi_adapter.build import build

    return build(Path(run_dir), log=log)


def _from_run(settings: Any, stage: str, run_dir: Path | None, *, target: str | None = None) -> Any:
    """A stage called from a DAG run (``run_dir``: that run's folder, from what the
    deployment and Airflow say, never from an XCom) uses its plan's settings: ``settings``
    (an XCom, which the REST API can write) must equal the plan's slice
    (``slmops.pipeline.planned``). Called without a run (the CLI, ``slmops run``), the
    settings are the caller's."""
    if run_dir is None:
        return settings
    from slmops.errors import ConfigError
    from slmops.pipeline.planned import planned_settings

    planned, plan = planned_settings(settings, stage, run_dir=Path(run_dir))
    if target is not None:
        targets = [*plan.get("cpu_targets", ()), *plan.get("gpu_targets", ())]
        if target not in targets:
            raise ConfigError(
                f"optimize: target {target!r} is not one of this run's planned targets "
                f"({', '.join(targets) or 'none'}); choose targets in the trigger form"
            )
    return planned


def _refuse_from_run(stage: str, settings: dict, run_dir: Path | None) -> None:
    """No setting that runs code or reaches the network comes from a DAG run."""
    if run_dir is not None:
        from slmops.pipeline.planned import refuse_code_and_network

        refuse_code_and_network(stage, settings)


def _checked(build: Callable[[Any], Any], settings: Any, stage: str) -> Any:
    """A stage's settings as its typed config; a bad one (from a hand-edited plan or an
    XCom) is a ConfigError naming the stage and field, which fails the task without
    retries, not a raw pydantic error that Airflow would retry."""
    from pydantic import ValidationError

    from slmops.config import describe_validation_error
    from slmops.errors import ConfigError

    try:
        return build(settings)
    except ValidationError as exc:
        message = describe_validation_error(exc, source=None, flag_style=False)
        raise ConfigError(f"{stage} settings: {message}") from None


def _required(settings: dict, key: str, stage: str) -> Any:
    from slmops.errors import ConfigError

    if key not in settings:
        raise ConfigError(f"{stage} settings: {key!r} is missing; pass the plan's {stage} slice")
    return settings[key]


@dataclass(frozen=True)
class _RunKind:
    collect: Callable[[Path], dict]
    write: Callable[[Path, Path], dict]
    publish: Callable[[Path, Path], dict]


def _kind(run_dir: Path) -> _RunKind:
    """The one place that tells a multi-adapter run folder from a single pipeline's."""
    if RunLayout(run_dir).is_multi_adapter:
        from slmops.pipeline.multi_adapter import report as multi

        return _RunKind(multi.collect, multi.write, multi.publish)
    from slmops.pipeline import publish as single_publish
    from slmops.pipeline import summary as single

    return _RunKind(single.collect, single.write, single_publish.publish)
