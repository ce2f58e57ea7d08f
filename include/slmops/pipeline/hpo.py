"""Hyperparameter search as short trials, then the whole pipeline with the best settings.

``plan_trials`` turns the run's params plus a search (the reference guide's
``hyperparameter-search.yaml`` format, see ``slmops.pipeline.configs.search``) into one plan per
trial, each in RUN_DIR/trials/NN/ and trained for ``trial_max_steps``. ``run_trial``
trains and scores one (a failed trial is recorded, not raised, so the others still
count). ``select_best`` picks the trial with the best primary metric on the held-out
rows, writes RUN_DIR/hpo/trials.json (the report's trials table) and returns the params
of the full run: the base params with the winner's settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.errors import SlmopsError
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
                # a trial is scored, never exported: no merged copy of the weights
                "finetune": {**trial_plan["finetune"], "merge_adapter": False},
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
    """Train and score one trial with the pipeline's ``finetune`` and ``evaluate`` stages;
    an error is the trial's result, not an exception."""
    result: dict[str, Any] = {"index": trial["index"], "params": trial["params"]}
    try:
        trained = finetune(trial["finetune"], log=log)
        scored = evaluate(trial["evaluate"], log=log)
        result.update(
            status="ok",
            metric_name=scored["primary_metric"],
            metric=scored["fine_tuned"],
            eval_loss=trained.get("best_eval_loss"),
            steps=trained.get("global_step"),
            error=None,
        )
    except SlmopsError as exc:
        result.update(status="failed", metric=None, eval_loss=None, error=str(exc))
    atomic_write_json(Path(trial["run_dir"]) / TRIAL_NAME, result)
    log(
        f"trial {trial['index']} {trial['params']}: {result['status']}, "
        f"{result.get('metric_name', 'metric')} {result['metric']}, eval_loss {result['eval_loss']}"
    )
    return result


def select_best(run_dir: Path, results: list[dict], *, log: Log = no_log) -> dict:
    """Pick the best trial, write the trials table, return the full run's params."""
    from slmops.evaluation.config import LOWER_IS_BETTER

    run_dir = Path(run_dir)
    plan = json.loads(RunLayout(run_dir).hpo_plan.read_text(encoding="utf-8"))
    results = sorted(results, key=lambda result: result["index"])
    metric = next((r["metric_name"] for r in results if r.get("metric_name")), "metric")
    lower_is_better = metric in LOWER_IS_BETTER
    for result in results:
        if result["status"] != "ok":
            log(f"trial {result['index']} {result['params']} failed: {result['error']}")
    best = search.best_trial(results, metric, lower_is_better=lower_is_better)
    winner = next(result for result in results if result["index"] == best)
    record = {
        "metric": metric,
        "lower_is_better": lower_is_better,
        "trial_max_steps": plan["trial_max_steps"],
        "search": plan["search"],
        "results": results,
        "best_index": best,
        "best_params": winner["params"],
    }
    atomic_write_json(RunLayout(run_dir).trials, record)
    log(f"best trial {best}: {winner['params']} ({metric} {winner['metric']})")
    return {**plan["params"], **winner["params"]}


def read_trials(run_dir: Path) -> dict | None:
    return read_json_if_any(RunLayout(run_dir).trials)
