"""`slmops runs`: the tracked runs listed, and two compared, from the embedded store."""

from __future__ import annotations

import json

from slmops.cli import main


def test_runs_lists_the_tracked_pipeline_runs(tracked_root, tracking_on, capsys):
    assert main(["runs", "--artifacts_root", str(tracked_root)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["RUN", "PIPELINE", "RUN", "MODEL"]
    assert any("manual__1" in row and "tiny-tones" in row and "PASS" in row for row in rows)
    assert main(["runs", "--artifacts_root", str(tracked_root), "--model_name", "other"]) == 0
    assert capsys.readouterr().out.startswith("no tracked pipeline runs at sqlite:///")


def test_runs_compares_two_runs_settings_and_numbers(tracked_root, tracking_on, capsys):
    from tracked_runs import clone_run

    from slmops.pipeline import stages

    other = clone_run(tracked_root, "manual__cmp")
    plan = json.loads((other / "plan.json").read_text())
    plan["params"]["learning_rate"] = 0.005  # as if it had trained with another rate
    (other / "plan.json").write_text(json.dumps(plan))
    stages.report(other)
    root = str(tracked_root)
    assert (
        main(["runs", "--artifacts_root", root, "--compare", "manual__1", "manual__cmp", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert [run["pipeline_run"] for run in result["runs"]] == ["manual__1", "manual__cmp"]
    assert result["params"] == {"learning_rate": ["0.01", "0.005"]}
    assert "max_steps" in result["same_params"]
    first, second = result["metrics"]["finetune.final_train_loss"]
    assert first == second > 0
    assert result["metrics"]["evaluation.gate.loss_gap.threshold"] == [2.0, 2.0]

    assert main(["runs", "--artifacts_root", root, "--compare", "manual__1", "manual__cmp"]) == 0
    text = capsys.readouterr().out
    assert "learning_rate" in text and "(31 settings are the same)" in text


def test_runs_names_an_unknown_run(tracked_root, tracking_on, capsys):
    root = str(tracked_root)
    assert main(["runs", "--artifacts_root", root, "--compare", "manual__1", "nope"]) == 1
    error = capsys.readouterr().err
    assert "slmops runs: error: no tracked pipeline run 'nope' at sqlite:///" in error
    assert "`slmops runs` lists them" in error
