"""``slmops validate``: run a Great Expectations suite over a dataset before training."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmops.commands import add_config_arguments, config_from_args, log_to_stderr
from slmops.data.config import DataConfig
from slmops.model_store import DEFAULT_MODEL


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a dataset (schema, labels, lengths, duplicates, leakage) before training",
        description="Loads, splits and formats the data exactly as training will, then "
        "runs a Great Expectations suite over it. Prints a summary; exits 1 and names "
        "every failed check and its rows when the suite fails.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="RUN_YAML",
        help="a `slmops finetune` run config: its data settings, model and max_seq_len are "
        "used (flags given too win over it)",
    )
    add_config_arguments(parser, DataConfig, "data")
    group = parser.add_argument_group("validation")
    group.add_argument(
        "--suite",
        default="default",
        help="suite name from include/configs/suites (default, phrase_tones, instructions) "
        "or the path of a suite YAML (default: default)",
    )
    group.add_argument(
        "--max_seq_len", type=int, help="token budget of one example (default: the suite's)"
    )
    group.add_argument(
        "-m",
        "--model_name_or_path",
        help=f"model whose tokenizer counts tokens (default: {DEFAULT_MODEL})",
    )
    group.add_argument("--trust_remote_code", action="store_true")
    group.add_argument(
        "-o", "--output_path", type=Path, help="folder for validation.json (default: none)"
    )
    parser.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from slmops.config import read_yaml_mapping
    from slmops.validation.runner import run
    from slmops.validation.suites import SuiteConfig, load_suite

    data_config = config_from_args(
        DataConfig, args, config_file=args.config, ignore_other_keys=True
    )
    run_settings = read_yaml_mapping(args.config) if args.config else {}
    suite = load_suite(args.suite)
    max_seq_len = args.max_seq_len or run_settings.get("max_seq_len")
    if max_seq_len is not None:  # re-validated, so the suite's bounds apply to it
        suite = config_from_args(
            SuiteConfig, args, **suite.model_dump(exclude={"max_seq_len"}), max_seq_len=max_seq_len
        )
    run(
        data_config,
        suite,
        model_name_or_path=args.model_name_or_path or run_settings.get("model_name_or_path"),
        trust_remote_code=args.trust_remote_code,
        output_dir=args.output_path,
        log=log_to_stderr,
    )
    return 0
