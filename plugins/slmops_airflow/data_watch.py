"""DataWatchOperator: emit the data file's Asset event only when the file changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator

from slmops_airflow._stage import failing_clearly
from slmops_airflow.prepare import configured_roots


class DataWatchOperator(BaseOperator):
    """Hash ``data_file`` (under the data roots) and compare it with the last check. A
    change succeeds and emits an event for the Asset ``slmops://data/STEM`` (DAGs scheduled
    on it retrain), with the new hash in its extra; no change (or the first sighting,
    which only records the file) skips the task, and a skipped task emits nothing."""

    template_fields: Sequence[str] = ("data_file",)
    ui_color = "#fff4e5"

    def __init__(self, *, data_file: str, **kwargs: Any) -> None:
        from slmops.pipeline.publish import data_asset_uri

        kwargs.setdefault("outlets", [Asset(data_asset_uri(data_file))])
        super().__init__(**kwargs)
        self.data_file = data_file

    def execute(self, context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from slmops.pipeline import stages

        artifacts, roots = configured_roots()
        with failing_clearly():
            seen = stages.watch_data(
                self.data_file,
                artifacts_root=artifacts,
                data_roots=roots,
                watcher=context["dag"].dag_id,
            )
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
