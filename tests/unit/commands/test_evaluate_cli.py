"""``slmops evaluate`` from the command line."""

from __future__ import annotations

import json

from slmops.cli import main


def test_evaluate_a_run_prints_the_summary(tone_run, tmp_path, capsys):
    out = tmp_path / "e"
    code = main(["evaluate", "--run_path", str(tone_run), "-o", str(out), "--sample_rows", "2"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == str(out / "report.html")
    assert printed["task"] == "classification" and printed["passed"] is True
    assert printed["metrics"]["fine_tuned"]["accuracy"] >= 0.8
    assert printed["gates"] == {
        "loss_gap": True,
        "rising_eval_loss": True,
        "min_metric[accuracy]": True,
        "min_improvement": True,
    }
    assert (out / "report.md").is_file() and (out / "evaluation.json").is_file()


def test_a_failed_gate_exits_1_naming_it(tone_run, tmp_path, capsys):
    code = main(
        [
            "evaluate",
            "--run_path",
            str(tone_run),
            "-o",
            str(tmp_path / "e"),
            "--min_metric",
            "accuracy=0.999,macro_f1=0.5",
            "--compare_base",
            "false",
        ]
    )
    assert code == 1
    error = capsys.readouterr().err
    assert "slmops evaluate: error: 1 gate failed:" in error
    assert "- min_metric[accuracy]: fine-tuned accuracy" in error and "< 0.999" in error
    assert "train longer" in error
    gates = json.loads((tmp_path / "e" / "gates.json").read_text())
    assert [g["name"] for g in gates if g["passed"] is False] == ["min_metric[accuracy]"]
    assert {g["name"]: g["passed"] for g in gates}["min_improvement"] is None


def test_settings_from_a_yaml_file_and_flags(tone_run, tmp_path, capsys):
    settings = tmp_path / "eval.yaml"
    settings.write_text(
        f"run_path: {tone_run}\nmin_metric: accuracy=0.5\nmax_new_tokens: 4\ncompare_base: false\n"
    )
    code = main(["evaluate", "--config", str(settings), "-o", str(tmp_path / "e")])
    assert code == 0
    summary = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert summary["max_new_tokens"] == 4 and list(summary["models"]) == ["fine_tuned"]
    assert summary["thresholds"]["min_metric"] == {"accuracy": 0.5}


def test_bad_flags_name_the_flag(tone_run, tmp_path, capsys):
    code = main(["evaluate", "--run_path", str(tone_run), "--max_loss_gap", "0.5"])
    assert code == 1
    assert "--max_loss_gap: Input should be greater than 1" in capsys.readouterr().err
    code = main(["evaluate", "--run_path", str(tmp_path)])
    assert code == 1
    assert "no training_metrics.json" in capsys.readouterr().err
