"""PublishModelOperator: ship a passed run as a model version and an Asset event."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow._stage import failing_clearly
from slmops_airflow.lineage import LineageReporting
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.ui.links import PublishReportLink

MODELS_ALIAS = "slmops-models"


class PublishModelOperator(LineageReporting, BaseOperator):
    """Publish the run folder ``run_dir`` under ``models_root`` (see
    ``slmops.pipeline.publish``) and emit an event for the Asset
    ``slmops://models/NAME`` through the alias ``slmops-models``, with the manifest's
    key facts as its extra; DAGs scheduled on that Asset start when a version lands.
    Refuses a run whose validation, gates or parity did not all pass. ``run_dir`` must be
    this run's folder and ``models_root`` lie inside the configured artifacts root.
    """

    template_fields: Sequence[str] = ("run_dir", "models_root")
    ui_color = "#e6f4ea"
    operator_extra_links = (PublishReportLink(),)

    def __init__(
        self,
        *,
        run_dir: str | Any,
        models_root: str | Any,
        alias: str = MODELS_ALIAS,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["publish"],
        **kwargs,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(alias)])
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.run_dir = run_dir
        self.models_root = models_root
        self.alias = alias

    def execute(self, context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from slmops.errors import NotPromoted
        from slmops.pipeline import stages
        from slmops.pipeline.planned import inside_run
        from slmops_airflow.roots import checked_run_dir, configured_roots
        from slmops_airflow.tracking import tracking_uri

        try:
            with failing_clearly():
                run_dir = checked_run_dir(self.run_dir, context, "run_dir")
                artifacts, _ = configured_roots()
                models_root = inside_run(
                    self.models_root, artifacts, "models_root", folder="the artifacts root"
                )
                manifest = stages.publish(
                    run_dir,
                    models_root,
                    tracking_uri=tracking_uri(),
                    log=self.log.info,
                )
        except AirflowFailException as exc:
            if isinstance(exc.__cause__, NotPromoted):  # the champion stays; not a failure
                raise AirflowSkipException(str(exc)) from None
            raise
        facts = {
            "version": manifest["version"],
            "path": manifest["path"],
            "targets": sorted(manifest["targets"]),
            "dataset_fingerprint": manifest["dataset_fingerprint"],
            **manifest["metrics"],
        }
        context["outlet_events"][AssetAlias(self.alias)].add(
            Asset(uri=manifest["uri"], name=manifest["uri"]), extra=facts
        )
        self.log.info(
            "published %s version %s at %s", manifest["uri"], facts["version"], facts["path"]
        )
        self.describe_lineage("publish", run_dir, manifest)
        return facts
