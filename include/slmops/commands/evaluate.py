"""``slmops evaluate``: metrics of the base and fine-tuned models, overfitting gates, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmops.commands import add_config_arguments, config_from_args, log_to_stderr
from slmops.data.config import DataConfig
from slmops.evaluation.config import EvaluateConfig, GateThresholds


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a fine-tuned model against its base, run the gates, write the report",
        description="Rebuilds the eval split as training did, lets the base and the "
        "fine-tuned model answer every prompt (batched greedy generation), scores them "
        "(classification: accuracy, macro-F1, per-class precision/recall, confusion matrix; "
        "generation: ROUGE, BLEU, exact match; always: eval loss and perplexity) and runs "
        "the gates. Writes evaluation.json, gates.json, predictions.jsonl, report.md and "
        "report.html to OUTPUT_PATH (default RUN_PATH/evaluation). Exits 1 and names the "
        "gate, its values and what to try when a gate fails.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="EVAL_YAML",
        help="YAML file with any of the settings below (flags given too win over it)",
    )
    data_fields = tuple(DataConfig.model_fields)
    gate_fields = tuple(GateThresholds.model_fields)
    add_config_arguments(
        parser,
        EvaluateConfig,
        "evaluation",
        short={"model_name_or_path": "-m", "output_path": "-o"},
        skip=data_fields + gate_fields,
    )
    add_config_arguments(parser, GateThresholds, "gates")
    add_config_arguments(parser, DataConfig, "data (default: the run's)")
    parser.set_defaults(func=_evaluate)


def _run_defaults(given: dict) -> dict:
    from slmops.evaluation.config import defaults_from_run

    return defaults_from_run(Path(given["run_path"]), given) if given.get("run_path") else {}


def _evaluate(args: argparse.Namespace) -> int:
    from slmops.evaluation.run import run

    config = config_from_args(
        EvaluateConfig, args, config_file=args.config, defaults_for=_run_defaults
    )
    result = run(config, log=log_to_stderr)
    print(json.dumps(_summary(result.summary, result.output_path), indent=2))
    return 0


def _summary(summary: dict, output_path: Path) -> dict:
    from slmops.layout import RunLayout

    models = summary["models"]
    return {
        "report": str(RunLayout.report_html_in(output_path)),
        "task": summary["task"],
        "metrics": {name: scores["metrics"] for name, scores in models.items()},
        "gates": {record["name"]: record["passed"] for record in summary["gates"]},
        "passed": summary["passed"],
    }
