"""ChallengeChampionOperator: promote a retrained model only when it beats the published one."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import OneTaskProcess, failing_clearly
from slmops_airflow.timeouts import STAGE_TIMEOUTS


class ChallengeChampionOperator(OneTaskProcess, BaseOperator):
    """Score this run's export (the challenger) and the published version (the champion)
    on the same eval rows, and write RUN_DIR/champion/decision.json (see
    ``slmops.pipeline.champion``). A "keep" decision makes the publish task skip, with
    the reason in its log and in the run report. ``run_dir`` must be this run's folder."""

    template_fields: Sequence[str] = ("run_dir",)
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        run_dir: str | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["challenge"],
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.run_dir = run_dir

    def execute(self, context) -> dict:
        from slmops.pipeline import stages
        from slmops_airflow.roots import checked_run_dir

        with failing_clearly():
            run_dir = checked_run_dir(self.run_dir, context, "run_dir")
            decision = stages.challenge(run_dir, log=self.log.info)
        return {key: decision.get(key) for key in ("decision", "reason", "gain")}
