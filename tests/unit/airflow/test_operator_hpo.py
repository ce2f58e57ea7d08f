"""The HPO operators: trials planned (or refused) before any starts, a failing trial
recorded rather than raised, the best trial's settings returned."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.layout import RunLayout
from slmops_airflow.hpo import PlanTrialsOperator, SelectBestTrialOperator, TrialOperator

SEARCH = {
    "search_strategy": {"type": "random", "num_trials": 2, "seed": 7},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
}


@pytest.fixture
def hpo_params(form):
    return {**form, "search": SEARCH, "trial_max_steps": 12}


def plan_trials(context, params) -> dict:
    return PlanTrialsOperator(task_id="plan_trials").execute(
        context(dag_id="slm_hpo", params=params)
    )


def test_every_trial_is_planned_before_one_starts(roots, context, hpo_params, run_id):
    plan = plan_trials(context, hpo_params)
    run = RunLayout(plan["run_dir"])
    assert run.root == roots.artifacts / "runs/slm_hpo" / run.root.name
    assert [trial["index"] for trial in plan["trials"]] == [0, 1]
    for index, trial in enumerate(plan["trials"]):
        assert trial["run_dir"] == str(run.trial(index).root)
        assert trial["finetune"]["max_steps"] == 12
        assert trial["finetune"]["learning_rate"] == trial["params"]["learning_rate"]
        assert 1e-4 <= trial["params"]["learning_rate"] <= 1e-2
        assert json.loads(run.trial(index).plan.read_text())["run_id"] == run_id
    assert json.loads((run.hpo / "plan.json").read_text()) == plan
    assert PlanTrialsOperator(task_id="p").multiple_outputs is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": {"search_space": {}}}, "search_strategy"),
        ({"search_file": "/etc/passwd"}, "param search_file: /etc/passwd is outside"),
        ({"trial_max_steps": 0}, "trial_max_steps"),
        ({"lora_r": 0}, "lora_r"),
    ],
)
def test_a_bad_search_fails_before_any_trial_and_writes_nothing(
    roots, context, hpo_params, change, message
):
    with pytest.raises(AirflowFailException, match=message.replace(".", r"\.")):
        plan_trials(context, {**hpo_params, **change})
    assert not roots.artifacts.exists()


def test_a_trial_whose_training_fails_is_recorded_not_raised(roots, context, hpo_params):
    (roots.data / "no-model").mkdir()  # a base model folder without config.json
    plan = plan_trials(context, {**hpo_params, "model_name_or_path": "no-model"})
    trial = plan["trials"][0]
    result = TrialOperator(task_id="trial", config=trial).execute(context(dag_id="slm_hpo"))
    assert result["status"] == "failed"
    assert (result["index"], result["params"]) == (0, trial["params"])
    assert result["metric"] is None and result["eval_loss"] is None
    assert "has no config.json" in result["error"]
    recorded = json.loads((RunLayout(trial["run_dir"]).root / "trial.json").read_text())
    assert recorded == result


def ok(index: int, learning_rate: float, accuracy: float, eval_loss: float) -> dict:
    return {
        "index": index,
        "params": {"learning_rate": learning_rate},
        "status": "ok",
        "metric_name": "accuracy",
        "metric": accuracy,
        "eval_loss": eval_loss,
        "steps": 12,
        "error": None,
    }


def failed(index: int, learning_rate: float) -> dict:
    return {
        "index": index,
        "params": {"learning_rate": learning_rate},
        "status": "failed",
        "metric": None,
        "eval_loss": None,
        "error": "the training loss became nan at step 3",
    }


def recorded(plan: dict, *outcomes: dict) -> None:
    """Each outcome as its trial's own trial.json, as run_trial writes it."""
    for outcome in outcomes:
        trial = plan["trials"][outcome["index"]]
        outcome = {**outcome, "params": trial["params"]}
        (RunLayout(trial["run_dir"]).root / "trial.json").write_text(json.dumps(outcome))


def test_the_best_trial_gives_the_full_runs_params(context, hpo_params):
    plan = plan_trials(context, hpo_params)
    recorded(plan, ok(1, 0, 0.83, 0.9), ok(0, 0, 0.5, 1.4))
    # The trial tasks' XComs decide nothing: a forged one (a better score and other params
    # for trial 0, an unplanned trial 2) is ignored.
    forged = [ok(0, 1.0, 0.99, 0.1), failed(2, 1e-2)]
    params = SelectBestTrialOperator(
        task_id="select", run_dir=plan["run_dir"], results=forged
    ).execute(context(dag_id="slm_hpo"))
    winner = plan["trials"][1]["params"]["learning_rate"]
    assert params == {**plan["params"], "learning_rate": winner}
    assert params["max_steps"] == plan["params"]["max_steps"]  # not the trials' 12
    table = json.loads(RunLayout(plan["run_dir"]).trials.read_text())
    assert table["best_index"] == 1 and table["metric"] == "accuracy"
    assert [r["index"] for r in table["results"]] == [0, 1]
    assert table["results"][0]["metric"] == 0.5


def test_no_finished_trial_fails_clearly(context, hpo_params):
    plan = plan_trials(context, hpo_params)
    recorded(plan, failed(0, 1e-3), failed(1, 1e-2))
    with pytest.raises(AirflowFailException, match="no trial finished with metric measured"):
        SelectBestTrialOperator(
            task_id="select", run_dir=plan["run_dir"], results=[ok(0, 1e-3, 0.9, 1.0)]
        ).execute(context(dag_id="slm_hpo"))


def test_select_best_reads_only_this_runs_folder(context, hpo_params, tmp_path):
    plan = plan_trials(context, hpo_params)
    with pytest.raises(AirflowFailException, match="run_dir"):
        SelectBestTrialOperator(
            task_id="select", run_dir=str(tmp_path / "elsewhere"), results=[]
        ).execute(context(dag_id="slm_hpo"))
    assert not RunLayout(plan["run_dir"]).trials.exists()


def test_run_dir_and_results_are_templated(context, hpo_params):
    from airflow.sdk import DAG

    plan = plan_trials(context, hpo_params)
    recorded(plan, ok(0, 0, 0.7, 1.0))
    # Mapped trials' results reach the operator as a list: native rendering keeps it one.
    with DAG("slm_hpo", schedule=None, render_template_as_native_obj=True):
        operator = SelectBestTrialOperator(
            task_id="select", run_dir="{{ params.run }}", results="{{ params.results }}"
        )
    assert tuple(operator.template_fields) == ("run_dir", "results")
    results = [ok(0, 1e-3, 0.7, 1.0)]
    ctx = context(dag_id="slm_hpo", params={"run": plan["run_dir"], "results": results})
    operator.render_template_fields(ctx)
    assert (operator.run_dir, operator.results) == (plan["run_dir"], results)
    assert operator.execute(ctx)["learning_rate"] == plan["trials"][0]["params"]["learning_rate"]
