"""``slmops run --config FILE``: the whole pipeline without Airflow."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmops.commands import log_to_stderr


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a whole pipeline (validate, finetune, evaluate, auto-opt, report, "
        "publish) from a pipeline config or an Olive-style config",
        description="Runs the stages of a config-driven DAG in order, without Airflow: the "
        "same run folder, report and published version. FILE is a pipeline config "
        "(include/configs/pipelines/*.yaml) or a Microsoft Olive-style config (model, "
        "data_configs, passes: lora), whose GPT-2 module names are mapped onto the model "
        "at hand. Relative data paths are looked up next to FILE, in the working "
        "directory and in the data roots.",
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE")
    parser.add_argument(
        "--artifacts_root",
        type=Path,
        help="where runs and published models go (default: $SLMOPS_ARTIFACTS_ROOT)",
    )
    parser.add_argument("--run_id", help="the run's name (default: local__TIMESTAMP)")
    parser.add_argument(
        "--no_publish", action="store_true", help="stop after the report; publish nothing"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from slmops.layout import RunLayout
    from slmops.pipeline import locations
    from slmops.pipeline.local_run import (
        cli_data_roots,
        load_run_config,
        map_olive_modules,
        run_pipeline,
    )
    from slmops.pipeline.stages import key_numbers

    config = load_run_config(args.config)
    data_roots = cli_data_roots(args.config)
    if config.kind == "olive":
        map_olive_modules(config, data_roots, log=log_to_stderr)
    log_to_stderr(f"{args.config}: {config.kind} config, pipeline {config.dag_id}")
    for note in config.olive.notes if config.olive else []:
        log_to_stderr(f"  {note}")
    root = locations.artifacts_root(str(args.artifacts_root) if args.artifacts_root else None)
    summary = run_pipeline(
        config,
        artifacts_root=root,
        data_roots=data_roots,
        run_id=args.run_id,
        publish=not args.no_publish,
        log=log_to_stderr,
    )
    print("\n".join(key_numbers(summary)))
    print(f"report: {RunLayout(summary['run_dir']).report_html}")
    if summary["published"]:
        print(f"published: {summary['published']}")
    return 0 if summary["passed"] else 1
