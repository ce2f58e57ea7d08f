"""OpenLineage for the slmops operators: what each task read and wrote.

The operators implement the OpenLineage provider's ``get_openlineage_facets_on_complete``
hook (the provider calls it after ``execute``, in the task's process, when a transport is
configured); ``slmops.tracking.lineage`` says which datasets a stage read and wrote, and
this module turns that into OpenLineage datasets and facets. With the provider absent or
no transport set, nothing here runs.
"""

from __future__ import annotations

import functools
from typing import Any

# The custom run facet's schema: where slmops facets are described.
FACET_SCHEMA = "https://github.com/slmops/slmops/blob/main/docs/architecture.md#tracking"


class LineageReporting:
    """Mixin: ``execute`` sets ``self.lineage`` (a ``slmops.tracking.lineage`` dict)."""

    lineage: dict | None = None

    def describe_lineage(self, stage: str, *args: Any) -> None:
        """Keep ``slmops.tracking.lineage.<stage>(*args)`` for the OpenLineage hook; a
        problem here is a warning, never a failed task."""
        from slmops.tracking import lineage

        try:
            self.lineage = getattr(lineage, stage)(*args)
        except Exception as exc:  # lineage is a by-product of the task, not its work
            self.log.warning("OpenLineage: could not describe %s's datasets: %s", stage, exc)

    def get_openlineage_facets_on_complete(self, task_instance: Any):
        return operator_lineage(self.lineage)


def operator_lineage(description: dict | None):
    from airflow.providers.openlineage.extractors import OperatorLineage

    if not description:
        return OperatorLineage()
    return OperatorLineage(
        inputs=[_dataset(entry, input_side=True) for entry in description["inputs"]],
        outputs=[_dataset(entry, input_side=False) for entry in description["outputs"]],
        run_facets={
            f"slmops_{name}": _run_facet(name, values)
            for name, values in description.get("run", {}).items()
        },
    )


def _dataset(entry: dict, *, input_side: bool):
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import (
        data_quality_assertions_dataset,
        dataset_version_dataset,
    )

    facets = {}
    if entry.get("version"):
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(entry["version"])
        )
    if not input_side:
        return OutputDataset(namespace=entry["namespace"], name=entry["name"], facets=facets)
    input_facets = {}
    if entry.get("assertions"):
        assertions = [
            data_quality_assertions_dataset.Assertion(
                assertion=check["assertion"],
                success=check["success"],
                column=check.get("column"),
                actual=check.get("actual"),
                expected=check.get("expected"),
            )
            for check in entry["assertions"]
        ]
        input_facets["dataQualityAssertions"] = (
            data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions)
        )
    return InputDataset(
        namespace=entry["namespace"], name=entry["name"], facets=facets, inputFacets=input_facets
    )


def _run_facet(name: str, values: dict):
    return _facet_class()(record=name, values=values)


@functools.cache
def _facet_class() -> type:
    """The slmops run facet, defined on first use (OpenLineage's client is imported only
    where lineage is emitted)."""
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define
    class SlmopsRunFacet(RunFacet):
        """One slmops record (hyperparameters, gates, metrics...) as a run facet."""

        record: str
        values: dict = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA

    return SlmopsRunFacet
