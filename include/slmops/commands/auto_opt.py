"""``slmops auto-opt``: ONNX export per target, parity and benchmark (as ``olive auto-opt``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmops.commands import add_config_arguments, add_log_level, config_from_args, log_for
from slmops.export.config import AutoOptConfig

_BENCHMARK_KEYS = ("first_token_ms", "decode_tokens_per_s", "decode_speedup", "peak_rss_mb")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "auto-opt",
        help="export a (fine-tuned) model to ONNX for a target, check parity, benchmark it",
        description="Merges the adapter (if any) into the float32 base, exports with "
        "onnxruntime-genai's model builder (torch.onnx for architectures it does not know), "
        "quantizes for the target, scores the export against the PyTorch model on the run's "
        "eval set (max_export_degradation gate) and on fixed prompts (token agreement), and "
        "times both. Writes the model folder with export.json, parity.json, benchmark.json "
        "and report.md/html. `slmops targets` lists the targets.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="AUTO_OPT_YAML",
        help="YAML file with any of the settings below (flags given too win over it)",
    )
    add_config_arguments(
        parser,
        AutoOptConfig,
        "export",
        short={"model_name_or_path": "-m", "output_path": "-o"},
    )
    add_log_level(parser)
    parser.set_defaults(func=_auto_opt)


def _auto_opt(args: argparse.Namespace) -> int:
    from slmops.export.optimize import run
    from slmops.layout import RunLayout

    config = config_from_args(AutoOptConfig, args, config_file=args.config)
    result = run(config, log=log_for(args))
    summary = {
        "output_path": str(result.output_path),
        "target": result.target.name,
        "exporter": result.record["exporter"],
        "size_mb": result.record["size_mb"],
        "parity": _parity(result.parity),
        "benchmark": {
            row["label"]: {
                key: row[key]
                for key in (
                    "first_token_ms",
                    "decode_tokens_per_s",
                    "decode_speedup",
                    "peak_rss_mb",
                )
            }
            for row in result.benchmark or []
        },
        "gates": {gate.name: gate.passed for gate in result.gates},
        "report": str(RunLayout.report_html_in(result.output_path)),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _parity(parity: dict | None) -> dict | None:
    if parity is None:
        return None
    summary = {"agreement": parity["agreement"]}
    if "pytorch" in parity:
        primary = parity["primary_metric"]
        summary[primary] = {
            "pytorch": parity["pytorch"]["metrics"][primary],
            "onnx": parity["exported"]["metrics"][primary],
        }
    return summary
