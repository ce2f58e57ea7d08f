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
    from slmops.layout import SUMMARY_NAME
    from slmops.pipeline import locations, multi_adapter
    from slmops.pipeline.summary import collect, key_numbers, latest_run

    root = locations.artifacts_root(str(args.artifacts_root) if args.artifacts_root else None)
    run = args.run_path or latest_run(root)
    summary = (multi_adapter.collect if multi_adapter.is_multi_run(run) else collect)(run)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\n".join(key_numbers(summary)))
    report = run / "report" / "report.html"
    if (run / "report" / SUMMARY_NAME).is_file():
        print(f"report: {report}")
    if summary["published"]:
        print(f"published: {summary['published']}")
    return 0 if summary["passed"] else 1
