"""``slmops.evaluation.run.run`` on real fine-tuning runs of the tiny model."""

from __future__ import annotations

import json
import math

import pytest
from sklearn.metrics import accuracy_score, f1_score

from slmops.errors import AdapterMismatch, ConfigError, GateFailure
from slmops.evaluation.config import EvaluateConfig, config_for_run, defaults_from_run
from slmops.evaluation.run import run
from slmops.testing import build_tiny_llama, tone_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_tone_run_scores_base_and_fine_tuned_and_passes_every_gate(tone_run, tmp_path):
    out = tmp_path / "evaluation"
    result = run(config_for_run(tone_run, output_path=out))
    summary = result.summary
    assert summary["task"] == "classification" and summary["primary_metric"] == "accuracy"
    assert summary["eval_rows"] == 24
    assert summary["labels"] == sorted({row["tone"] for row in tone_rows(96)})
    tuned = summary["models"]["fine_tuned"]["metrics"]
    base = summary["models"]["base"]["metrics"]
    assert tuned["accuracy"] >= 0.8 > base["accuracy"]
    assert summary["delta"]["accuracy"] == pytest.approx(tuned["accuracy"] - base["accuracy"])
    assert tuned["perplexity"] == pytest.approx(math.exp(tuned["eval_loss"]))
    assert tuned["eval_loss"] < base["eval_loss"]
    # The eval loss matches what training measured on the same rows at its last step.
    history = json.loads((tone_run / "training_metrics.json").read_text())
    assert tuned["eval_loss"] == pytest.approx(history["final_eval_loss"], rel=0.03)

    assert [r.name for r in result.gates] == [
        "loss_gap",
        "rising_eval_loss",
        "min_metric[accuracy]",
        "min_improvement",
    ]
    assert all(record.passed for record in result.gates)
    assert summary["passed"] is True and not result.failed
    assert summary["data"]["same_as_training"] is True

    gates = json.loads((out / "gates.json").read_text())
    assert [set(g) for g in gates] == [
        {"name", "observed", "threshold", "passed", "explanation", "remedies"}
    ] * 4
    assert gates[2]["observed"] == pytest.approx(tuned["accuracy"], abs=1e-6)
    assert gates[2]["threshold"] == 0.8

    # predictions.jsonl agrees with the summary when rescored with scikit-learn.
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24
    labels = [row["label"] for row in rows]
    predicted = [row["fine_tuned_label"] or "(none)" for row in rows]
    assert accuracy_score(labels, predicted) == pytest.approx(tuned["accuracy"])
    assert f1_score(
        labels, predicted, labels=summary["labels"], average="macro", zero_division=0
    ) == pytest.approx(tuned["macro_f1"])
    matrix = summary["models"]["fine_tuned"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 24
    assert sum(matrix[i][i] for i in range(len(summary["labels"]))) == round(tuned["accuracy"] * 24)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".evaluation")]


def test_report_shows_metrics_curves_matrix_gates_and_config(tone_run, tmp_path):
    out = tmp_path / "evaluation"
    result = run(config_for_run(tone_run, output_path=out, sample_rows=3))
    markdown = (out / "report.md").read_text()
    for section in (
        "## Gates",
        "## Metrics",
        "## Per class",
        "## Confusion matrix",
        "## Training",
        "### Training config",
        "## Sample answers",
        "## Data validation",
    ):
        assert section in markdown
    accuracy = result.summary["models"]["fine_tuned"]["metrics"]["accuracy"]
    assert f"| accuracy | {result.summary['models']['base']['metrics']['accuracy']:.4g} |" in (
        markdown
    )
    assert f"{accuracy:.4g}" in markdown
    assert "| macro_f1 |" in markdown
    assert "| min_metric[accuracy] | PASS |" in markdown
    assert "| learning_rate | 0.01 |" in markdown
    assert "All 4 judged gates passed." in markdown
    for image in ("loss_curves.png", "confusion_fine_tuned.png", "confusion_base.png"):
        assert f"]({image})" in markdown
        assert (out / image).read_bytes().startswith(PNG_MAGIC)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "<td class='pass'>PASS</td>" in html
    assert len(result.summary["samples"]) == 3


