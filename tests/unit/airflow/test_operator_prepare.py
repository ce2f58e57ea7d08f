"""PrepareRunOperator: the run's params checked and its plan written before any work, the
roots taken from the environment (narrowed by Airflow Variables), refused params named,
Asset events limited to the DAG's event params."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.layout import RunLayout
from slmops.pipeline import locations
from slmops.pipeline.params import EVENT_PARAMS
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


def asset_event(params, *, at: int = 10, uri: str = "slmops://data/tones"):
    """One asset event as Airflow hands it to a task: ``extra["params"]`` carries
    ``params``, sent at ``at`` o'clock on 2026-11-29."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset={"name": uri, "uri": uri, "extra": {}},
        extra={"params": params, "sha256": "0" * 64},
        source_task_id="watch",
        source_dag_id="slm_data_watch",
        source_run_id=f"scheduled__2026-11-29T{at:02d}:00:00+00:00",
        source_map_index=-1,
        source_aliases=[],
        timestamp=datetime(2026, 11, 29, at, tzinfo=UTC),
    )


def asset_events(params, *more):
    """The triggering asset events of a run started by one event whose extra carries
    ``params`` (plus ``more`` events), as Airflow builds them for the task's context."""
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    return TriggeringAssetEventsAccessor.build([asset_event(params), *more])


def test_params_sent_with_the_triggering_asset_event_are_applied(roots, context, form):
    (roots.data / "new_tones.jsonl").write_text((roots.data / "tones.jsonl").read_text())
    events = asset_events({"data_files": ["new_tones.jsonl"]})
    ctx = context(params=form, triggering_asset_events=events)
    plan = PrepareRunOperator(task_id="prepare").execute(ctx)
    assert plan["validation"]["data"]["data_files"] == [str(roots.data / "new_tones.jsonl")]
    assert plan["model_name"] == "tones"  # the form's other params stay


@pytest.mark.parametrize(
    "change",
    [
        {"model_name": "someone-elses"},
        {"max_loss_gap": 1e9},
        {"min_improvement": -1.0},
        {"data_name": "huge/hub-dataset"},
        {"max_steps": 7},
        {"data_files": ["tones.jsonl"], "model_name_or_path": "other/base"},
    ],
)
def test_an_event_may_set_only_the_dags_event_params(roots, context, form, change):
    """Finding: an event's extra["params"] could change any form field (the published
    name, the gates, the hub dataset...)."""
    refused = next(name for name in sorted(change) if name not in EVENT_PARAMS)
    events = asset_events(change)
    with pytest.raises(AirflowFailException) as failed:
        PrepareRunOperator(task_id="prepare").execute(
            context(params=form, triggering_asset_events=events)
        )
    message = str(failed.value)
    assert f"sets {refused!r}, which an event may not set" in message
    assert "the asset event of slmops://data/tones at 2026-11-29T10:00:00+00:00" in message
    assert "events set only: data_files, train_split, eval_split" in message
    assert not roots.artifacts.exists()


def test_a_dag_may_declare_other_event_params_but_never_the_name_or_gates(roots, context, form):
    events = asset_events({"max_steps": 7})
    operator = PrepareRunOperator(task_id="prepare", event_params=("data_files", "max_steps"))
    plan = operator.execute(context(params=form, triggering_asset_events=events))
    assert plan["finetune"]["max_steps"] == 7

    for never in ("model_name", "max_loss_gap"):
        operator = PrepareRunOperator(task_id="prepare", event_params=("data_files", never))
        with pytest.raises(AirflowFailException, match=f"event param '{never}' may not be set"):
            operator.execute(context(params=form, triggering_asset_events=events))
    with pytest.raises(AirflowFailException, match="event param 'colour' is not a param"):
        PrepareRunOperator(task_id="prepare", event_params=("colour",)).execute(
            context(params=form, triggering_asset_events=events)
        )


