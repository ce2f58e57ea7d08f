"""``slmops report``: a pipeline run's outcome and key numbers, and where its report is."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="show a pipeline run's outcome: stages, gates, metrics, targets",
        description="Reads a pipeline run folder (default: the newest under the artifacts "
        "root) and prints each stage's outcome, base vs fine-tuned score, the gates, each "
        "ONNX target's size, score and speed (or each adapter's scores, for a multi-adapter "
        "run), the champion/challenger decision and HPO winner, then the report's path.",
    )
    parser.add_argument("--run_path", type=Path, help="a run folder (RUNS/DAG_ID/RUN_ID)")
    parser.add_argument(
        "--artifacts_root",
        type=Path,
        help="where runs are looked for (default: $SLMOPS_ARTIFACTS_ROOT)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from slmops.layout import RunLayout
    from slmops.pipeline import locations, stages

    root = locations.artifacts_root(str(args.artifacts_root) if args.artifacts_root else None)
    run = args.run_path or stages.latest_run(root)
    summary = stages.summarize(run)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\n".join(stages.key_numbers(summary)))
    layout = RunLayout(run)
    if layout.summary.is_file():
        print(f"report: {layout.report_html}")
    if summary["published"]:
        print(f"published: {summary['published']}")
    return 0 if summary["passed"] else 1