def test_overfitting_run_trips_the_loss_gap_gate(overfit_run, tmp_path):
    out = tmp_path / "evaluation"
    with pytest.raises(GateFailure) as caught:
        run(config_for_run(overfit_run, output_path=out))
    failed = {record.name: record for record in caught.value.failed}
    assert "loss_gap" in failed
    gap = failed["loss_gap"]
    history = json.loads((overfit_run / "training_metrics.json").read_text())
    ratio = history["final_eval_loss"] / history["final_train_loss"]
    assert gap.observed == pytest.approx(ratio, rel=1e-3) and ratio > 2.0
    assert history["final_eval_loss"] - history["final_train_loss"] > 0.1
    assert gap.threshold == 2.0 and gap.passed is False
    assert "overfitting" in gap.explanation
    message = str(caught.value)
    assert "loss_gap" in message and f"{ratio:.4g}" in message
    for remedy in ("--lora_r", "--lora_dropout", "--weight_decay", "training data", "--max_steps"):
        assert remedy in message
    assert "--early_stopping_patience" in message
    # The results are written before the error, so the report says why.
    gates = {g["name"]: g for g in json.loads((out / "gates.json").read_text())}
    assert gates["loss_gap"]["passed"] is False
    assert "| loss_gap | FAIL |" in (out / "report.md").read_text()


def test_fail_on_gates_false_reports_without_stopping(overfit_run, tmp_path):
    result = run(config_for_run(overfit_run, output_path=tmp_path / "e", fail_on_gates=False))
    assert "loss_gap" in [record.name for record in result.failed]
    assert result.summary["passed"] is False
    assert "FAILED (" in (tmp_path / "e" / "report.md").read_text()


def test_adapter_is_applied_to_the_base(lora_run, tmp_path):
    with_adapter = run(
        config_for_run(lora_run, output_path=tmp_path / "a", fail_on_gates=False)
    ).summary
    # The merged model on its own, on the run's data settings.
    settings = defaults_from_run(lora_run, {})
    settings["model_name_or_path"] = str(lora_run / "merged")
    merged = run(EvaluateConfig(**settings, output_path=tmp_path / "m", fail_on_gates=False))
    assert with_adapter["models"]["fine_tuned"]["adapter"] == str(lora_run / "adapter")
    tuned = with_adapter["models"]["fine_tuned"]["metrics"]
    base = with_adapter["models"]["base"]["metrics"]
    assert tuned["eval_loss"] != pytest.approx(base["eval_loss"], abs=1e-3)
    assert tuned["eval_loss"] == pytest.approx(
        merged.summary["models"]["fine_tuned"]["metrics"]["eval_loss"], abs=1e-4
    )


def test_single_model_generation_without_a_run(tiny_model_dir, write_jsonl, tmp_path):
    from slmops.testing import instruction_rows

    data = write_jsonl(instruction_rows(24), "qa.jsonl")
    config = EvaluateConfig(
        model_name_or_path=str(tiny_model_dir),
        data_files=[str(data)],
        text_template="Q: {input}\nA: {output}",
        output_path=tmp_path / "e",
        max_new_tokens=8,
        fail_on_gates=False,
    )
    result = run(config)
    summary = result.summary
    assert summary["task"] == "generation" and summary["primary_metric"] == "rougeL"
    assert list(summary["models"]) == ["fine_tuned"]
    metrics = summary["models"]["fine_tuned"]["metrics"]
    assert set(metrics) == {
        "rougeL",
        "rouge1",
        "rouge2",
        "bleu",
        "exact_match",
        "eval_loss",
        "perplexity",
    }
    assert 0.0 <= metrics["rougeL"] <= 1.0 and metrics["exact_match"] == 0.0
    # Without a run or a base there is nothing to judge but the metric bounds (none set).
    assert {r.name: r.passed for r in result.gates} == {
        "loss_gap": None,
        "rising_eval_loss": None,
        "min_improvement": None,
    }
    assert summary["passed"] is True
    markdown = (tmp_path / "e" / "report.md").read_text()
    assert "| metric | fine-tuned |" in markdown and "| skipped |" in markdown


