"""``slmops targets``: the deployment targets ``auto-opt`` and ``generate-adapter`` build."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "targets",
        help="list the ONNX deployment targets and what each is for",
        description="Each target is a device, an onnxruntime execution provider and a "
        "precision. Pass one to `slmops auto-opt --target NAME`.",
    )
    parser.add_argument("--json", action="store_true", help="print them as JSON")
    parser.set_defaults(func=_targets)


def _targets(args: argparse.Namespace) -> int:
    from slmops.export.targets import DEFAULT_TARGET, TARGETS

    if args.json:
        print(json.dumps([target.as_dict() for target in TARGETS.values()], indent=2))
        return 0
    width = max(len(name) for name in TARGETS)
    for name, target in TARGETS.items():
        mark = " (default)" if name == DEFAULT_TARGET else ""
        print(
            f"{name:<{width}}  {target.provider:<22} {target.precision:<5} {target.purpose}{mark}"
        )
    return 0
