"""ChallengeChampionOperator: promote a retrained model only when it beats the published one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import failing_clearly


class ChallengeChampionOperator(BaseOperator):
    """Score this run's export (the challenger) and the published version (the champion)
    on the same eval rows, and write RUN_DIR/champion/decision.json (see
    ``slmops.pipeline.champion``). A "keep" decision makes the publish task skip, with
    the reason in its log and in the run report."""

    template_fields: Sequence[str] = ("run_dir",)
    ui_color = "#fef7e0"

    def __init__(self, *, run_dir: str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir

    def execute(self, context) -> dict:
        from pathlib import Path

        from slmops.pipeline import stages

        with failing_clearly():
            decision = stages.challenge(Path(self.run_dir), log=self.log.info)
        return {key: decision.get(key) for key in ("decision", "reason", "gain")}
