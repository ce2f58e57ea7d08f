"""PrepareRunOperator: the run's params checked and its plan written before any work, the
roots taken from Airflow Variables or the environment, refused params named."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.layout import RunLayout
from slmops.pipeline import locations
from slmops_airflow.prepare import PlanningOperator, PrepareRunOperator, configured_roots

TARGETS = {"targets": ["cpu-fp32", "gpu-fp16"]}


def test_the_plan_is_written_into_the_runs_own_folder(roots, context, form):
    ctx = context(params={**form, **TARGETS}, run_id="manual__2026-11-29T10:00:00+00:00")
    plan = PrepareRunOperator(task_id="prepare").execute(ctx)

    run_dir = roots.artifacts / "runs/slm_finetune" / locations.safe_name(ctx["run_id"])
    assert plan["run_dir"] == str(run_dir)
    assert ":" not in run_dir.name  # the run id's timestamp, made one safe path component
    assert json.loads(RunLayout(run_dir).plan.read_text()) == plan
    assert (plan["dag_id"], plan["run_id"], plan["model_name"]) == (
        "slm_finetune",
        ctx["run_id"],
        "tones",
    )
    assert plan["validation"]["data"]["data_files"] == [str(roots.data / "tones.jsonl")]
    assert plan["finetune"]["output_path"] == str(run_dir / "finetune")
    assert (plan["cpu_targets"], plan["gpu_targets"]) == (["cpu-fp32"], ["gpu-fp16"])
    assert plan["models_root"] == str(roots.models)
    assert plan["train_on_gpu"] is False


def test_each_plan_key_is_its_own_xcom():
    assert PrepareRunOperator(task_id="prepare").multiple_outputs is True
    assert PrepareRunOperator(task_id="p2", multiple_outputs=False).multiple_outputs is False


def test_two_runs_never_share_a_folder(roots, context, form):
    first = PrepareRunOperator(task_id="prepare").execute(context(params=form, run_id="a:b"))
    second = PrepareRunOperator(task_id="prepare").execute(context(params=form, run_id="a_b"))
    assert first["run_dir"] != second["run_dir"]
    assert sorted(p.name for p in (roots.artifacts / "runs/slm_finetune").iterdir()) == sorted(
        [locations.safe_name("a:b"), "a_b"]
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model_name": "Has Spaces"}, "model_name"),
        ({"lora_r": 0}, "lora_r"),
        ({"method": "prefix"}, "method"),
        ({"targets": ["tpu-int2"]}, "targets"),
        ({"colour": "red"}, "colour"),
        ({"data_files": ["/etc/passwd"]}, "param data_files: /etc/passwd is outside"),
        ({"data_files": ["../../etc/passwd"]}, "param data_files: ../../etc/passwd is outside"),
        ({"data_files": ["missing.jsonl"]}, "param data_files: missing.jsonl does not exist"),
        ({"suite": "no_such_suite"}, "param suite: suite 'no_such_suite': no such suite"),
    ],
)
def test_refused_params_fail_the_task_naming_the_param_and_write_nothing(
    roots, context, form, change, named
):
    with pytest.raises(AirflowFailException, match=named.replace(".", r"\.")):
        PrepareRunOperator(task_id="prepare").execute(context(params={**form, **change}))
    assert not roots.artifacts.exists()


def test_conf_replaces_the_params_and_is_templated(roots, context, form):
    conf = {**form, "data_files": ["{{ params.file }}"], "model_name": "{{ params.name }}-best"}
    operator = PrepareRunOperator(task_id="prepare", conf=conf)
    assert tuple(operator.template_fields) == ("run_conf",)
    ctx = context(params={"file": "tones.jsonl", "name": "tones", "lora_r": 0})
    operator.render_template_fields(ctx)
    assert operator.run_conf == {
        **form,
        "data_files": ["tones.jsonl"],
        "model_name": "tones-best",
    }
    plan = operator.execute(ctx)  # the params' lora_r=0 is not read: conf replaces them
    assert plan["model_name"] == "tones-best"
    assert plan["params"]["lora_r"] == 16


def asset_events(params: dict):
    """The triggering asset events of a run started by one event whose extra carries
    ``params``, as Airflow builds them for the task's context."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    uri = "slmops://data/tones"
    event = AssetEventDagRunReferenceResult(
        asset={"name": uri, "uri": uri, "extra": {}},
        extra={"params": params, "sha256": "0" * 64},
        source_task_id="watch",
        source_dag_id="slm_data_watch",
        source_run_id="scheduled__2026-11-29T10:00:00+00:00",
        source_map_index=-1,
        source_aliases=[],
        timestamp=datetime(2026, 11, 29, 10, tzinfo=UTC),
    )
    return TriggeringAssetEventsAccessor.build([event])


