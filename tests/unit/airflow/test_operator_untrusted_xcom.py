"""XComs are untrusted input (the REST API can write them): a stage operator takes its
settings from the plan in its own run's folder, refuses settings that run code or reach
the network whatever the plan says, and the run_dir operators work only in their run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.layout import RunLayout
from slmops.pipeline import locations
from slmops_airflow.approval import ApprovePublishOperator
from slmops_airflow.champion import ChallengeChampionOperator
from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.multi_adapter import BuildMultiAdapterOperator
from slmops_airflow.optimize import OnnxOptimizeOperator
from slmops_airflow.prepare import PrepareRunOperator
from slmops_airflow.publish import PublishModelOperator
from slmops_airflow.report import ReportOperator
from slmops_airflow.validate import ValidateDatasetOperator


@pytest.fixture
def plan(context, form) -> dict:
    return PrepareRunOperator(task_id="prepare").execute(context(params=form))


def edit_plan(plan: dict, stage: str, **changes) -> dict:
    """The run's plan.json with ``changes`` in ``stage``'s slice (as a hand edit, or a
    plan from elsewhere, would leave it); returns the new slice."""
    path = RunLayout(plan["run_dir"]).plan
    written = json.loads(path.read_text())
    written[stage] = {**written[stage], **changes}
    path.write_text(json.dumps(written))
    return written[stage]


def run_stage(stage: str, settings, context, **more):
    operators = {
        "validation": lambda: ValidateDatasetOperator(task_id="validate", config=settings),
        "finetune": lambda: FineTuneOperator(task_id="finetune", config=settings),
        "evaluate": lambda: EvaluateModelOperator(task_id="evaluate", config=settings),
        "optimize": lambda: OnnxOptimizeOperator(
            task_id="optimize", config=settings, target="cpu-int4"
        ),
    }
    return operators[stage]().execute(context(**more))


@pytest.mark.parametrize(
    ("stage", "key", "forged"),
    [
        ("finetune", "max_steps", 1),
        ("finetune", "trust_remote_code", True),
        ("finetune", "loss", "os:system"),
        ("evaluate", "max_loss_gap", 1e9),
        ("evaluate", "extra_metrics", ["someone/hub-metric"]),
        ("optimize", "max_export_degradation", 1.0),
        ("optimize", "builder_options", {"int4_block_size": "16"}),
        ("validation", "max_seq_len", 4096),
    ],
)
def test_a_forged_setting_fails_naming_the_stage_and_key(plan, context, stage, key, forged):
    """Finding: stage operators ran whatever settings their config XCom held."""
    settings = {**plan[stage], key: forged}
    with pytest.raises(AirflowFailException) as failed:
        run_stage(stage, settings, context)
    message = str(failed.value)
    assert message.startswith(f"{stage} settings: {key} is {forged!r} in the task's input but ")
    assert str(RunLayout(plan["run_dir"]).plan) in message
    assert not RunLayout(plan["run_dir"]).finetune.root.exists()  # nothing ran


def test_settings_of_another_runs_folder_are_refused(plan, context, form, roots):
    other = PrepareRunOperator(task_id="prepare").execute(context(params=form, run_id="other"))
    with pytest.raises(AirflowFailException) as failed:
        run_stage("finetune", other["finetune"], context)
    assert str(failed.value).startswith(
        f"finetune settings: output_path: {other['finetune']['output_path']} is not inside "
        f"this run's folder {plan['run_dir']}"
    )
    for settings in (
        {**plan["evaluate"], "run_path": "/tmp/elsewhere/finetune"},
        {**plan["evaluate"], "run_path": f"{plan['run_dir']}/../other/finetune"},
        {**plan["evaluate"], "run_path": "finetune"},
    ):
        with pytest.raises(AirflowFailException, match="evaluate settings: run_path: "):
            run_stage("evaluate", settings, context)


def test_the_run_folder_follows_the_dag_and_run_not_the_input(plan, context):
    # The same settings in another run of the same DAG: that run has its own folder.
    with pytest.raises(AirflowFailException, match="is not inside this run's folder"):
        run_stage("optimize", plan["optimize"], context, run_id="another-run")


@pytest.mark.parametrize(
    ("stage", "key", "value"),
    [
        ("finetune", "trust_remote_code", True),
        ("finetune", "loss", "my_losses:focal"),
        ("optimize", "builder_options", {"int4_block_size": "16"}),
        ("optimize", "trust_remote_code", True),
    ],
)
def test_code_and_network_settings_never_come_from_a_dag_run(plan, context, stage, key, value):
    """Even a plan that holds them (hand-edited) does not get them into a DAG run."""
    settings = edit_plan(plan, stage, **{key: value})
    with pytest.raises(AirflowFailException) as failed:
        run_stage(stage, settings, context)
    assert str(failed.value).startswith(f"{stage} settings: {key} cannot come from a DAG run (")
    assert not RunLayout(plan["run_dir"]).finetune.root.exists()


def test_evaluate_refuses_a_hub_metric_or_a_run_trained_with_remote_code(plan, context, json_file):
    training = RunLayout(plan["run_dir"]).finetune
    trained = {"config": {**plan["finetune"], "trust_remote_code": True}, "global_step": 1}
    json_file(training.metrics, trained)
    with pytest.raises(AirflowFailException, match="evaluate settings: trust_remote_code cannot"):
        run_stage("evaluate", plan["evaluate"], context)

    json_file(training.metrics, {**trained, "config": plan["finetune"]})
    settings = edit_plan(plan, "evaluate", extra_metrics=["accuracy", "someone/hub-metric"])
    with pytest.raises(AirflowFailException) as failed:
        run_stage("evaluate", settings, context)
    assert str(failed.value).startswith(
        "evaluate settings: extra_metrics cannot come from a DAG run (someone/hub-metric "
        "would load a metric from the hub or a file)"
    )
    assert not training.evaluation.exists()


def test_the_command_line_keeps_those_settings(plan):
    """The stages API without ``from_run`` (the CLI, ``slmops run``): not refused; this
    run stops later, at the missing training."""
    from slmops.pipeline import stages

    settings = {**plan["optimize"], "builder_options": {"int4_block_size": "16"}}
    with pytest.raises(Exception, match="no training_metrics.json"):
        stages.optimize(settings, "cpu-int4")


def test_each_adapters_settings_match_its_own_plan(roots, context, form):
    """Multi-adapter runs keep each adapter's plan in its sub-folder; their finetune
    settings turn merge_adapter off (the only switch an input may turn off)."""
    from slmops.pipeline.planned import planned_settings
    from slmops.testing import TONE_TEMPLATE
    from slmops_airflow.multi_adapter import PlanAdaptersOperator

    adapter = {"data_files": ["tones.jsonl"], "template_kind": "template", "suite": "default"}
    params = {
        **form,
        "adapters": [
            {"name": "label", **adapter, "text_template": TONE_TEMPLATE, "label_field": "tone"},
            {"name": "echo", **adapter, "text_template": "{phrase} -> {tone}"},
        ],
        "multi_target": "cpu-fp32",
    }
    ctx = context(dag_id="slm_multi_adapter", params=params)
    multi = PlanAdaptersOperator(task_id="plan_adapters").execute(ctx)
    run_dir = Path(multi["run_dir"])
    for index, name in enumerate(("label", "echo")):
        settings, plan = planned_settings(multi["finetune"][index], "finetune", run_dir=run_dir)
        assert plan["run_dir"] == str(RunLayout(run_dir).adapter(name).root)
        assert settings == multi["finetune"][index] and settings["merge_adapter"] is False
    swapped = {**multi["finetune"][0], "label_field": None}  # the echo adapter's label
    with pytest.raises(Exception, match="finetune settings: label_field is None in the task"):
        planned_settings(swapped, "finetune", run_dir=run_dir)


def planned_search(context, form) -> dict:
    """slm_hpo's plan_trials run for real: two trials over lora_r, 3 steps each."""
    from slmops_airflow.hpo import PlanTrialsOperator

    search = {
        "search_strategy": {"type": "random", "num_trials": 2, "seed": 7},
        "search_space": {"lora_r": {"type": "choice", "values": [4, 8]}},
    }
    ctx = context(dag_id="slm_hpo", params={**form, "search": search, "trial_max_steps": 3})
    return PlanTrialsOperator(task_id="plan_trials").execute(ctx)


