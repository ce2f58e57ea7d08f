"""One crashed HPO trial does not fail the search: its failure is recorded (trial.json,
then trials.json) and select_best picks among the trials that succeeded; it fails clearly
only when none did. The DAG runs select_best whatever became of the trial tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slmops.errors import SearchError, TrainingFolderBusy
from slmops.layout import TRIAL_NAME, RunLayout
from slmops.pipeline import stages
from slmops.testing import tiny_pipeline_data, tiny_pipeline_params

# A live process that holds a training folder's lock, as a zombie attempt does.
HOLD = """
import sys, time
from pathlib import Path
from slmops.training.lock import exclusive
with exclusive(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def search(tmp_path, tiny_model_dir):
    """Two planned trials of the tiny model, their data validated (check_data)."""
    data_root = tiny_pipeline_data(tmp_path / "data", tiny_model_dir)
    grid = {
        "search_strategy": {"type": "grid"},
        "search_space": {"learning_rate": {"type": "choice", "values": [1e-2, 3e-3]}},
    }
    conf = {**tiny_pipeline_params("hpo", eval_steps=2), "search": grid, "trial_max_steps": 2}
    plan = stages.plan_trials(
        conf,
        dag_id="slm_hpo",
        run_id="r1",
        artifacts_root=tmp_path / "artifacts",
        data_roots=[data_root],
    )
    stages.validate(plan["validation"])
    return plan


@pytest.fixture
def held(tmp_path):
    """Hold a folder's lock from another live process until the test ends."""
    started = []

    def hold(folder):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout.readline().strip() == "holding"

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_a_crashed_trial_is_recorded_and_the_search_goes_on(search, held):
    first, second = search["trials"]
    assert first["finetune"]["validation_path"] == search["validation"]["output_path"]
    succeeded = stages.run_trial(first)
    assert succeeded["status"] == "ok" and succeeded["steps"] == 2

    held(RunLayout(second["run_dir"]).finetune.root)
    with pytest.raises(TrainingFolderBusy):  # raised, so Airflow retries the trial task
        stages.run_trial(second)
    recorded = json.loads((Path(second["run_dir"]) / TRIAL_NAME).read_text())
    assert recorded["status"] == "failed" and recorded["metric"] is None
    assert recorded["error"].startswith("TrainingFolderBusy: ")
    assert "is being trained by pid" in recorded["error"]

    # Airflow hands select_best only the results of the trial tasks that returned.
    params = stages.select_best(search["run_dir"], [succeeded])
    assert params["learning_rate"] == first["params"]["learning_rate"]
    table = json.loads(RunLayout(search["run_dir"]).trials.read_text())
    assert table["best_index"] == 0
    assert [r["status"] for r in table["results"]] == ["ok", "failed"]
    assert table["results"][1] == recorded


def test_a_trial_that_left_nothing_counts_as_failed_and_none_left_fails_clearly(search):
    with pytest.raises(SearchError, match="no trial finished with metric measured: 2 of 2"):
        stages.select_best(search["run_dir"], [])
    table = json.loads(RunLayout(search["run_dir"]).trials.read_text())
    assert table["best_index"] is None
    assert [r["index"] for r in table["results"]] == [0, 1]
    assert all("the trial left no result" in r["error"] for r in table["results"])


def test_select_best_runs_once_every_trial_is_done_whatever_became_of_them():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import TriggerRule

    bag = DagBag(dag_folder=str(Path(__file__).parents[3] / "dags" / "slm_hpo.py"))
    assert not bag.import_errors
    select = bag.dags["slm_hpo"].get_task("select_best")
    assert select.trigger_rule == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
    assert {"trial", "plan_trials"} <= select.upstream_task_ids
