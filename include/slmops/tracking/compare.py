"""Tracked pipeline runs from the tracker: a list, and two runs side by side.

A run is named by its MLflow run id or its pipeline run id (the Airflow run id, tag
``slmops.run_id``). Settings are the run's params; numbers are the pipeline run's own
metrics and its stages' (``finetune.final_train_loss``, ``evaluation.gate.loss_gap.observed``).
"""

from __future__ import annotations

from slmops.errors import ConfigError
from slmops.tracking.client import Tracker, Unavailable, open_tracker
from slmops.tracking.records import TAG_PREFIX, quoted
from slmops.tracking.settings import TrackingSettings

_KIND = f"tags.`{TAG_PREFIX}kind` = 'pipeline'"


def _open(settings: TrackingSettings) -> Tracker:
    tracker = open_tracker(settings)
    if isinstance(tracker, Unavailable):
        raise ConfigError(f"the tracker at {tracker.uri} cannot be read: {tracker.reason}")
    return tracker


def list_runs(settings: TrackingSettings, *, model_name: str | None = None, limit: int = 20):
    """The newest pipeline runs: ``[{run, pipeline_run, dag_id, model, outcome, started,
    metrics}]``."""
    tracker = _open(settings)
    query = _KIND
    if model_name:
        query += f" and tags.`{TAG_PREFIX}model_name` = '{quoted(model_name)}'"
    found = tracker.client.search_runs(
        [tracker.experiment_id], query, max_results=limit, order_by=["attributes.start_time DESC"]
    )
    return [_row(run) for run in found]


def compare_runs(settings: TrackingSettings, first: str, second: str) -> dict:
    """Two runs' settings and numbers: ``{"runs": [a, b], "params": {name: [a, b]},
    "metrics": {name: [a, b]}, "same_params": [names]}``; only differing params listed."""
    tracker = _open(settings)
    runs = [_resolve(tracker, name) for name in (first, second)]
    params = [run.data.params for run in runs]
    metrics = [_numbers(tracker, run) for run in runs]
    names = sorted(set(params[0]) | set(params[1]))
    differing = {
        n: [params[0].get(n), params[1].get(n)]
        for n in names
        if params[0].get(n) != params[1].get(n)
    }
    metric_names = sorted(set(metrics[0]) | set(metrics[1]))
    return {
        "runs": [_row(run) for run in runs],
        "params": differing,
        "same_params": [n for n in names if n not in differing],
        "metrics": {n: [metrics[0].get(n), metrics[1].get(n)] for n in metric_names},
    }


def _resolve(tracker: Tracker, name: str):
    client = tracker.client
    found = client.search_runs(
        [tracker.experiment_id], f"{_KIND} and tags.`{TAG_PREFIX}run_id` = '{quoted(name)}'"
    )
    if found:
        return found[0]
    try:
        return client.get_run(name)
    except Exception:  # not an MLflow run id either
        raise ConfigError(
            f"no tracked pipeline run {name!r} at {tracker.settings.uri}; "
            "`slmops runs` lists them (use the RUN or PIPELINE RUN column)"
        ) from None


def _numbers(tracker: Tracker, run) -> dict[str, float]:
    """The run's metrics and its stage runs', each stage's under ``STAGE.``."""
    numbers = dict(run.data.metrics)
    children = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    for child in children:
        stage = child.data.tags.get(f"{TAG_PREFIX}stage", child.info.run_name)
        numbers.update({f"{stage}.{key}": value for key, value in child.data.metrics.items()})
    return numbers


def _row(run) -> dict:
    tags = run.data.tags
    return {
        "run": run.info.run_id,
        "pipeline_run": tags.get(f"{TAG_PREFIX}run_id"),
        "dag_id": tags.get(f"{TAG_PREFIX}dag_id"),
        "model": tags.get(f"{TAG_PREFIX}model_name"),
        "outcome": tags.get(f"{TAG_PREFIX}outcome", run.info.status),
        "started": run.info.start_time,
        "metrics": dict(run.data.metrics),
    }
