"""``slmops runs``: tracked pipeline runs, and two of them compared, from MLflow."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list tracked pipeline runs, or compare two side by side (MLflow)",
        description="Reads the tracker: $MLFLOW_TRACKING_URI, --tracking_uri, or the embedded "
        "MLflow store under the artifacts root. Without --compare, lists the newest runs; "
        "with --compare A B, prints the settings that differ and every number of both runs "
        "(their own and their stages'). A and B are pipeline run ids or MLflow run ids.",
    )
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two runs to compare")
    parser.add_argument("--model_name", help="only runs of this model")
    parser.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--tracking_uri", help="an MLflow server or store (default: see above)")
    parser.add_argument(
        "--artifacts_root", type=Path, help="whose embedded store (default: $SLMOPS_ARTIFACTS_ROOT)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_runs)


def _runs(args: argparse.Namespace) -> int:
    from slmops.pipeline import locations
    from slmops.tracking.compare import compare_runs, list_runs
    from slmops.tracking.settings import settings_for

    root = locations.artifacts_root(str(args.artifacts_root) if args.artifacts_root else None)
    settings = settings_for(root, args.tracking_uri)
    if args.compare:
        result = compare_runs(settings, *args.compare)
        print(json.dumps(result, indent=2) if args.json else "\n".join(_comparison(result)))
        return 0
    rows = list_runs(settings, model_name=args.model_name, limit=args.limit)
    print(json.dumps(rows, indent=2) if args.json else "\n".join(_listing(rows, settings.uri)))
    return 0


def _listing(rows: list[dict], uri: str) -> list[str]:
    if not rows:
        return [f"no tracked pipeline runs at {uri}"]
    header = f"{'RUN':<32}  {'PIPELINE RUN':<34} {'MODEL':<18} {'OUTCOME':<7} STARTED"
    lines = [header]
    for row in rows:
        started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["started"] / 1000))
        lines.append(
            f"{row['run']:<32}  {row['pipeline_run'] or '-':<34} {row['model'] or '-':<18} "
            f"{row['outcome']:<7} {started}"
        )
    return lines


def _comparison(result: dict) -> list[str]:
    first, second = result["runs"]
    a, b = first["pipeline_run"] or first["run"], second["pipeline_run"] or second["run"]
    width = max(len(name) for name in [*result["params"], *result["metrics"], "setting"])
    lines = [f"{'setting':<{width}}  {a:>24}  {b:>24}"]
    lines += [
        f"{n:<{width}}  {_cell(x):>24}  {_cell(y):>24}" for n, (x, y) in result["params"].items()
    ]
    lines.append(f"({len(result['same_params'])} settings are the same)")
    lines.append("")
    lines.append(f"{'number':<{width}}  {a:>24}  {b:>24}")
    lines += [
        f"{n:<{width}}  {_cell(x):>24}  {_cell(y):>24}" for n, (x, y) in result["metrics"].items()
    ]
    return lines


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:24]
