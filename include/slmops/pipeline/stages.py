"""Each pipeline stage as one call on its slice of the plan, returning a small dict.

The Airflow operators and ``slmops run`` both call these, so a stage behaves the same
with or without Airflow. Heavy libraries are imported inside each stage.
"""

from __future__ import annotations

from slmops.progress import Log, no_log


def validate(settings: dict, *, log: Log = no_log) -> dict:
    """Great Expectations checks of the data as training formats it (plan["validation"])."""
    from slmops.data.config import DataConfig
    from slmops.validation.runner import run

    report = run(
        DataConfig.model_validate(settings["data"]),
        settings.get("suite", "default"),
        model_name_or_path=settings.get("model_name_or_path"),
        max_seq_len=settings.get("max_seq_len"),
        output_dir=settings.get("output_path"),
        log=log,
    )
    return {
        "passed": report.passed,
        "train_rows": report.data["train_rows"],
        "eval_rows": report.data["eval_rows"],
        "fingerprint": report.data["fingerprint"],
        "output_path": settings.get("output_path"),
    }


def finetune(settings: dict, *, log: Log = no_log) -> dict:
    """Train (plan["finetune"]); a finished run with the same settings is reused."""
    from slmops.training.config import FinetuneConfig
    from slmops.training.run import run

    return run(FinetuneConfig.model_validate(settings), log=log).summary()


def evaluate(settings: dict, *, log: Log = no_log) -> dict:
    """Score base and fine-tuned models and judge the gates (plan["evaluate"])."""
    from slmops.evaluation.run import run
    from slmops.pipeline.plan import evaluate_config

    result = run(evaluate_config(settings), log=log)
    summary = result.summary
    return {
        "output_path": str(result.output_path),
        "passed": summary["passed"],
        "primary_metric": summary["primary_metric"],
        "fine_tuned": summary["models"]["fine_tuned"]["metrics"].get(summary["primary_metric"]),
        "delta": summary["delta"].get(summary["primary_metric"]),
    }


def optimize(settings: dict, target: str, *, log: Log = no_log) -> dict:
    """Export one ONNX target, check its parity and time it (plan["optimize"])."""
    from slmops.export.optimize import optimize as optimize_target

    settings = dict(settings)
    model = settings.pop("model_name_or_path", None)
    result = optimize_target(model, target, settings.pop("output_path", None), **settings, log=log)
    decode = next((row for row in result.benchmark or [] if row["kind"] == "onnx"), {})
    return {
        "target": target,
        "output_path": str(result.output_path),
        "passed": not result.failed,
        "size_mb": result.record["size_mb"],
        "decode_speedup": decode.get("decode_speedup"),
    }
