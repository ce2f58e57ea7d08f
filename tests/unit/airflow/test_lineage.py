"""The operators' OpenLineage: slmops lineage records as OpenLineage datasets and facets."""

from __future__ import annotations

import logging

from slmops_airflow.lineage import LineageReporting, operator_lineage

DESCRIPTION = {
    "inputs": [
        {
            "namespace": "file",
            "name": "/data/tones.jsonl",
            "version": "ab12",
            "assertions": [
                {"assertion": "expect_column_to_exist", "success": True, "column": "tone",
                 "actual": None, "expected": None},
            ],
        }
    ],
    "outputs": [{"namespace": "slmops://models", "name": "tones", "version": "run_1"}],
    "run": {"gates": {"passed": True, "gates": [{"name": "loss_gap", "passed": True}]}},
}  # fmt: skip


def test_a_description_becomes_openlineage_datasets_and_run_facets():
    from openlineage.client.serde import Serde

    lineage = operator_lineage(DESCRIPTION)
    [data] = lineage.inputs
    assert (data.namespace, data.name) == ("file", "/data/tones.jsonl")
    assert data.facets["version"].datasetVersion == "ab12"
    [check] = data.inputFacets["dataQualityAssertions"].assertions
    assert (check.assertion, check.success, check.column) == (
        "expect_column_to_exist",
        True,
        "tone",
    )
    [model] = lineage.outputs
    assert (model.namespace, model.name, model.facets["version"].datasetVersion) == (
        "slmops://models", "tones", "run_1"
    )  # fmt: skip
    facet = lineage.run_facets["slmops_gates"]
    assert facet.values["gates"][0]["name"] == "loss_gap"
    event_json = Serde.to_dict(facet)  # what the transport writes
    assert event_json["record"] == "gates" and event_json["_schemaURL"].endswith(
        "architecture.md#tracking"
    )


def test_no_description_is_empty_lineage():
    lineage = operator_lineage(None)
    assert lineage.inputs == [] and lineage.outputs == [] and lineage.run_facets == {}


class _Task(LineageReporting):
    log = logging.getLogger("test-lineage")


def test_a_lineage_problem_is_a_warning_not_a_failed_task(caplog):
    task = _Task()
    with caplog.at_level(logging.WARNING, "test-lineage"):
        task.describe_lineage("validation", {"no": "output_path"}, {})
    assert task.lineage is None
    assert "OpenLineage: could not describe validation's datasets" in caplog.text
    assert task.get_openlineage_facets_on_complete(None).inputs == []
