"""Hyperparameter search as short trials, then the whole pipeline with the best settings.

``plan_trials`` turns the run's params plus a search (the reference guide's
``hyperparameter-search.yaml`` format, see ``slmops.pipeline.configs.search``) into one plan per
trial, each in RUN_DIR/trials/NN/ and trained for ``trial_max_steps``. ``run_trial``
trains and scores one and records its outcome in trials/NN/trial.json (a failed trial is
recorded, so the others still count). ``select_best`` picks the trial with the best
primary metric on the held-out rows among those that succeeded (a trial whose task died
counts as failed), writes RUN_DIR/hpo/trials.json (the report's trials table) and returns
the params of the full run: the base params with the winner's settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.errors import SearchError, SlmopsError
from slmops.layout import TRIAL_NAME, RunLayout
from slmops.pipeline import locations
from slmops.pipeline.configs import search
from slmops.pipeline.params import split_settings
from slmops.pipeline.plan import prepare, write_plan
from slmops.progress import Log, no_log

# A small space that suits the demo's LoRA run; the form shows it as JSON to edit.
DEFAULT_SEARCH = {
    "search_strategy": {"type": "random", "num_trials": 4, "seed": 42},
    "search_space": {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
        "lora_r": {"type": "choice", "values": [8, 16, 32]},
    },
}


class SearchSettings(BaseModel):
    """The HPO DAG's own params, beside the pipeline's."""

    model_config = ConfigDict(extra="forbid")

    search: dict[str, Any] = Field(
        DEFAULT_SEARCH,
        description="the search, in the reference guide's hyperparameter-search.yaml format: "
        "search_strategy {type random|grid, num_trials, seed} and search_space entries of "
        "type float/int (low, high, log) or choice (values)",
    )
    search_file: str | None = Field(
        None, description="a hyperparameter-search.yaml under the data roots (replaces search)"
    )
    trial_max_steps: int = Field(
        50, ge=1, le=100_000, description="optimizer steps of each trial (short on purpose)"
    )


def plan_trials(
    conf: dict,
    *,
    dag_id: str,
    run_id: str,
    artifacts_root: Path,
    data_roots: list[Path],
) -> dict:
    """Every trial's plan, checked before any trial starts; written to RUN_DIR/hpo/."""
    settings, params = split_settings(conf, SearchSettings)
    if settings.search_file:
        path = locations.confine(settings.search_file, data_roots, "search_file")
        spec = search.load_search(path)
    else:
        spec = search.load_search(settings.search, name="param search")
    run_dir = locations.run_dir(artifacts_root, dag_id, run_id)
    layout = RunLayout(run_dir)
    base = prepare(
        params,
        dag_id=dag_id,
        run_id=run_id,
        artifacts_root=artifacts_root,
        data_roots=data_roots,
        run_dir=layout.hpo / "base",
        write=False,  # a record of the params; the full run writes its own plan later
    )
    trials, planned = [], []
    for index, values in enumerate(search.trials(spec)):
        # A searched max_steps wins over trial_max_steps.
        trial_plan = prepare(
            {**params, "max_steps": settings.trial_max_steps, **values},
            dag_id=dag_id,
            run_id=run_id,
            artifacts_root=artifacts_root,
            data_roots=data_roots,
            run_dir=layout.trial(index).root,
            write=False,
        )
        planned.append(trial_plan)
        evaluate = {
            **trial_plan["evaluate"],
            "validation_path": base["validation"]["output_path"],  # check_data's report
            "compare_base": False,
            "fail_on_gates": False,
        }
        trials.append(
            {
                "index": index,
                "params": values,
                "run_dir": trial_plan["run_dir"],
                "finetune": {
                    **trial_plan["finetune"],
                    "merge_adapter": False,  # scored, never exported: no merged copy
                    "validation_path": base["validation"]["output_path"],  # check_data's
                },
                "evaluate": evaluate,
            }
        )
    plan = {
        "run_dir": str(run_dir),
        "params": base["params"],
        "validation": base["validation"],
        "trial_max_steps": settings.trial_max_steps,
        "search": spec.model_dump(mode="json"),
        "trials": trials,
    }
    for trial_plan in planned:  # every trial checked: now write them
        write_plan(trial_plan)
    atomic_write_json(layout.hpo_plan, plan)
    return plan


