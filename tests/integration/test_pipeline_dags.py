"""`dag.test()` runs of the champion/challenger and HPO DAGs on the tiny model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dag_runs import read_json, run_dag

from slmops.pipeline import locations
from slmops.pipeline.model_versions import version_name

pytestmark = pytest.mark.integration

DATA_CHANGE = "slm_finetune_on_data_change"


def _decision(artifacts, result) -> dict:
    run = locations.run_dir(artifacts, DATA_CHANGE, result["run_id"])
    return read_json(run / "champion" / "decision.json")


def _registry(artifacts) -> dict[str, tuple[str, str]]:
    """The embedded MLflow registry's aliases of "tones": alias -> (store version, published)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{artifacts / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    aliases = client.get_registered_model("tones").aliases
    versions = {alias: client.get_model_version("tones", v) for alias, v in aliases.items()}
    return {a: (v.tags["slmops.version"], v.tags["slmops.published"]) for a, v in versions.items()}


def test_data_change_promotes_a_better_model_and_keeps_the_champion_otherwise(
    dag_env, conf, tmp_path
):
    """Three retrainings on one models root: the first has no champion to beat, the
    second (45 steps, accuracy about 0.96) beats it, the third (35 steps, about 0.67)
    does not, so the second stays published. The MLflow registry's aliases follow the
    model store's latest.json after each decision."""
    artifacts = tmp_path / "artifacts"
    dag_env = {**dag_env, "SLMOPS_TRACKING": "on"}
    # No reviewer in `dags test` (tests/e2e answers one over the REST API).
    weak = {**conf, "model_name": "tones", "max_steps": 35, "eval_steps": 5}
    weak["require_approval"] = False
    strong = {**weak, "max_steps": 45}

    first, output = run_dag(dag_env, artifacts, weak, DATA_CHANGE, "2026-11-29T01:00:00+00:00")
    assert first["state"] == "success", output[-5000:]
    assert first["tasks"]["challenge"] == first["tasks"]["publish"] == "success"
    decision = _decision(artifacts, first)
    assert decision["decision"] == "promote"
    assert "no champion" in decision["reason"]
    champion = version_name(DATA_CHANGE, first["run_id"])
    assert _registry(artifacts) == {"champion": (champion, "true")}

    second, output = run_dag(dag_env, artifacts, strong, DATA_CHANGE, "2026-11-29T02:00:00+00:00")
    assert second["state"] == "success", output[-5000:]
    assert second["tasks"]["publish"] == "success"
    decision = _decision(artifacts, second)
    assert decision["decision"] == "promote", decision
    assert decision["target"] == "cpu-fp32" and decision["primary_metric"] == "accuracy"
    assert decision["challenger"]["metric"] > decision["champion"]["metric"] + 0.01
    assert decision["champion"]["version"] == version_name(DATA_CHANGE, first["run_id"])
    latest = read_json(artifacts / "models" / "tones" / "latest.json")
    assert latest["version"] == version_name(DATA_CHANGE, second["run_id"])
    assert _registry(artifacts) == {"champion": (latest["version"], "true")}

    third, output = run_dag(dag_env, artifacts, weak, DATA_CHANGE, "2026-11-29T03:00:00+00:00")
    assert third["state"] == "success", output[-5000:]
    assert third["tasks"]["challenge"] == "success"
    assert third["tasks"]["publish"] == "skipped"  # not a failure: the champion stays
    decision = _decision(artifacts, third)
    assert decision["decision"] == "keep", decision
    assert decision["champion"]["version"] == version_name(DATA_CHANGE, second["run_id"])
    assert decision["challenger"]["metric"] < decision["champion"]["metric"]
    assert "below the promotion margin 0.01" in decision["reason"]
    assert "so the champion stays published" in output  # the publish task's log says why
    assert read_json(artifacts / "models" / "tones" / "latest.json") == latest
    assert _registry(artifacts) == {
        "champion": (latest["version"], "true"),
        "challenger": (version_name(DATA_CHANGE, third["run_id"]), "false"),
    }
    versions = sorted(p.name for p in (artifacts / "models" / "tones" / "versions").iterdir())
    assert versions == sorted(version_name(DATA_CHANGE, r["run_id"]) for r in (first, second))

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
    # 1e-5 learns nothing in 30 steps; the higher rates do (their eval loss drops).
    assert scored[0]["eval_loss"] > 2 * max(trial["eval_loss"] for trial in scored[1:])
    assert best["index"] != 0

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
    assert manifest["version"] == version_name("slm_hpo", result["run_id"])


