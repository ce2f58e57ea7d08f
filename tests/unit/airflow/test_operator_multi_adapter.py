"""The multi-adapter operators: every adapter planned (or refused) before one trains; the
shared base built only from a planned run folder."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.layout import RunLayout
from slmops_airflow.multi_adapter import BuildMultiAdapterOperator, PlanAdaptersOperator

DAG_ID = "slm_multi_adapter"


@pytest.fixture
def multi_params(form):
    from slmops.testing import TONE_TEMPLATE

    adapter = {"data_files": ["tones.jsonl"], "template_kind": "template", "suite": "default"}
    return {
        **form,
        "method": "lora",
        "lora_r": 4,
        "adapters": [
            {"name": "label", **adapter, "text_template": TONE_TEMPLATE, "label_field": "tone"},
            {"name": "echo", **adapter, "text_template": "{phrase} -> {tone}"},
        ],
        "multi_target": "cpu-fp32",
    }


def plan_adapters(context, params) -> dict:
    return PlanAdaptersOperator(task_id="plan_adapters").execute(
        context(dag_id=DAG_ID, params=params)
    )


def test_every_adapter_is_planned_with_the_shared_settings(roots, context, multi_params):
    plan = plan_adapters(context, multi_params)
    run = RunLayout(plan["run_dir"])
    assert run.root.parent == roots.artifacts / "runs" / DAG_ID
    assert [adapter["name"] for adapter in plan["adapters"]] == ["label", "echo"]
    assert plan["target"] == "cpu-fp32"
    # One entry per adapter in each per-stage list (the DAG maps over them).
    assert len(plan["validation"]) == len(plan["finetune"]) == len(plan["evaluate"]) == 2
    assert [c["output_path"] for c in plan["finetune"]] == [
        str(run.adapter("label").finetune.root),
        str(run.adapter("echo").finetune.root),
    ]
    assert [c["label_field"] for c in plan["finetune"]] == ["tone", None]
    assert {c["lora_r"] for c in plan["finetune"]} == {4}
    assert all(c["merge_adapter"] is False for c in plan["finetune"])
    assert run.is_multi_adapter
    assert json.loads(run.multi_plan.read_text())["adapters"] == plan["adapters"]
    for name in ("label", "echo"):
        assert json.loads(run.adapter(name).plan.read_text())["model_name"] == f"tones-{name}"
    assert PlanAdaptersOperator(task_id="p").multiple_outputs is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "dora"}, "param method: dora cannot share a base"),
        ({"multi_target": "gpu-int9"}, "multi_target"),
        ({"adapters": []}, "adapters: List should have at least 2 items"),
    ],
)
def test_refused_params_fail_before_any_adapter_trains(
    roots, context, multi_params, change, message
):
    with pytest.raises(AirflowFailException, match=message):
        plan_adapters(context, {**multi_params, **change})
    assert not roots.artifacts.exists()


def test_an_adapter_refused_by_name_writes_no_plan(roots, context, multi_params):
    adapters = [*multi_params["adapters"]]
    adapters[1] = {**adapters[1], "data_files": ["/etc/passwd"]}
    with pytest.raises(AirflowFailException, match="/etc/passwd is outside the data roots"):
        plan_adapters(context, {**multi_params, "adapters": adapters})
    assert not roots.artifacts.exists()  # the first adapter's plan was not written either


def test_building_needs_a_planned_multi_adapter_run(finished_run, context):
    run = finished_run(dag_id=DAG_ID)  # a single pipeline's folder: no multi-adapter plan
    operator = BuildMultiAdapterOperator(task_id="build", run_dir="{{ params.run }}")
    assert tuple(operator.template_fields) == ("run_dir",)
    ctx = context(dag_id=DAG_ID, params={"run": str(run)})
    operator.render_template_fields(ctx)
    assert operator.run_dir == str(run)
    with pytest.raises(AirflowFailException, match="no multi-adapter plan"):
        operator.execute(ctx)
    assert not RunLayout(run).multi.exists()