def run_trial(
    trial: dict,
    *,
    finetune: Callable[..., dict],
    evaluate: Callable[..., dict],
    log: Log = no_log,
) -> dict:
    """Train and score one trial with the pipeline's ``finetune`` and ``evaluate`` stages,
    recording the outcome in the trial's trial.json. A refusal (a ``SlmopsError``: bad
    settings, a NaN loss) is the trial's result, not an exception. Anything else (out of
    memory, a killed process group, a busy folder) is recorded too, then raised, so the
    task is retried (resuming the trial's checkpoints); if it fails for good,
    ``select_best`` still runs with the other trials and reads the failure from trial.json."""
    result: dict[str, Any] = {"index": trial["index"], "params": trial["params"]}
    try:
        trained = finetune(trial["finetune"], log=log)
        scored = evaluate(trial["evaluate"], log=log)
    except SlmopsError as exc:
        _record_trial(trial, _failed(result, str(exc)), log)
        return result
    except Exception as exc:
        _record_trial(trial, _failed(result, f"{type(exc).__name__}: {exc}"), log)
        raise
    result.update(
        status="ok",
        metric_name=scored["primary_metric"],
        metric=scored["fine_tuned"],
        eval_loss=trained.get("best_eval_loss"),
        steps=trained.get("global_step"),
        error=None,
    )
    _record_trial(trial, result, log)
    return result


def _failed(result: dict, error: str) -> dict:
    result.update(status="failed", metric=None, eval_loss=None, error=error)
    return result


def _record_trial(trial: dict, result: dict, log: Log) -> None:
    atomic_write_json(Path(trial["run_dir"]) / TRIAL_NAME, result)
    log(
        f"trial {trial['index']} {trial['params']}: {result['status']}, "
        f"{result.get('metric_name', 'metric')} {result['metric']}, eval_loss {result['eval_loss']}"
    )


def select_best(run_dir: Path, results: list[dict], *, log: Log = no_log) -> dict:
    """Pick the best trial, write the trials table, return the full run's params.

    Each planned trial's outcome is the trial.json its run wrote, with its params from the
    search plan: ``results`` (the trial tasks' return values, XComs anyone with REST access
    can write) decide nothing; one that disagrees with its trial.json is logged and
    ignored. A trial without a trial.json (its task died) is a trial that left no result.
    Raises ``SearchError`` only when no trial succeeded."""
    from slmops.evaluation.config import LOWER_IS_BETTER

    run_dir = Path(run_dir)
    plan = json.loads(RunLayout(run_dir).hpo_plan.read_text(encoding="utf-8"))
    results = every_trial(plan, results, log=log)
    metric = next((r["metric_name"] for r in results if r.get("metric_name")), "metric")
    lower_is_better = metric in LOWER_IS_BETTER
    for result in results:
        if result["status"] != "ok":
            log(f"trial {result['index']} {result['params']} failed: {result['error']}")
    record = {
        "metric": metric,
        "lower_is_better": lower_is_better,
        "trial_max_steps": plan["trial_max_steps"],
        "search": plan["search"],
        "results": results,
        "best_index": None,
        "best_params": None,
    }
    try:
        best = search.best_trial(results, metric, lower_is_better=lower_is_better)
    except SearchError:
        atomic_write_json(RunLayout(run_dir).trials, record)  # the report shows why
        raise
    winner = next(result for result in results if result["index"] == best)
    record.update(best_index=best, best_params=winner["params"])
    atomic_write_json(RunLayout(run_dir).trials, record)
    log(f"best trial {best}: {winner['params']} ({metric} {winner['metric']})")
    return {**plan["params"], **winner["params"]}


def every_trial(plan: dict, claimed: list[dict | None], *, log: Log = no_log) -> list[dict]:
    """One result per planned trial, from its trial.json (params from the plan), else a
    failure saying it left nothing. ``claimed`` (the tasks' XComs) only gets compared."""
    results = []
    for trial in plan["trials"]:
        index = trial["index"]
        recorded = read_json_if_any(Path(trial["run_dir"]) / TRIAL_NAME)
        if isinstance(recorded, dict) and recorded.get("index") == index:
            results.append({**recorded, "params": trial["params"]})
        else:
            results.append(
                _failed(
                    {"index": index, "params": trial["params"]},
                    "the trial left no result: its task died (killed, out of memory) or never "
                    "ran; see the trial task's log",
                )
            )
    by_index = {result["index"]: result for result in results}
    for claim in claimed:
        if isinstance(claim, dict) and by_index.get(claim.get("index")) != claim:
            log(
                f"ignored a trial result that is not what its trial recorded: "
                f"{json.dumps(claim, default=str)[:300]}"
            )
    return results


def read_trials(run_dir: Path) -> dict | None:
    return read_json_if_any(RunLayout(run_dir).trials)
