"""Every DAG file imports cleanly, light and fast, and follows the house rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))
HEAVY = ("torch", "transformers", "peft", "onnxruntime", "onnxruntime_genai", "great_expectations")

# Run in a fresh interpreter: the parse time and the modules loaded are the DAG file's own,
# not whatever earlier tests imported.
_PROBE = """
import json, sys, time
import airflow.sdk  # the scheduler has it loaded before it parses a file
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
errors = {path: str(error) for path, error in bag.import_errors.items()}
heavy = [module for module in sys.argv[2:] if module in sys.modules]
dags = sorted(bag.dag_ids)
print(json.dumps({"seconds": seconds, "errors": errors, "dags": dags, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


DAG_IDS = {
    "slm_data_watch",
    "slm_finetune",
    "slm_finetune_on_data_change",
    "slm_hpo",
    "slm_multi_adapter",
    "slm_tone",  # include/configs/pipelines/tone.yaml
    "slm_instructions",  # include/configs/pipelines/instructions.yaml
}


def test_there_are_dag_files():
    assert [path.name for path in DAG_FILES] == [
        "slm_data_watch.py",
        "slm_finetune.py",
        "slm_finetune_on_data_change.py",
        "slm_hpo.py",
        "slm_multi_adapter.py",
        "slm_pipelines.py",
    ]


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_parses_fast_without_heavy_imports(dag_file):
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(dag_file), *HEAVY],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["dags"], f"{dag_file.name} defines no DAG"
    assert result["heavy"] == [], f"{dag_file.name} imports {result['heavy']} at parse time"
    assert result["seconds"] < 1.0, f"{dag_file.name} took {result['seconds']:.2f} s to parse"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == DAG_IDS


def test_every_dag_has_tags_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_every_task_has_an_execution_timeout(dagbag):
    """A hung task (a stuck download, exporter or training) frees its worker slot."""
    from slmops_airflow.timeouts import STAGE_TIMEOUTS

    longest = max(STAGE_TIMEOUTS.values())
    checked = 0
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            timeout = task.execution_timeout
            assert timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"
            assert timeout <= longest, f"{dag_id}.{task.task_id}: {timeout}"
            checked += 1
    assert checked > 50
    finetune = dagbag.dags["slm_finetune"]
    assert finetune.get_task("finetune").execution_timeout == STAGE_TIMEOUTS["finetune"]
    assert finetune.get_task("optimize").execution_timeout == STAGE_TIMEOUTS["optimize"]
    assert finetune.get_task("route_training").execution_timeout == STAGE_TIMEOUTS["small"]


def test_only_data_pointing_params_may_come_from_asset_events(dagbag):
    from slmops.pipeline.params import EVENT_PARAMS, NEVER_FROM_EVENTS

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            if task.task_type == "PrepareRunOperator":
                assert task.event_params == EVENT_PARAMS, dag_id
                assert not NEVER_FROM_EVENTS & set(task.event_params)


def test_every_param_is_typed_and_described(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name, param in dag.params.items():
            param = dag.params.get_param(name)
            assert param.description, f"{dag_id} param {name} has no description"
            assert "type" in param.schema, f"{dag_id} param {name} has no type"
            assert param.schema.get("section"), f"{dag_id} param {name} has no form section"
            assert param.schema.get("title"), f"{dag_id} param {name} has no form label"


def test_slm_finetune_shape(dagbag):
    dag = dagbag.dags["slm_finetune"]
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    assert {"validate", "finetune", "evaluate", "publish"} <= set(downstream["prepare"])
    assert downstream["validate"] == ["route_training"]
    assert downstream["route_training"] == ["finetune", "finetune_gpu"]
    assert downstream["evaluate"] == ["optimize", "optimize_gpu"]
    assert downstream["report"] == ["publish"]
    assert dag.task_dict["finetune_gpu"].queue == "gpu"
    assert dag.task_dict["optimize_gpu"].queue == "gpu"
    assert dag.task_dict["finetune"].queue == "default"
    assert dag.task_dict["evaluate"].trigger_rule == "none_failed_min_one_success"
    assert dag.task_dict["report"].trigger_rule == "all_done"


def test_trigger_form_refuses_invalid_values(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.dags["slm_finetune"].params
    valid = params.validate()
    assert valid["targets"] == ["cpu-int4"] and valid["model_name_or_path"]
    bad = {
        "lora_r": 0,
        "method": "prefix",
        "targets": ["tpu-int2"],
        "learning_rate": 0,
        "model_name": "Has Spaces",
        "device": "quantum",
        "max_steps": "many",
    }
    for name, value in bad.items():
        param = params.get_param(name)
        with pytest.raises(ParamValidationError):
            param.resolve(value)


def test_targets_is_a_multi_select_of_the_target_list(dagbag):
    from slmops.export.targets import TARGETS

    schema = dagbag.dags["slm_finetune"].params.get_param("targets").schema
    assert schema["type"] == "array"
    assert schema["examples"] == list(TARGETS) == schema["items"]["enum"]
    assert schema["minItems"] == 1
    assert schema["title"] == "ONNX targets"


def test_the_plugins_folder_shadows_no_library():
    """Airflow imports each .py file in the plugins folder as a top-level module named after
    the file; plugins/.airflowignore keeps slmops_airflow/evaluate.py from becoming
    `evaluate` (Hugging Face's), which broke the evaluate task once."""
    probe = """
import sys
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
import evaluate, slmops_airflow.evaluate
assert hasattr(evaluate, "load"), evaluate.__file__
print(sorted(name for name in ("evaluate", "report", "publish", "form", "prepare", "validate",
                                "optimize", "finetune") if name in sys.modules))
"""
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "['evaluate']"


def test_data_change_dag_runs_on_the_dataset_asset_or_weekly(dagbag):
    from airflow.sdk import AssetOrTimeSchedule

    dag = dagbag.dags["slm_finetune_on_data_change"]
    schedule = dag.timetable
    assert type(schedule).__name__ == AssetOrTimeSchedule.__name__
    assert [asset.uri for asset in schedule.asset_condition.objects] == [
        "slmops://data/phrase_tones"
    ]
    assert schedule.timetable.expression == "0 3 * * 1"
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    after_export = ["approve", "challenge", "publish", "report"]
    assert downstream["optimize"] == downstream["optimize_gpu"] == after_export
    assert downstream["challenge"] == ["approve", "publish", "report"]
    assert downstream["approve"] == ["publish", "report"]
    assert downstream["report"] == ["publish"]
    assert dag.max_active_runs == 1
    assert "promotion_margin" in dag.params
    assert "promotion_margin" not in dagbag.dags["slm_finetune"].params
    # A retrained champion waits for a reviewer; a run of slm_finetune does not.
    assert dag.params["require_approval"] is True
    assert dagbag.dags["slm_finetune"].params["require_approval"] is False
    assert "require_approval" not in dagbag.dags["slm_multi_adapter"].params


def test_hpo_maps_trials_then_runs_the_pipeline_with_the_best(dagbag):
    dag = dagbag.dags["slm_hpo"]
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    assert downstream["check_data"] == ["trial"]
    assert downstream["trial"] == ["select_best"]
    assert "prepare" in downstream["select_best"]
    assert dag.params.get_param("search").schema["type"] == "object"
    assert dag.params["trial_max_steps"] == 50


def test_multi_adapter_maps_each_stage_over_the_adapters(dagbag):
    dag = dagbag.dags["slm_multi_adapter"]
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    assert downstream["validate"] == ["finetune"]
    assert downstream["finetune"] == ["evaluate"]
    assert downstream["evaluate"] == ["build_multi_adapter"]
    assert downstream["build_multi_adapter"] == ["publish", "report"]
    assert [adapter["name"] for adapter in dag.params["adapters"]] == ["label", "explain"]
    assert "data_files" not in dag.params and "method" not in dag.params


@pytest.mark.parametrize("dag_id", ["slm_finetune", "slm_finetune_on_data_change", "slm_hpo"])
def test_the_demo_dags_forms_start_on_the_demo_task(dagbag, dag_id):
    """The params model assumes no columns; the demo DAGs' forms give the demo's, so an
    unchanged trigger (`make demo`) names the tones of phrase_tones.jsonl as before."""
    params = dagbag.dags[dag_id].params
    assert params["model_name"] == "phrase-tones"
    assert params["data_files"] == ["phrase_tones.jsonl"]
    assert (params["template_kind"], params["input_field"], params["output_field"]) == (
        "chat",
        "phrase",
        "tone",
    )
    assert params["label_field"] == "tone" and params["suite"] == "phrase_tones"
    assert params["system_prompt"].startswith("Name the tone of the user's phrase")


def test_the_multi_adapter_form_shares_the_demo_chat_columns(dagbag):
    params = dagbag.dags["slm_multi_adapter"].params
    assert params["model_name"] == "phrase-tones-multi"
    assert (params["input_field"], params["output_field"]) == ("phrase", "tone")
    label, explain = params["adapters"]
    assert (label["template_kind"], label["label_field"], label["suite"]) == (
        "chat",
        "tone",
        "phrase_tones",
    )
    assert explain["template_kind"] == "template" and explain["suite"] == "default"
    # served adapters pack into one LoRA branch a layer (slmops.export.lora_fusion)
    assert params["target_modules"] == ["q_proj", "v_proj"]
    assert dagbag.dags["slm_finetune"].params["target_modules"] is None  # every projection


def test_config_driven_dags_take_their_defaults_from_the_yaml(dagbag):
    tone = dagbag.dags["slm_tone"]
    assert tone.params["targets"] == ["cpu-int4", "cpu-int8"]
    assert tone.params["method"] == "lora" and tone.params["model_name"] == "tones"
    assert "challenge" in tone.task_dict  # champion_challenger: true
    assert {"slmops", "config", "tones"} <= set(tone.tags)
    instructions = dagbag.dags["slm_instructions"]
    assert instructions.params["method"] == "qlora" and instructions.params["device"] == "gpu"
    assert instructions.params["targets"] == ["gpu-int4", "cpu-int4"]
    assert "challenge" not in instructions.task_dict


def test_a_wrong_pipeline_config_is_reported_alone(tmp_path):
    """One broken YAML must not take the other config DAGs down with it: it becomes a
    paused DAG naming file and fields, whose task fails with that error."""
    (tmp_path / "good.yaml").write_text(
        "params: {model_name: good, data_files: [a.csv], text_template: '{q} -> {a}'}\n"
    )
    (tmp_path / "broken.yaml").write_text(
        "params:\n  model_name: broken\n  lora_r: 0\n  targets: [tpu-int2]\n"
    )
    (tmp_path / "bad_cron.yaml").write_text(
        "schedule: '99 3 * * 1'\nparams: {model_name: cron, data_files: [a.csv], "
        "text_template: '{q} -> {a}'}\n"
    )
    (tmp_path / "no_data.yaml").write_text(
        "on_data_change: true\nparams: {model_name: nodata, data_name: org/set, "
        "text_template: '{q} -> {a}'}\n"
    )
    env = {**os.environ, "SLMOPS_PIPELINES_DIR": str(tmp_path)}
    probe = subprocess.run(
        [sys.executable, "-c", _BROKEN_PROBE, str(DAGS_DIR / "slm_pipelines.py")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert set(result["dags"]) == {"slm_good", "slm_broken", "slm_bad_cron", "slm_no_data"}
    assert result["dags"]["slm_good"]["tasks"] > 5 and not result["dags"]["slm_good"]["broken"]
    broken = result["dags"]["slm_broken"]
    assert broken["broken"] and broken["tasks"] == 1 and broken["paused"]
    assert f"{tmp_path / 'broken.yaml'}: params.lora_r: Input should be greater" in broken["doc"]
    assert "params.targets.0: Input should be 'cpu-int4'" in broken["doc"]
    assert (
        "'99 3 * * 1' is not a valid 5-field cron expression"
        in (result["dags"]["slm_bad_cron"]["doc"])
    )
    assert "on_data_change needs params.data_files" in result["dags"]["slm_no_data"]["doc"]


_BROKEN_PROBE = """
import json, sys
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {
    dag_id: {
        "tasks": len(dag.tasks),
        "broken": "broken-config" in dag.tags,
        "paused": bool(dag.is_paused_upon_creation),
        "doc": dag.doc_md or "",
    }
    for dag_id, dag in bag.dags.items()
}
print(json.dumps({"errors": {p: str(e) for p, e in bag.import_errors.items()}, "dags": dags}))
"""


def test_a_broken_configs_task_fails_with_its_error(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from slmops_airflow.broken_config import broken_config_dag

    dag = broken_config_dag("slm_x", tmp_path / "x.yaml", "x.yaml: params.lora_r: too small")
    with pytest.raises(AirflowFailException, match="params.lora_r: too small"):
        dag.get_task("config_error").python_callable()


@pytest.mark.parametrize("dag_id", ["slm_finetune_on_data_change", "slm_tone"])
def test_unpausing_a_cron_dag_waits_for_its_next_slot(dagbag, dag_id, monkeypatch):
    """No start_date, so the first scheduled run is the next cron time: unpausing does
    not start a retraining at once for the slot that has just passed. Checked on a Monday
    ten hours after the weekly 03:00 slot, where Airflow's default (run_immediately=False)
    still runs that slot at once."""
    import pendulum
    from airflow.timetables import trigger
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    monday_afternoon = pendulum.datetime(2026, 11, 30, 13, 25, tz="UTC")
    monkeypatch.setattr(trigger, "utcnow", lambda: monday_afternoon)

    dag = dagbag.dags[dag_id]
    assert dag.start_date is None and not dag.catchup
    cron = getattr(dag.timetable, "timetable", dag.timetable)  # inside AssetOrTimeSchedule
    scheduler_side = CronTriggerTimetable(
        cron.expression, timezone="UTC", run_immediately=cron.run_immediately
    )
    first = scheduler_side.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup),
    )
    assert first.run_after == pendulum.datetime(2026, 12, 7, 3, 0, tz="UTC")
