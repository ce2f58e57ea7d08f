"""The run's report: every stage's outcome and key numbers in one place.

It reads what the stages wrote into the run folder (validation.json,
training_metrics.json, evaluation.json, each target's export.json and benchmark.json),
so it also explains a run that stopped early: stages without output say "no result".
"""

from __future__ import annotations

from pathlib import Path

from slmops.artifacts import atomic_directory, atomic_write_json, read_json_if_any
from slmops.errors import ConfigError
from slmops.layout import (
    BENCHMARK_NAME,
    EXPORT_RECORD,
    PARITY_NAME,
    PLAN_NAME,
    SUMMARY_NAME,
    ModelStore,
    RunLayout,
)
from slmops.pipeline.champion import read_decision
from slmops.pipeline.configs.search import trials_table
from slmops.pipeline.hpo import read_trials
from slmops.pipeline.locations import safe_name
from slmops.pipeline.plan import read_plan
from slmops.report import Document, cell, verdict
from slmops.tracking.runs import read_status as tracking_status

NO_RESULT = "no result"  # the stage did not run, or failed before writing one


def collect(run_dir: Path) -> dict:
    """The run's outcome as a small dict (it is also the report's content)."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    plan = read_plan(run_dir)
    validation = read_json_if_any(layout.validation_report)
    training = read_json_if_any(layout.finetune.metrics)
    evaluation = read_json_if_any(layout.finetune.evaluation_report)
    targets = {
        name: _target(layout.onnx(name)) for name in plan["cpu_targets"] + plan["gpu_targets"]
    }
    published = ModelStore(plan["models_root"]).version(
        plan["model_name"], safe_name(plan["run_id"])
    )
    stages = {
        "validation": _stage(validation),
        "finetune": NO_RESULT if training is None else "PASS",
        "evaluation": _stage(evaluation),
        **{f"optimize[{name}]": _stage(record) for name, record in targets.items()},
    }
    return {
        "dag_id": plan["dag_id"],
        "run_id": plan["run_id"],
        "model_name": plan["model_name"],
        "run_dir": str(run_dir),
        "passed": all(state == "PASS" for state in stages.values()),
        "stages": stages,
        "base_model": plan["finetune"]["model_name_or_path"],
        "dataset_fingerprint": (training or {}).get("dataset", {}).get("fingerprint")
        or (validation or {}).get("data", {}).get("fingerprint"),
        "validation": validation and _validation(validation),
        "training": training and _training(training),
        "evaluation": evaluation and _evaluation(evaluation),
        "targets": {name: record for name, record in targets.items() if record},
        "champion": read_decision(run_dir),
        "search": read_trials(run_dir),
        "published": str(published) if published.is_dir() else None,  # written whole or not
        "tracking": tracking_status(run_dir),
    }


def write(run_dir: Path, output_dir: Path) -> dict:
    """Write report.md, report.html and summary.json into ``output_dir``; return the summary."""
    summary = collect(run_dir)
    write_report(summary, _document(summary), output_dir)
    return summary


def write_report(summary: dict, document: Document, output_dir: Path) -> None:
    """summary.json, report.md and report.html, written whole into ``output_dir``."""
    with atomic_directory(Path(output_dir)) as folder:
        atomic_write_json(folder / SUMMARY_NAME, summary)
        document.write(folder)


def latest_run(artifacts_root: Path) -> Path:
    """The most recently planned run folder (ROOT/runs/DAG_ID/RUN_ID) under ``artifacts_root``."""
    planned = {}
    for folder in Path(artifacts_root).glob("runs/*/*"):
        layout = RunLayout(folder)
        for plan in (layout.plan, layout.multi_plan):
            if plan.is_file():
                planned[folder] = plan.stat().st_mtime
                break
    if not planned:
        raise ConfigError(f"{artifacts_root}: no pipeline runs yet (no runs/*/*/{PLAN_NAME})")
    return max(planned, key=planned.get)


def key_numbers(summary: dict) -> list[str]:
    """A run's outcome in a few lines, for a terminal."""
    lines = [f"run {summary['run_id']}: {verdict(summary['passed'])}"]
    lines += [f"  {stage:<22} {state}" for stage, state in summary["stages"].items()]
    if "adapters" in summary:  # a multi-adapter run
        for name, entry in summary["adapters"].items():
            lines.append(
                f"adapter {name}: {entry['primary_metric']} base {cell(entry['base'])}, "
                f"fine-tuned {cell(entry['fine_tuned'])}, through the shared base "
                f"{cell(entry['shared_base'])}"
            )
        return lines
    evaluation = summary["evaluation"]
    if evaluation:
        lines.append(
            f"{evaluation['primary_metric']}: base {cell(evaluation['base'])} -> fine-tuned "
            f"{cell(evaluation['fine_tuned'])} on {evaluation['eval_rows']} held-out rows"
        )
        lines += [f"  gate {g['name']}: {verdict(g['passed'])}" for g in evaluation["gates"]]
    if summary.get("search"):
        record = summary["search"]
        lines.append(
            f"search: {len(record['results'])} trials, best trial {record['best_index']} "
            f"{record['best_params']}"
        )
    if summary.get("champion"):
        decision = summary["champion"]
        lines.append(f"champion/challenger: {decision['decision']}: {decision['reason']}")
    for name, record in summary["targets"].items():
        lines.append(
            f"{name}: {verdict(record['passed'])}, {cell(record['size_mb'])} MB, "
            f"{cell(record['metric'])} (PyTorch {cell(record['pytorch_metric'])}), "
            f"{cell(record['decode_tokens_per_s'])} tokens/s, "
            f"{cell(record['decode_speedup'])}x PyTorch"
        )
    tracking = summary.get("tracking")
    if tracking and tracking["enabled"]:
        lines.append(f"tracked: MLflow run {tracking['run_id']} at {tracking['uri']}")
    elif tracking:
        lines.append(f"not tracked: {tracking['reason']}")
    return lines