def test_multi_adapter_trains_two_adapters_that_answer_differently(dag_env, tmp_path):
    """Two LoRA adapters of one (peaked) tiny base on the same phrases: "reply" answers
    with a fixed sympathetic line, "explain" with a sentence naming the tone; both ship
    as one cpu-fp32 ONNX base. (LoRA on the tiny base learns answer shapes, not the
    tone itself, so both tasks are generation tasks here.)"""
    import json

    from slmops.testing import TONE_TEMPLATE, build_tiny_llama, tone_rows

    data = Path(dag_env["SLMOPS_DATA_ROOTS"])
    if not (data / "peaked").exists():
        build_tiny_llama(data / "peaked", initializer_range=0.3)
    rows = tone_rows(64)
    explained = [
        {**row, "tone": f"It sounds {row['tone']}, because of how it ends."} for row in rows
    ]
    replies = [{**row, "tone": "Thank you for telling me; I hear you."} for row in rows]
    for name, written in (("explained", explained), ("replies", replies)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in written))
    adapter = {"template_kind": "template", "text_template": TONE_TEMPLATE, "suite": "default"}
    conf = {
        "model_name": "tiny-multi",
        "model_name_or_path": "peaked",
        "adapters": [
            {"name": "reply", "data_files": ["replies.jsonl"], **adapter},
            {"name": "explain", "data_files": ["explained.jsonl"], **adapter},
        ],
        "multi_target": "cpu-fp32",
        "target_modules": [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        "max_steps": 120,
        "eval_steps": 120,
        "learning_rate": 2e-2,
        "per_device_train_batch_size": 8,
        "eval_fraction": 0.25,
        "min_primary_metric": 0.5,
        "benchmark": False,
    }
    artifacts = tmp_path / "artifacts"
    result, output = run_dag(dag_env, artifacts, conf, "slm_multi_adapter")
    assert result["state"] == "success", output[-5000:]
    for stage in ("validate", "finetune", "evaluate"):
        assert result["tasks"][f"{stage}[0]"] == result["tasks"][f"{stage}[1]"] == "success"

    run = locations.run_dir(artifacts, "slm_multi_adapter", result["run_id"])
    folder = run / "multi_adapter" / "cpu-fp32"
    assert {p.name for p in folder.glob("*.onnx_adapter")} == {
        "reply.onnx_adapter",
        "explain.onnx_adapter",
    }
    scores = read_json(run / "multi_adapter" / "scores.json")["adapters"]
    for name in ("reply", "explain"):
        assert scores[name]["primary_metric"] == "rougeL" and scores[name]["metric"] >= 0.5
    # The same prompts, two adapters, different answers.
    assert scores["reply"]["same_answer_as"]["explain"] == 0.0
    sample = scores["reply"]["samples"][0]
    assert sample["reply"].startswith("Thank you") and sample["explain"].startswith("It sounds")

    summary = read_json(run / "report" / "summary.json")
    assert summary["passed"] and set(summary["adapters"]) == {"reply", "explain"}
    for name, entry in summary["adapters"].items():
        assert entry["shared_base"] == scores[name]["metric"]
        assert entry["fine_tuned"] > entry["base"]
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Adapters through the shared base" in report
    shown = subprocess.run(
        [sys.executable, "-m", "slmops", "report", "--artifacts_root", str(artifacts)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"run {result['run_id']}: PASS" in shown
    assert "adapter reply: rougeL base" in shown and "through the shared base" in shown
    latest = read_json(artifacts / "models/tiny-multi/latest.json")
    manifest = read_json(artifacts / "models" / latest["path"] / "manifest.json")
    assert set(manifest["metrics"]["adapters"]) == {"reply", "explain"}
    assert (Path(manifest["path"]) / "multi_adapter" / "cpu-fp32" / "reply.onnx_adapter").is_file()


def test_data_watch_emits_the_dataset_event_only_when_the_file_changed(dag_env, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    watched = data / "phrase_tones.jsonl"
    watched.write_text('{"phrase": "hi", "tone": "joyful"}\n')
    env = {**dag_env, "SLMOPS_DATA_ROOTS": str(data)}
    artifacts = tmp_path / "artifacts"
    runs = iter(f"2026-11-29T0{hour}:00:00+00:00" for hour in range(1, 10))

    skipped = {"watch_phrase_tones": "skipped", "record_phrase_tones": "skipped"}
    first, output = run_dag(env, artifacts, {}, "slm_data_watch", next(runs))
    assert first["tasks"] == skipped, output[-3000:]
    assert "first look, recorded" in output and first["asset_events"] == []
    same, output = run_dag(env, artifacts, {}, "slm_data_watch", next(runs))
    assert same["tasks"] == skipped and same["asset_events"] == []
    assert "unchanged" in output

    watched.write_text('{"phrase": "hi", "tone": "joyful"}\n{"phrase": "oh no", "tone": "sad"}\n')
    changed, output = run_dag(env, artifacts, {}, "slm_data_watch", next(runs))
    assert changed["tasks"] == {
        "watch_phrase_tones": "success",
        "record_phrase_tones": "success",
    }, output[-3000:]
    (event,) = changed["asset_events"]
    assert event["uri"] == "slmops://data/phrase_tones"
    assert event["extra"]["path"] == str(watched.resolve())
    assert event["extra"]["previous_sha256"] != event["extra"]["sha256"]
    (state_file,) = (artifacts / "data_watch" / "slm_data_watch").iterdir()
    state = read_json(state_file)
    assert (state["path"], state["sha256"]) == (str(watched.resolve()), event["extra"]["sha256"])