def test_the_hpo_searchs_data_check_matches_the_search_plan(roots, context, form):
    """slm_hpo's check_data validates with the search's plan (hpo/plan.json)."""
    from slmops.pipeline.planned import planned_settings

    hpo = planned_search(context, form)
    run_dir = Path(hpo["run_dir"])
    settings, plan = planned_settings(hpo["validation"], "validation", run_dir=run_dir)
    assert settings == hpo["validation"] and "trials" in plan
    with pytest.raises(Exception, match="validation settings: max_seq_len is 8 in the task"):
        planned_settings({**hpo["validation"], "max_seq_len": 8}, "validation", run_dir=run_dir)


@pytest.mark.parametrize(
    "make",
    [
        lambda run: ReportOperator(task_id="report", run_dir=run),
        lambda run: ChallengeChampionOperator(task_id="challenge", run_dir=run),
        lambda run: ApprovePublishOperator(task_id="approve", run_dir=run),
        lambda run: BuildMultiAdapterOperator(task_id="build", run_dir=run),
        lambda run: PublishModelOperator(task_id="publish", run_dir=run, models_root="/m"),
    ],
    ids=["report", "challenge", "approve", "build", "publish"],
)
def test_run_dir_must_be_this_runs_folder(finished_run, roots, context, make):
    """Finding: the report/publish/champion operators worked in whatever run_dir an XCom
    named (another run's, or any folder)."""
    other = finished_run(run_id="other")
    mine = locations.run_dir(roots.artifacts, "slm_finetune", "mine")
    before = sorted(path.relative_to(other) for path in other.rglob("*"))
    for run_dir in (str(other), "/etc", f"{mine}/../other"):
        with pytest.raises(AirflowFailException) as failed:
            make(run_dir).execute(context(run_id="mine"))
        assert str(failed.value).startswith(f"run_dir: {run_dir} is not inside this run's folder")
    assert sorted(path.relative_to(other) for path in other.rglob("*")) == before
    assert not roots.models.exists()