def test_params_sent_with_the_triggering_asset_event_are_applied(roots, context, form):
    (roots.data / "new_tones.jsonl").write_text((roots.data / "tones.jsonl").read_text())
    events = asset_events({"data_files": ["new_tones.jsonl"], "max_steps": 7})
    ctx = context(params=form, triggering_asset_events=events)
    plan = PrepareRunOperator(task_id="prepare").execute(ctx)
    assert plan["validation"]["data"]["data_files"] == [str(roots.data / "new_tones.jsonl")]
    assert plan["finetune"]["max_steps"] == 7
    assert plan["model_name"] == "tones"  # the form's other params stay


def test_an_event_param_is_checked_like_the_forms(roots, context, form):
    events = asset_events({"data_files": ["/etc"]})
    with pytest.raises(AirflowFailException, match="param data_files: /etc is outside"):
        PrepareRunOperator(task_id="prepare").execute(
            context(params=form, triggering_asset_events=events)
        )
    assert not roots.artifacts.exists()


def test_an_event_without_params_changes_nothing(roots, context, form):
    ctx = context(params=form, triggering_asset_events=asset_events(None))
    plan = PrepareRunOperator(task_id="prepare").execute(ctx)
    assert plan["params"]["data_files"] == ["tones.jsonl"]


def test_roots_come_from_the_environment_without_variables(roots):
    assert configured_roots() == (roots.artifacts, [roots.data])


def test_airflow_variables_win_over_the_environment(roots, context, tmp_path, monkeypatch, form):
    other_data = tmp_path / "other-data"
    other_data.mkdir()
    (other_data / "only_here.jsonl").write_text((roots.data / "tones.jsonl").read_text())
    # An Airflow Variable from its environment secrets backend (AIRFLOW_VAR_<KEY>).
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_ARTIFACTS_ROOT", str(tmp_path / "var-artifacts"))
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_DATA_ROOTS", str(other_data))
    assert configured_roots() == (
        (tmp_path / "var-artifacts").resolve(),
        [other_data.resolve()],
    )
    plan = PrepareRunOperator(task_id="prepare").execute(
        context(params={**form, "data_files": ["only_here.jsonl"]})
    )
    assert plan["run_dir"].startswith(str((tmp_path / "var-artifacts").resolve()))
    with pytest.raises(AirflowFailException, match="param data_files: tones.jsonl does not exist"):
        PrepareRunOperator(task_id="prepare").execute(context(params=form))


def test_a_planning_operator_passes_where_the_run_lives(roots, context):
    seen = {}

    class Recording(PlanningOperator):
        def make_plan(self, conf, **where):
            seen.update(conf=conf, **where)
            return {"run_dir": "/somewhere"}

    plan = Recording(task_id="plan").execute(context(params={"k": 1}, run_id="r9"))
    assert plan == {"run_dir": "/somewhere"}
    assert seen == {
        "conf": {"k": 1},
        "dag_id": "slm_finetune",
        "run_id": "r9",
        "artifacts_root": roots.artifacts,
        "data_roots": [roots.data],
    }
