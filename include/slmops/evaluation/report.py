"""The evaluation report: gates, metrics base vs fine-tuned, plots, validation and training."""

from __future__ import annotations

from pathlib import Path

from slmops import plots
from slmops.evaluation.scoring import UNRECOGNISED
from slmops.report import Document, cell, prompt_tail, verdict

LOSS_PLOT = "loss_curves.png"


def write_report(
    folder: Path, summary: dict, history: dict | None, validation: dict | None
) -> tuple[Path, Path]:
    """report.md and report.html (plus PNGs) in ``folder``."""
    title = Path(summary["run_path"]).name if summary["run_path"] else "model"
    document = Document(f"Evaluation report: {title}")
    _verdict(document, summary)
    _gates(document, summary["gates"])
    _metrics(document, summary)
    if summary["task"] == "classification":
        _per_class(document, summary)
        _confusion(document, folder, summary)
    _training(document, folder, history)
    _samples(document, summary)
    _validation(document, validation)
    _data(document, summary)
    return document.write(folder)


def _verdict(document: Document, summary: dict) -> None:
    records = summary["gates"]
    failed = [record["name"] for record in records if record["passed"] is False]
    judged = [record for record in records if record["passed"] is not None]
    if failed:
        outcome = f"{len(failed)} of {len(judged)} gates FAILED ({', '.join(failed)}): do not ship."
    else:
        outcome = f"All {len(judged)} judged gates passed."
    tuned = summary["models"]["fine_tuned"]
    source = (
        f"{tuned['model']} + adapter {tuned['adapter']}" if tuned.get("adapter") else tuned["model"]
    )
    document.paragraph(outcome)
    document.bullets(
        [
            f"task: {summary['task']} (primary metric {summary['primary_metric']})",
            f"fine-tuned model: {source}",
            f"eval rows: {summary['eval_rows']}; greedy answers up to "
            f"{summary['max_new_tokens']} new tokens",
        ]
    )


def _gates(document: Document, records: list[dict]) -> None:
    document.heading("Gates")
    document.table(
        ["gate", "result", "observed", "threshold", "explanation"],
        [
            [r["name"], verdict(r["passed"]), r["observed"], r["threshold"], r["explanation"]]
            for r in records
        ],
    )
    remedies = list(
        dict.fromkeys(
            remedy
            for record in records
            if record["passed"] is False
            for remedy in record["remedies"]
        )
    )
    if remedies:
        document.paragraph("What to try (reference guide):")
        document.bullets(remedies)


def _metrics(document: Document, summary: dict) -> None:
    document.heading("Metrics")
    models = summary["models"]
    tuned = models["fine_tuned"]["metrics"]
    base = models.get("base", {}).get("metrics")
    lower = set(summary["lower_is_better"])
    rows = []
    for name, value in tuned.items():
        label = f"{name} (lower is better)" if name in lower else name
        if base is None:
            rows.append([label, value])
        else:
            rows.append([label, base.get(name), value, summary["delta"].get(name)])
    headers = (
        ["metric", "fine-tuned"] if base is None else ["metric", "base", "fine-tuned", "delta"]
    )
    document.table(headers, rows)


def _per_class(document: Document, summary: dict) -> None:
    document.heading("Per class")
    tuned = summary["models"]["fine_tuned"]["per_class"]
    base = summary["models"].get("base", {}).get("per_class")
    rows = []
    for label, scores in tuned.items():
        row = [label, scores["support"]]
        if base:
            row += [base[label]["precision"], base[label]["recall"]]
        row += [scores["precision"], scores["recall"], scores["f1"]]
        rows.append(row)
    headers = ["label", "support"]
    if base:
        headers += ["base precision", "base recall"]
    headers += ["precision", "recall", "f1"]
    document.table(headers, rows)
    counts = {name: m.get("unrecognised", 0) for name, m in summary["models"].items()}
    document.paragraph(
        "Answers naming no label count as wrong: "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
        + "."
    )


