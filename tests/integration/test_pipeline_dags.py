"""`dag.test()` runs of the champion/challenger and HPO DAGs on the tiny model."""

from __future__ import annotations

import pytest
from dag_runs import read_json, run_dag

from slmops.pipeline import locations

pytestmark = pytest.mark.integration

DATA_CHANGE = "slm_finetune_on_data_change"


def _decision(artifacts, result) -> dict:
    run = locations.run_dir(artifacts, DATA_CHANGE, result["run_id"])
    return read_json(run / "champion" / "decision.json")


def test_data_change_promotes_a_better_model_and_keeps_the_champion_otherwise(
    dag_env, conf, tmp_path
):
    """Three retrainings on one models root: the first has no champion to beat, the
    second (45 steps, accuracy about 0.96) beats it, the third (35 steps, about 0.67)
    does not, so the second stays published."""
    artifacts = tmp_path / "artifacts"
    weak = {**conf, "model_name": "tones", "max_steps": 35, "eval_steps": 5}
    strong = {**weak, "max_steps": 45}

    first, output = run_dag(dag_env, artifacts, weak, DATA_CHANGE, "2026-11-29T01:00:00+00:00")
    assert first["state"] == "success", output[-5000:]
    assert first["tasks"]["challenge"] == first["tasks"]["publish"] == "success"
    decision = _decision(artifacts, first)
    assert decision["decision"] == "promote"
    assert "no champion" in decision["reason"]

    second, output = run_dag(dag_env, artifacts, strong, DATA_CHANGE, "2026-11-29T02:00:00+00:00")
    assert second["state"] == "success", output[-5000:]
    assert second["tasks"]["publish"] == "success"
    decision = _decision(artifacts, second)
    assert decision["decision"] == "promote", decision
    assert decision["target"] == "cpu-fp32" and decision["primary_metric"] == "accuracy"
    assert decision["challenger"]["metric"] > decision["champion"]["metric"] + 0.01
    assert decision["champion"]["version"] == locations.safe_name(first["run_id"])
    latest = read_json(artifacts / "models" / "tones" / "latest.json")
    assert latest["version"] == locations.safe_name(second["run_id"])

    third, output = run_dag(dag_env, artifacts, weak, DATA_CHANGE, "2026-11-29T03:00:00+00:00")
    assert third["state"] == "success", output[-5000:]
    assert third["tasks"]["challenge"] == "success"
    assert third["tasks"]["publish"] == "skipped"  # not a failure: the champion stays
    decision = _decision(artifacts, third)
    assert decision["decision"] == "keep", decision
    assert decision["champion"]["version"] == locations.safe_name(second["run_id"])
    assert decision["challenger"]["metric"] < decision["champion"]["metric"]
    assert "below the promotion margin 0.01" in decision["reason"]
    assert "so the champion stays published" in output  # the publish task's log says why
    assert read_json(artifacts / "models" / "tones" / "latest.json") == latest
    versions = sorted(p.name for p in (artifacts / "models" / "tones" / "versions").iterdir())
    assert versions == sorted(locations.safe_name(r["run_id"]) for r in (first, second))

    run = locations.run_dir(artifacts, DATA_CHANGE, third["run_id"])
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Champion / challenger" in report
    assert "KEPT the champion" in report
    assert read_json(run / "report" / "summary.json")["champion"]["decision"] == "keep"


def test_hpo_runs_three_trials_and_trains_the_best(dag_env, conf, tmp_path):
    artifacts = tmp_path / "artifacts"
    search = {
        "search_strategy": {"type": "grid"},
        "search_space": {"learning_rate": {"type": "choice", "values": [1e-5, 1e-2, 3e-3]}},
    }
    hpo_conf = {**conf, "model_name": "tones-hpo", "search": search, "trial_max_steps": 30}
    result, output = run_dag(dag_env, artifacts, hpo_conf, "slm_hpo")
    assert result["state"] == "success", output[-5000:]
    trials = {task: state for task, state in result["tasks"].items() if task.startswith("trial[")}
    assert trials == {f"trial[{index}]": "success" for index in range(3)}

    run = locations.run_dir(artifacts, "slm_hpo", result["run_id"])
    # Each trial's own record, written by the trial task itself.
    scored = [read_json(run / "trials" / f"{index:02d}" / "trial.json") for index in range(3)]
    assert [trial["params"]["learning_rate"] for trial in scored] == [1e-5, 1e-2, 3e-3]
    assert all(trial["status"] == "ok" and trial["steps"] == 30 for trial in scored)
    best = max(scored, key=lambda trial: (trial["metric"], -trial["eval_loss"]))
    assert scored[0]["metric"] < best["metric"]  # 1e-5 learns nothing in 30 steps

    record = read_json(run / "hpo" / "trials.json")
    assert record["best_index"] == best["index"]
    plan = read_json(run / "plan.json")  # the full run, with the winner's settings
    assert plan["params"]["learning_rate"] == best["params"]["learning_rate"]
    assert plan["params"]["max_steps"] == conf["max_steps"]
    assert read_json(run / "finetune" / "training_metrics.json")["global_step"] == 60

    summary = read_json(run / "report" / "summary.json")
    assert summary["passed"] and summary["search"]["best_index"] == best["index"]
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Hyperparameter search" in report
    assert "| trial | learning_rate | accuracy | eval_loss | status | best |" in report
    manifest = read_json(artifacts / "models" / "tones-hpo" / "latest.json")
    assert manifest["version"] == locations.safe_name(result["run_id"])