def _stage(record: dict | None) -> str:
    return NO_RESULT if record is None else verdict(bool(record.get("passed")))


def _validation(report: dict) -> dict:
    return {
        "passed": report["passed"],
        "train_rows": report["data"]["train_rows"],
        "eval_rows": report["data"]["eval_rows"],
        "failed_checks": [check["name"] for check in report["checks"] if not check["passed"]],
    }


def _training(metrics: dict) -> dict:
    keys = ("method", "global_step", "final_train_loss", "best_eval_loss", "tokens_per_second")
    return {key: metrics.get(key) for key in (*keys, "train_runtime_s", "stopped_early")}


def _evaluation(summary: dict) -> dict:
    primary = summary["primary_metric"]
    models = summary["models"]
    return {
        "passed": summary["passed"],
        "primary_metric": primary,
        "base": models.get("base", {}).get("metrics", {}).get(primary),
        "fine_tuned": models["fine_tuned"]["metrics"].get(primary),
        "eval_rows": summary["eval_rows"],
        "gates": summary["gates"],
    }


def _target(folder: Path) -> dict | None:
    record = read_json_if_any(folder / EXPORT_RECORD)
    if record is None:
        return None
    parity = read_json_if_any(folder / PARITY_NAME) or {}
    timings = {row["kind"]: row for row in read_json_if_any(folder / BENCHMARK_NAME) or []}
    onnx = timings.get("onnx", {})
    return {
        "passed": record["passed"],
        "path": str(folder),
        "size_mb": record["size_mb"],
        "exporter": record["exporter"],
        "metric": parity.get("exported", {}).get("metrics", {}).get(parity.get("primary_metric")),
        "pytorch_metric": parity.get("pytorch", {})
        .get("metrics", {})
        .get(parity.get("primary_metric")),
        "decode_tokens_per_s": onnx.get("decode_tokens_per_s"),
        "decode_speedup": onnx.get("decode_speedup"),
        "gates": record["gates"],
    }


