"""``slmops finetune``: LoRA / QLoRA / DoRA / full fine-tuning (flags as ``olive finetune``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmops.commands import add_config_arguments, config_from_args, log_to_stderr
from slmops.data.config import DataConfig
from slmops.training.config import FinetuneConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model with LoRA, QLoRA, DoRA or in full",
        description="Loads and formats the data (same flags as `slmops validate`), trains "
        "with transformers + peft, evaluates on the eval split as it goes and keeps the "
        "best checkpoint. Writes OUTPUT_PATH/adapter, OUTPUT_PATH/merged and "
        "OUTPUT_PATH/training_metrics.json. Rerunning with the same output path resumes "
        "from the last checkpoint.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="RUN_YAML",
        help="YAML file with any of the settings below (flags given too win over it)",
    )
    data_fields = tuple(name for name in DataConfig.model_fields if name != "seed")
    add_config_arguments(parser, DataConfig, "data", skip=("seed",))
    add_config_arguments(
        parser,
        FinetuneConfig,
        "training",
        short={"model_name_or_path": "-m", "output_path": "-o"},
        skip=data_fields,
    )
    parser.set_defaults(func=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from slmops.training.run import run

    config = config_from_args(FinetuneConfig, args, config_file=args.config)
    result = run(config, log=log_to_stderr)
    print(json.dumps(result.summary(), indent=2))
    return 0