def test_the_newest_events_params_are_taken_whole_never_mixed(roots, context, form, capsys):
    """Finding: params of several queued events were merged key by key."""
    for name in ("older.jsonl", "newer.jsonl"):
        (roots.data / name).write_text((roots.data / "tones.jsonl").read_text())
    older = asset_event({"data_files": ["older.jsonl"], "max_steps": 7}, at=9)
    newer = asset_event({"data_files": ["newer.jsonl"]}, at=11, uri="slmops://data/other")
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    events = TriggeringAssetEventsAccessor.build([newer, older])  # not in time order
    operator = PrepareRunOperator(task_id="prepare", event_params=("data_files", "max_steps"))
    plan = operator.execute(context(params=form, triggering_asset_events=events))
    assert plan["validation"]["data"]["data_files"] == [str(roots.data / "newer.jsonl")]
    assert plan["finetune"]["max_steps"] == 200  # the older event's max_steps is not mixed in
    logged = capsys.readouterr().out  # the task logger writes to stdout here
    assert "superseded by a newer event: the asset event of slmops://data/tones at" in logged
    assert "params from the asset event of slmops://data/other at 2026-11-29T11:00" in logged


def test_the_newest_event_without_params_leaves_the_dags_params(roots, context, form):
    (roots.data / "older.jsonl").write_text((roots.data / "tones.jsonl").read_text())
    events = asset_events({"data_files": ["older.jsonl"]}, asset_event(None, at=12))
    plan = PrepareRunOperator(task_id="prepare").execute(
        context(params=form, triggering_asset_events=events)
    )
    assert plan["params"]["data_files"] == ["tones.jsonl"]


def test_event_params_that_are_not_an_object_are_refused(roots, context, form):
    events = asset_events(["data_files", "x.jsonl"])
    with pytest.raises(AirflowFailException, match=r"extra\['params'\] must be an object"):
        PrepareRunOperator(task_id="prepare").execute(
            context(params=form, triggering_asset_events=events)
        )
    assert not roots.artifacts.exists()


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


def test_airflow_variables_narrow_the_deployments_roots(roots, context, monkeypatch, form):
    narrower = roots.data / "team-a"
    narrower.mkdir()
    (narrower / "only_here.jsonl").write_text((roots.data / "tones.jsonl").read_text())
    # An Airflow Variable from its environment secrets backend (AIRFLOW_VAR_<KEY>).
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_ARTIFACTS_ROOT", str(roots.artifacts / "team-a"))
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_DATA_ROOTS", str(narrower))
    assert configured_roots() == (roots.artifacts / "team-a", [narrower])
    plan = PrepareRunOperator(task_id="prepare").execute(
        context(params={**form, "data_files": ["only_here.jsonl"]})
    )
    assert plan["run_dir"].startswith(str(roots.artifacts / "team-a" / "runs"))
    with pytest.raises(AirflowFailException, match="param data_files: tones.jsonl does not exist"):
        PrepareRunOperator(task_id="prepare").execute(context(params=form))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLMOPS_DATA_ROOTS", "/"),
        ("SLMOPS_DATA_ROOTS", "{data}:/etc"),
        ("SLMOPS_DATA_ROOTS", "{data}/../"),
        ("SLMOPS_DATA_ROOTS", "relative/folder"),
        ("SLMOPS_ARTIFACTS_ROOT", "/tmp"),
        ("SLMOPS_ARTIFACTS_ROOT", "{data}"),
    ],
)
def test_a_variable_cannot_widen_the_deployments_roots(
    roots, context, monkeypatch, form, variable, value
):
    """Finding: the Variables replaced the environment's roots, so anyone who may edit
    Variables could let a trigger read any file (data roots "/")."""
    value = value.format(data=roots.data)
    monkeypatch.setenv(f"AIRFLOW_VAR_{variable}", value)
    with pytest.raises(AirflowFailException) as failed:
        PrepareRunOperator(task_id="prepare").execute(context(params=form))
    message = str(failed.value)
    assert message.startswith(f"Airflow Variable {variable.lower()} = {value!r}: ")
    deployment = roots.data if variable == "SLMOPS_DATA_ROOTS" else roots.artifacts
    assert f"inside the deployment's roots ({deployment})" in message
    assert not roots.artifacts.exists()


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