def test_publish_writes_only_under_the_artifacts_root(finished_run, roots, context, tmp_path):
    run = finished_run()
    elsewhere = tmp_path / "elsewhere-models"
    operator = PublishModelOperator(task_id="publish", run_dir=str(run), models_root=str(elsewhere))
    with pytest.raises(AirflowFailException) as failed:
        operator.execute(context())
    assert str(failed.value).startswith(
        f"models_root: {elsewhere} is not inside the artifacts root {roots.artifacts}"
    )
    assert not elsewhere.exists()


def test_a_run_dir_inside_this_runs_folder_is_accepted(finished_run, context, tmp_path):
    run = finished_run()
    shutil.rmtree(run / "report", ignore_errors=True)
    result = ReportOperator(task_id="report", run_dir=f"{run}/./").execute(context())
    assert result["report"] == str(run / "report/report.html")


def test_an_hpo_trial_must_be_one_its_search_planned(roots, context, form):
    """The trial operator's input (an XCom) against hpo/plan.json, through the stages API
    that TrialOperator calls."""
    from slmops.errors import ConfigError
    from slmops.pipeline import stages

    hpo = planned_search(context, form)
    run_dir = Path(hpo["run_dir"])
    trial = hpo["trials"][1]
    forged = {**trial, "evaluate": {**trial["evaluate"], "fail_on_gates": True, "loss": "x:y"}}
    with pytest.raises(ConfigError, match="trial settings: evaluate is "):
        stages.run_trial(forged, from_run=run_dir)
    with pytest.raises(ConfigError, match="trial settings: no trial 7 in the run's plan"):
        stages.run_trial({**trial, "index": 7}, from_run=run_dir)
    assert not Path(trial["run_dir"], "finetune").exists()


def test_only_narrowing_switches_may_differ_from_the_plan(context, form):
    """The test cluster's CUDA-less gpu worker runs a gpu task on CPU
    (slmops_airflow.gpu_queue); nothing may switch the other way."""
    from slmops.pipeline.planned import planned_settings

    gpu = PrepareRunOperator(task_id="prepare").execute(context(params={**form, "device": "gpu"}))
    run_dir = Path(gpu["run_dir"])
    on_cpu = {**gpu["finetune"], "device": "cpu"}
    assert planned_settings(on_cpu, "finetune", run_dir=run_dir)[0] == on_cpu

    cpu = PrepareRunOperator(task_id="prepare").execute(
        context(params={**form, "device": "cpu"}, run_id="cpu-run")
    )
    with pytest.raises(Exception, match="finetune settings: device is 'gpu' in the task"):
        planned_settings({**cpu["finetune"], "device": "gpu"}, "finetune", run_dir=cpu["run_dir"])
