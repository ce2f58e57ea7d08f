"""DataWatchOperator: emit the data file's Asset event only when the file changed;
RecordDataLookOperator: remember the new hash once that event went out.

A change is recorded by a second task because Airflow emits a task's outlet events when
the task succeeds, after ``execute``: recording inside the check, a check killed before
its success would lose the change; recorded after, it is reported again instead.
``watch_data_file`` adds the pair to the current DAG."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator

from slmops_airflow._stage import failing_clearly
from slmops_airflow.roots import configured_roots
from slmops_airflow.timeouts import STAGE_TIMEOUTS


class DataWatchOperator(BaseOperator):
    """Hash ``data_file`` (under the data roots) and compare it with the last recorded
    look. A change succeeds and emits an event for the Asset ``slmops://data/STEM`` (DAGs
    scheduled on it retrain), with the new hash in its extra, and returns the look for
    RecordDataLookOperator; no change (or the first sighting, which only records the
    file) skips the task, and a skipped task emits nothing."""

    template_fields: Sequence[str] = ("data_file",)
    ui_color = "#fff4e5"

    def __init__(
        self,
        *,
        data_file: str,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["data_watch"],
        **kwargs: Any,
    ) -> None:
        from slmops.pipeline.publish import data_asset_uri

        kwargs.setdefault("outlets", [Asset(data_asset_uri(data_file))])
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.data_file = data_file

    def execute(self, context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from slmops.pipeline import stages

        seen = _as_watcher(context, stages.watch_data, self.data_file)
        path = seen["path"]
        if seen["first_seen"]:
            raise AirflowSkipException(f"{path}: first look, recorded {seen['sha256'][:12]}")
        if not seen["changed"]:
            raise AirflowSkipException(f"{path}: unchanged ({seen['sha256'][:12]})")
        self.log.info(
            "%s changed: %s -> %s", path, seen["previous_sha256"][:12], seen["sha256"][:12]
        )
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {
                key: seen[key] for key in ("path", "sha256", "previous_sha256", "size_bytes")
            }
        return seen


class RecordDataLookOperator(BaseOperator):
    """Record the hash of the look ``look`` (DataWatchOperator's result) for
    ``data_file``: runs only after that check succeeded, i.e. after its event."""

    template_fields: Sequence[str] = ("data_file", "look")
    ui_color = "#fff4e5"

    def __init__(
        self,
        *,
        data_file: str,
        look: Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["record_data_look"],
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.data_file = data_file
        self.look = look

    def execute(self, context) -> str:
        from slmops.pipeline import stages

        state = _as_watcher(context, stages.record_data_look, self.look, data_file=self.data_file)
        self.log.info("recorded %s for %s in %s", self.look["sha256"][:12], self.data_file, state)
        return str(state)


def _as_watcher(context, stage, *args: Any, **kwargs: Any) -> Any:
    """A data-watch stage run for this DAG (the watcher) with the configured roots; its
    errors fail the task clearly."""
    with failing_clearly():
        artifacts, roots = configured_roots()
        return stage(
            *args,
            **kwargs,
            artifacts_root=artifacts,
            data_roots=roots,
            watcher=context["dag"].dag_id,
        )


def watch_data_file(name: str, data_file: str) -> tuple[BaseOperator, BaseOperator]:
    """``watch_NAME`` (emits the event on a change) >> ``record_NAME`` (remembers it)."""
    watch = DataWatchOperator(task_id=f"watch_{name}", data_file=data_file)
    record = RecordDataLookOperator(
        task_id=f"record_{name}", data_file=data_file, look=watch.output
    )
    watch >> record
    return watch, record
