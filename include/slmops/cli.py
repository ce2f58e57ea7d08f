"""The ``slmops`` command: one subcommand per stage, flags named after Olive's CLI.

Each subcommand lives in ``slmops.commands.<name>`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (args -> exit code). Heavy libraries are imported
inside ``func`` so ``slmops --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from slmops import __version__
from slmops.commands import (
    auto_opt,
    evaluate,
    finetune,
    generate,
    generate_adapter,
    models,
    report,
    run,
    runs,
    targets,
    validate,
)
from slmops.errors import SlmopsError, TrainingFolderBusy, TransientError
from slmops.gc_scope import collect_less_often

COMMANDS = (
    models,
    generate,
    validate,
    finetune,
    evaluate,
    targets,
    auto_opt,
    generate_adapter,
    report,
    runs,
    run,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slmops",
        description="Fine-tune, evaluate, gate and ONNX-optimize small language models.",
    )
    parser.add_argument("--version", action="version", version=f"slmops {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from slmops.models import quiet_libraries

    quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except SlmopsError as exc:
        print(f"slmops {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (TrainingFolderBusy, TransientError) as exc:
        # Not the input's fault: the same command may work later (EX_TEMPFAIL).
        print(f"slmops {args.command}: try again later: {exc}", file=sys.stderr)
        return 75
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console() -> NoReturn:
    """The `slmops` command and `python -m slmops`: one job in its own process, then exit
    (so the process's garbage collector may be tuned for that; ``main`` leaves it alone)."""
    collect_less_often()
    raise SystemExit(main())


if __name__ == "__main__":
    console()