def _document(summary: dict) -> Document:
    doc = Document(f"{summary['dag_id']} {summary['model_name']}: run {summary['run_id']}")
    doc.paragraph(
        f"Outcome: {verdict(summary['passed'])}. Base model {summary['base_model']}, dataset "
        f"fingerprint {(summary['dataset_fingerprint'] or '–')[:16]}."
    )
    doc.table(["stage", "outcome"], list(summary["stages"].items()))
    if summary["validation"]:
        check = summary["validation"]
        failed = ", ".join(check["failed_checks"]) or "none"
        doc.heading("Data validation")
        doc.paragraph(
            f"{check['train_rows']} training rows, {check['eval_rows']} evaluation rows; "
            f"failed checks: {failed}. Details: ../validation/validation.json"
        )
    if summary["training"]:
        doc.heading("Training")
        doc.table(list(summary["training"]), [list(summary["training"].values())])
    if summary["evaluation"]:
        evaluation = summary["evaluation"]
        doc.heading("Evaluation")
        doc.paragraph(
            f"{evaluation['primary_metric']} on {evaluation['eval_rows']} held-out rows: base "
            f"{cell(evaluation['base'])}, fine-tuned {cell(evaluation['fine_tuned'])}. "
            "Full report: ../finetune/evaluation/report.html"
        )
        _gates(doc, evaluation["gates"])
    if summary["targets"]:
        doc.heading("ONNX targets")
        rows = [
            [
                name,
                verdict(record["passed"]),
                record["size_mb"],
                record["metric"],
                record["decode_tokens_per_s"],
                record["decode_speedup"],
            ]
            for name, record in summary["targets"].items()
        ]
        doc.table(["target", "parity", "MB", "metric", "decode tok/s", "vs PyTorch"], rows)
        _gates(doc, [gate for record in summary["targets"].values() for gate in record["gates"]])
    if summary.get("champion"):
        _champion(doc, summary["champion"])
    if summary.get("search"):
        _search(doc, summary["search"])
    if summary.get("tracking"):
        _tracking(doc, summary["tracking"])
    return doc


def _tracking(doc: Document, status: dict) -> None:
    doc.heading("Tracking")
    if status["enabled"]:
        doc.paragraph(
            f"Tracked in MLflow at {status['uri']}: experiment {status['experiment_id']}, "
            f"run {status['run_id']} with a nested run per stage."
        )
    else:
        doc.paragraph(f"Tracking was off for this run: {status['reason']}.")


def _search(doc: Document, record: dict) -> None:
    doc.heading("Hyperparameter search")
    best = record["best_index"]
    doc.paragraph(
        f"{len(record['results'])} trials of {record['trial_max_steps']} steps each, scored "
        f"by {record['metric']} on the held-out rows; trial {best} won and this run trained "
        f"with its settings: {record['best_params']}."
    )
    headers, rows = trials_table(
        record["results"], record["metric"], lower_is_better=record["lower_is_better"]
    )
    doc.table(headers, rows)


def _champion(doc: Document, decision: dict) -> None:
    doc.heading("Champion / challenger")
    verdicts = {"promote": "PROMOTED: the challenger is published", "keep": "KEPT the champion"}
    doc.paragraph(f"{verdicts[decision['decision']]}. {decision['reason']}.")
    champion = decision.get("champion") or {}
    if "metric" in champion:
        doc.table(
            ["model", "version", f"{decision['primary_metric']} ({decision['target']})"],
            [
                ["challenger", decision["run_id"], decision["challenger"]["metric"]],
                ["champion", champion["version"], champion["metric"]],
            ],
        )


def _gates(doc: Document, records: list[dict]) -> None:
    rows = [[r["name"], verdict(r["passed"]), r["explanation"]] for r in records]
    doc.table(["gate", "verdict", "why"], rows)
