"""ApprovePublishOperator: a person approves or rejects publishing, in the Airflow UI."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from slmops_airflow._stage import failing_clearly
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.ui.links import run_url

APPROVE = "Approve"
REJECT = "Reject"
REASON = "reason"


class ApprovePublishOperator(HITLOperator):
    """Ask a reviewer before publish, when the run's params say ``require_approval``.

    The request (Airflow's human-in-the-loop step: the task's "Required Actions" in the
    UI, or the REST API's hitlDetails) shows the gates, the base, fine-tuned and champion
    scores, sample answers side by side and a link to the run report, which is written
    first so the reviewer can read it. The task then waits in Airflow 3.3's
    ``awaiting_input`` state, holding no worker slot, for at most the run's
    ``approval_timeout_hours``; no answer by then counts as Reject.

    The answer (who, when, the reason typed into the form) goes to
    RUN_DIR/approval/decision.json: publish reads it and skips on a rejection, and the
    report shows it. The task itself succeeds either way (a rejection is a decision, not
    a failure). Without ``require_approval`` it skips at once. ``run_dir`` must be this
    run's folder. ``execution_timeout`` bounds the work before and after the wait (the
    report, the answer), not the wait itself.
    """

    template_fields: Sequence[str] = ("run_dir",)
    ui_color = "#fff4e5"

    def __init__(
        self,
        *,
        run_dir: str | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["approve"],
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Publish this model?")  # replaced at run time
        # Replaced at run time by the run's approval_timeout_hours. Given here so the HITL
        # operator keeps execution_timeout for the work around the wait (without one it
        # would take execution_timeout as the wait's).
        kwargs.setdefault("response_timeout", datetime.timedelta(hours=72))
        # The DAG's params arrive here too (source "dag"); the reviewer's form shows only
        # the task's own (source "task"): the reason, which may be left empty.
        merged = kwargs.pop("params", None)
        params = merged if isinstance(merged, ParamsDict) else ParamsDict(merged or {})
        params[REASON] = Param(
            None,
            type=["null", "string"],
            title="Reason",
            description="why (shown in the run report; say what to change on reject)",
            source="task",
        )
        super().__init__(
            options=[APPROVE, REJECT],
            defaults=[REJECT],  # what a timeout answers
            multiple=False,
            params=params,
            execution_timeout=execution_timeout,
            **kwargs,
        )
        self.run_dir = run_dir

    def execute(self, context) -> Any:
        import datetime

        from airflow.sdk.exceptions import AirflowSkipException

        from slmops.pipeline import approval, summary
        from slmops.pipeline.plan import read_plan
        from slmops_airflow.roots import checked_run_dir

        if not self.run_dir:
            raise AirflowSkipException("no run folder: the run stopped before prepare wrote one")
        with failing_clearly():
            run_dir = checked_run_dir(self.run_dir, context, "run_dir")
            params = read_plan(run_dir)["params"]
        if not params.get("require_approval"):
            raise AirflowSkipException("require_approval is off: publish goes ahead without review")
        # The reviewer reads the report: write it now (the report task rewrites it with the
        # answer); the request links to it in the slmops UI.
        with failing_clearly():
            summary.write(run_dir, _layout(run_dir).report)
        self.subject, self.body = approval.request(
            run_dir, report_url=run_url(context["dag"].dag_id, context["run_id"])
        )
        self.response_timeout = datetime.timedelta(hours=params["approval_timeout_hours"])
        self.log.info("asking for approval: %s", self.subject)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> dict:
        from slmops.pipeline import approval
        from slmops_airflow.roots import checked_run_dir

        with failing_clearly():  # a resumed task renders its run_dir XCom again
            run_dir = checked_run_dir(self.run_dir, context, "run_dir")
        answer = super().execute_complete(context, event)
        user = answer.get("responded_by_user") or {}
        if event.get("timedout") and not user:
            decision = approval.TIMED_OUT
        else:
            decision = (
                approval.APPROVED if answer["chosen_options"] == [APPROVE] else approval.REJECTED
            )
        entry = approval.record(
            run_dir,
            decision,
            by=user.get("name") or user.get("id"),
            reason=str((answer.get("params_input") or {}).get(REASON) or ""),
        )
        self.log.info("%s by %s: %s", decision, entry["by"] or "nobody", entry["reason"] or "-")
        return entry


def _layout(run_dir):
    from slmops.layout import RunLayout

    return RunLayout(run_dir)
