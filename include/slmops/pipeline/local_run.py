"""A whole pipeline without Airflow: what ``slmops run --config FILE`` does.

FILE is a pipeline config (include/configs/pipelines/*.yaml, the same file a
config-driven DAG is built from) or a Microsoft Olive-style config (``model``,
``data_configs``, ``passes``), mapped onto the pipeline's params. The stages are the
DAG's, in the same order, writing the same run folder; a stage that fails stops the
run, and the report is written whatever stage it reached.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmops.config import read_yaml_mapping
from slmops.errors import SlmopsError
from slmops.pipeline import locations, stages
from slmops.progress import Log, no_log


@dataclass
class RunConfig:
    """What a config file asks for, as pipeline params."""

    source: Path
    kind: str  # "pipeline" or "olive"
    dag_id: str
    params: dict
    challenge: bool = False
    olive: Any = None  # the OliveMapping of an Olive-style config


def load_run_config(path: Path) -> RunConfig:
    """Read a pipeline config or an Olive-style config; errors name the file and field."""
    from slmops.pipeline.configs import olive
    from slmops.pipeline.configs.pipelines import load_pipeline

    path = Path(path)
    raw = read_yaml_mapping(path)
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "pipeline"
    if olive.is_olive_config(raw):
        mapped = olive.from_olive(raw, source=str(path))
        return RunConfig(path, "olive", f"slm_{stem}", mapped.params, olive=mapped)
    spec = load_pipeline(path)
    return RunConfig(
        path,
        "pipeline",
        spec.resolved_dag_id(path),
        spec.param_defaults(),
        challenge=spec.champion_challenger,
    )


def map_olive_modules(config: RunConfig, data_roots: list[Path], log: Log = no_log) -> None:
    """Olive configs name GPT-2 modules (c_attn, ln_f...): map them onto the model at hand,
    or refuse naming the ones it lacks, before anything is trained."""
    from slmops.models import resolve
    from slmops.pipeline.plan import name_or_path

    mapping = config.olive
    if not (mapping.params.get("target_modules") or mapping.params.get("modules_to_save")):
        return
    model = name_or_path(mapping.params.get("model_name_or_path"), data_roots, "model")
    mapping.fit_modules(resolve(model, log=log).path)


def run_pipeline(
    config: RunConfig,
    *,
    artifacts_root: Path,
    data_roots: list[Path],
    run_id: str | None = None,
    publish: bool = True,
    log: Log = no_log,
) -> dict:
    """Run every stage; returns the run's summary. Raises the first stage's error after
    writing the report (so a failed run still explains itself)."""
    from slmops.errors import NotPromoted

    run_id = run_id or time.strftime("local__%Y-%m-%dT%H-%M-%S", time.gmtime())
    plan = stages.prepare(
        config.params,
        dag_id=config.dag_id,
        run_id=run_id,
        artifacts_root=artifacts_root,
        data_roots=data_roots,
    )
    run_dir = Path(plan["run_dir"])
    log(f"run folder {run_dir}")
    failure: SlmopsError | None = None
    try:
        _stage("validate", log, stages.validate, plan["validation"])
        _stage("finetune", log, stages.finetune, plan["finetune"])
        _stage("evaluate", log, stages.evaluate, plan["evaluate"])
        for target in plan["cpu_targets"] + plan["gpu_targets"]:
            _stage(f"optimize[{target}]", log, stages.optimize, plan["optimize"], target)
        if config.challenge:
            _stage("challenge", log, stages.challenge, run_dir)
    except SlmopsError as exc:
        failure = exc
    summary = stages.report(run_dir, Path(plan["report_dir"]), log=log)
    if failure is not None:
        raise failure
    if publish:  # after the report, which the published version carries (as in the DAG)
        if plan["params"].get("require_approval"):
            log(
                "require_approval asks for a reviewer in the Airflow UI; `slmops run` has "
                "none and publishes (use --no_publish to keep the model out)"
            )
        try:
            published = stages.publish(run_dir, Path(plan["models_root"]), log=log)
            summary["published"] = published["path"]
        except NotPromoted as exc:
            log(str(exc))
    return summary


def _stage(name: str, log: Log, function, *args) -> None:
    log(f"== {name}")
    started = time.monotonic()
    function(*args, log=log)
    log(f"== {name} done in {time.monotonic() - started:.1f} s")


def cli_data_roots(config_path: Path) -> list[Path]:
    """Files a local run may read: next to the config, under the working directory, and
    the usual data roots ($SLMOPS_DATA_ROOTS, include/data, SLMOPS_HOME/data)."""
    roots = [Path(config_path).resolve().parent, Path.cwd().resolve(), *locations.data_roots()]
    return list(dict.fromkeys(roots))
