"""PrepareRunOperator: check a run's params and write its plan before any work starts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import failing_clearly

ARTIFACTS_VARIABLE = "slmops_artifacts_root"
DATA_ROOTS_VARIABLE = "slmops_data_roots"


def configured_roots() -> tuple:
    """(artifacts root, data roots): the Airflow Variables when set, else the environment."""
    from airflow.sdk import Variable

    from slmops.pipeline import locations

    return (
        locations.artifacts_root(Variable.get(ARTIFACTS_VARIABLE, default=None)),
        locations.data_roots(Variable.get(DATA_ROOTS_VARIABLE, default=None)),
    )


class PlanningOperator(BaseOperator):
    """Checks a run's params and writes its plan before any work starts; pushes the plan
    as one XCom per key (``multiple_outputs``). Subclasses give ``make_plan``."""

    ui_color = "#e8f0fe"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)

    def make_plan(self, conf: dict, **where: Any) -> dict:
        raise NotImplementedError

    def run_params(self, context) -> dict:
        return dict(context["params"])

    def execute(self, context) -> dict:
        artifacts_root, data_roots = configured_roots()
        with failing_clearly():
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

    The artifacts root and data roots come from the Airflow Variables
    ``slmops_artifacts_root`` and ``slmops_data_roots`` when set, else from
    $SLMOPS_ARTIFACTS_ROOT and $SLMOPS_DATA_ROOTS.
    """

    template_fields: Sequence[str] = ("run_conf",)

    def __init__(self, *, conf: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_conf = conf

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
        """Params a producer sent along with the asset events that started this run: an
        event's ``extra["params"]`` (e.g. the new data_files), checked like the form's."""
        overrides: dict = {}
        for uri, events in (context.get("triggering_asset_events") or {}).items():
            for event in events:
                params = (event.extra or {}).get("params")
                if isinstance(params, dict):
                    self.log.info("params from the asset event of %s: %s", uri, sorted(params))
                    overrides.update(params)
        return overrides
