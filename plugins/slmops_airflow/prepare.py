"""PrepareRunOperator: check a run's params and write its plan before any work starts."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops.pipeline.params import EVENT_PARAMS
from slmops_airflow._stage import failing_clearly
from slmops_airflow.roots import ARTIFACTS_VARIABLE, DATA_ROOTS_VARIABLE, configured_roots
from slmops_airflow.timeouts import STAGE_TIMEOUTS

__all__ = [
    "ARTIFACTS_VARIABLE",
    "DATA_ROOTS_VARIABLE",
    "PlanningOperator",
    "PrepareRunOperator",
    "configured_roots",
]


class PlanningOperator(BaseOperator):
    """Checks a run's params and writes its plan before any work starts; pushes the plan
    as one XCom per key (``multiple_outputs``). Subclasses give ``make_plan``."""

    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["plan"],
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(execution_timeout=execution_timeout, **kwargs)

    def make_plan(self, conf: dict, **where: Any) -> dict:
        raise NotImplementedError

    def run_params(self, context) -> dict:
        return dict(context["params"])

    def execute(self, context) -> dict:
        with failing_clearly():
            artifacts_root, data_roots = configured_roots()
            plan = self.make_plan(
                self.run_params(context),
                dag_id=context["dag"].dag_id,
                run_id=context["run_id"],
                artifacts_root=artifacts_root,
                data_roots=data_roots,
            )
        self.log.info("run folder %s", plan["run_dir"])
        return plan


class PrepareRunOperator(PlanningOperator):
    """Validate ``conf`` (default: the run's params, i.e. the trigger form) against
    ``slmops.pipeline.params.PipelineParams``, confine the files it names to the data
    roots, and write RUN_DIR/plan.json. Pushes the plan as one XCom per key
    (``multiple_outputs``), so stages take ``prepare.output["finetune"]`` and mapped
    tasks expand over ``prepare.output["cpu_targets"]``.

    The artifacts root and data roots are $SLMOPS_ARTIFACTS_ROOT and $SLMOPS_DATA_ROOTS,
    narrowed by the Airflow Variables ``slmops_artifacts_root`` and ``slmops_data_roots``
    when set (``slmops_airflow.roots``).

    A run started by Asset events takes the params the newest event carries in
    ``extra["params"]`` (the others are superseded, not mixed in key by key), and only
    the keys in ``event_params`` (default ``slmops.pipeline.params.EVENT_PARAMS``: where
    the data is); any other key fails the task naming it. model_name and the gates
    always come from the DAG.
    """

    template_fields: Sequence[str] = ("run_conf",)

    def __init__(
        self,
        *,
        conf: dict | None = None,
        event_params: Sequence[str] = EVENT_PARAMS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_conf = conf
        self.event_params = tuple(event_params)

    def run_params(self, context) -> dict:
        conf = dict(self.run_conf if self.run_conf is not None else context["params"])
        conf.update(self._event_params(context))
        return conf

    def make_plan(self, conf: dict, **where: Any) -> dict:
        from slmops.pipeline import stages

        plan = stages.prepare(conf, **where)
        self.log.info("targets: cpu %s, gpu %s", plan["cpu_targets"], plan["gpu_targets"])
        return plan

    def _event_params(self, context) -> dict:
        """Params a producer sent along with the newest asset event that started this run:
        its ``extra["params"]`` (e.g. the new data_files), keys from ``event_params`` only,
        values checked like the form's. Older events are superseded whole."""
        from slmops.pipeline.params import check_event_allowlist, event_overrides

        events = [
            event
            for _, queued in (context.get("triggering_asset_events") or {}).items()
            for event in queued
        ]
        if not events:
            return {}
        events.sort(key=lambda event: event.timestamp)
        newest, superseded = events[-1], events[:-1]
        for event in superseded:
            self.log.info("superseded by a newer event: %s", _describe(event))
        params = (newest.extra or {}).get("params")
        keys = sorted(map(str, params)) if isinstance(params, dict) else params
        self.log.info("params from %s: %s", _describe(newest), keys or "none")
        allowed = check_event_allowlist(self.event_params, f"task {self.task_id} event_params")
        return event_overrides(params, allowed=allowed, source=_describe(newest))


def _describe(event: Any) -> str:
    """An asset event as a log line and an error can name it."""
    source = "/".join(
        str(part)
        for part in (event.source_dag_id, event.source_run_id, event.source_task_id)
        if part
    )
    return f"the asset event of {event.asset.uri} at {event.timestamp.isoformat()}" + (
        f" (from {source})" if source else ""
    )