def _confusion(document: Document, folder: Path, summary: dict) -> None:
    document.heading("Confusion matrix")
    labels = summary["labels"]
    for name in ("fine_tuned", "base"):
        scores = summary["models"].get(name)
        if scores is None:
            continue
        matrix = [row[:] for row in scores["confusion_matrix"][: len(labels)]]
        columns = list(labels)
        if scores["unrecognised"]:
            columns.append(UNRECOGNISED)
        else:
            matrix = [row[: len(labels)] for row in matrix]
        title = f"{name.replace('_', '-')} model (rows: reference, columns: predicted)"
        path = plots.confusion_matrix(
            matrix, labels, columns, folder / f"confusion_{name}.png", title=title
        )
        document.image(path, f"confusion matrix, {name}")


def _training(document: Document, folder: Path, history: dict | None) -> None:
    document.heading("Training")
    if history is None:
        document.paragraph("No fine-tuning run was given (--run_path), so there is no history.")
        return
    best = history.get("best_checkpoint")
    best_step = int(best.rsplit("-", 1)[1]) if best and best.rsplit("-", 1)[-1].isdigit() else None
    plot = plots.loss_curves(
        history.get("train_loss_history", []),
        history.get("eval_loss_history", []),
        folder / LOSS_PLOT,
        best_step=best_step,
    )
    document.image(plot, "train and eval loss")
    document.table(
        ["", "value"],
        [
            ["method", history.get("method")],
            ["base model", history.get("model")],
            ["steps", f"{history.get('global_step')} of {history.get('max_steps')}"],
            ["final train loss", history.get("final_train_loss")],
            ["final eval loss", history.get("final_eval_loss")],
            ["best eval loss (kept)", f"{cell(history.get('best_eval_loss'))} at {best}"],
            ["stopped early", history.get("stopped_early")],
            ["train tokens", history.get("train_tokens")],
            ["tokens / s", history.get("tokens_per_second")],
            ["wall time (s)", history.get("wall_time_s")],
        ],
    )
    config = history.get("config", {})
    document.heading("Training config", 3)
    document.table(
        ["setting", "value"],
        [[key, value] for key, value in sorted(config.items()) if value is not None],
    )


def _samples(document: Document, summary: dict) -> None:
    samples = summary["samples"]
    names = [name for name in ("base", "fine_tuned") if samples and f"{name}_answer" in samples[0]]
    if not names:
        return  # language modelling: nothing was generated
    document.heading("Sample answers")
    document.table(
        ["prompt (end)", "reference", *names],
        [
            [prompt_tail(row["prompt"]), row["reference"], *(row[f"{n}_answer"] for n in names)]
            for row in samples
        ],
    )


def _validation(document: Document, validation: dict | None) -> None:
    document.heading("Data validation")
    if validation is None:
        document.paragraph("No validation report was given (--validation_path).")
        return
    checks = validation.get("checks", [])
    failed = [check for check in checks if not check.get("passed")]
    data = validation.get("data", {})
    document.paragraph(
        f"Suite {validation.get('suite')}: {len(checks) - len(failed)} of {len(checks)} checks "
        f"passed ({'PASS' if validation.get('passed') else 'FAIL'}); "
        f"{data.get('train_rows')} train rows, {data.get('eval_rows')} eval rows."
    )
    if failed:
        document.table(
            ["check", "explanation"], [[c["name"], c.get("explanation")] for c in failed]
        )
    if data.get("notes"):
        document.bullets(data["notes"])


def _data(document: Document, summary: dict) -> None:
    document.heading("Eval data")
    data = summary["data"]
    same = data["same_as_training"]
    document.bullets(
        [
            f"fingerprint {data['fingerprint'][:16]}",
            "the same data as training"
            if same
            else ("no training run to compare" if same is None else "DIFFERENT data from training"),
        ]
    )