def test_language_modeling_reports_loss_and_perplexity(tiny_model_dir, write_jsonl, tmp_path):
    rows = [{"text": f"{row['phrase']} {row['tone']}"} for row in tone_rows(40)]
    config = EvaluateConfig(
        model_name_or_path=str(tiny_model_dir),
        data_files=[str(write_jsonl(rows, "text.jsonl"))],
        text_field="text",
        output_path=tmp_path / "e",
        max_metric={"perplexity": 1e9},
    )
    summary = run(config).summary
    assert summary["task"] == "language_modeling" and summary["primary_metric"] == "eval_loss"
    metrics = summary["models"]["fine_tuned"]["metrics"]
    assert set(metrics) == {"eval_loss", "perplexity"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    # A random model over a 512-token vocabulary is near uniform: loss ~ ln(512).
    assert 4.0 < metrics["eval_loss"] < 8.0
    assert summary["gates"][2]["name"] == "max_metric[perplexity]"
    assert summary["gates"][2]["passed"] is True


def test_validation_summary_goes_into_the_report(tone_run, tmp_path):
    validation = {
        "suite": "phrase_tones",
        "passed": False,
        "checks": [
            {"name": "not_null[phrase]", "passed": True, "explanation": "0 of 96 rows"},
            {"name": "no_duplicates", "passed": False, "explanation": "2 duplicate rows"},
        ],
        "data": {"train_rows": 72, "eval_rows": 24, "notes": ["held out 24 of 96 rows"]},
    }
    folder = tmp_path / "validation"
    folder.mkdir()
    (folder / "validation.json").write_text(json.dumps(validation))
    run(config_for_run(tone_run, output_path=tmp_path / "e", validation_path=folder))
    markdown = (tmp_path / "e" / "report.md").read_text()
    assert "Suite phrase_tones: 1 of 2 checks passed (FAIL); 72 train rows, 24 eval rows." in (
        markdown
    )
    assert "| no_duplicates | 2 duplicate rows |" in markdown
    assert "- held out 24 of 96 rows" in markdown


def test_bad_settings_fail_before_anything_is_written(tone_run, tmp_path):
    out = tmp_path / "e"
    with pytest.raises(ConfigError, match="--min_metric: 'acuracy' is not a metric"):
        run(config_for_run(tone_run, output_path=out, min_metric="acuracy=0.8"))
    with pytest.raises(ConfigError, match="--validation_path .*no such validation report"):
        run(config_for_run(tone_run, output_path=out, validation_path=tmp_path / "none"))
    with pytest.raises(ConfigError, match="no training_metrics.json"):
        config_for_run(tmp_path, output_path=out)
    with pytest.raises(ConfigError, match="--adapter_path .*no adapter_config.json"):
        run(config_for_run(tone_run, output_path=out, adapter_path=tmp_path))
    assert not out.exists()


def test_an_adapter_for_another_base_is_refused(lora_run, tmp_path):
    other = build_tiny_llama(tmp_path / "wider", hidden_size=96, intermediate_size=192)
    config = config_for_run(lora_run, output_path=tmp_path / "e", model_name_or_path=str(other))
    with pytest.raises(AdapterMismatch, match="does not fit .*it was trained on"):
        run(config)
    assert not (tmp_path / "e").exists()


def test_rerun_replaces_the_folder_whole(tone_run, tmp_path):
    out = tmp_path / "e"
    first = run(config_for_run(tone_run, output_path=out)).summary
    (out / "stale.txt").write_text("from an older evaluation")
    second = run(config_for_run(tone_run, output_path=out)).summary
    for name in ("base", "fine_tuned"):
        assert first["models"][name]["metrics"] == second["models"][name]["metrics"]
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_a_qlora_adapter_is_evaluated_on_a_full_precision_base(finetune_config, tmp_path):
    """The adapter trained against 4-bit weights is applied to the float32 base, as the
    merged model and the exports see it."""
    from slmops.training.run import run as train

    result = train(finetune_config(method="qlora", merge_adapter=False, max_steps=3))
    summary = run(
        config_for_run(result.training_dir, output_path=tmp_path / "e", fail_on_gates=False)
    ).summary
    tuned = summary["models"]["fine_tuned"]
    assert tuned["adapter"] == str(result.training_dir / "adapter")
    assert math.isfinite(tuned["metrics"]["eval_loss"])
    assert tuned["metrics"]["eval_loss"] != pytest.approx(
        summary["models"]["base"]["metrics"]["eval_loss"], abs=1e-4
    )
