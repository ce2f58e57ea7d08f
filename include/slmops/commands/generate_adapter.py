"""``slmops generate-adapter``: one ONNX base + one .onnx_adapter per LoRA adapter."""

from __future__ import annotations

import argparse
import json

from slmops.commands import add_config_arguments, add_log_level, config_from_args, log_for
from slmops.export.config import GenerateAdapterConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate-adapter",
        help="build one ONNX base whose LoRA weights are inputs, plus an .onnx_adapter each",
        description="Exports the base once with its LoRA layers as inputs and writes each "
        "adapter's weights as NAME.onnx_adapter, checked name by name and shape by shape "
        "against the base. onnxruntime-genai then switches adapters per request "
        "(og.Adapters / Generator.set_active_adapter; slmops.export.multi_adapter."
        "open_multi_adapter). All adapters must adapt the same layers of the same base.",
    )
    add_config_arguments(
        parser,
        GenerateAdapterConfig,
        "multi-adapter model",
        short={"base_model_path": "-m", "output_path": "-o"},
    )
    add_log_level(parser)
    parser.set_defaults(func=_generate_adapter)


def _generate_adapter(args: argparse.Namespace) -> int:
    from slmops.export.multi_adapter import generate_adapters

    config = config_from_args(GenerateAdapterConfig, args)
    result = generate_adapters(
        config.base_model_path,
        config.adapter_paths,
        config.output_path,
        target=config.resolved_target(),
        adapter_names=config.adapter_names,
        log=log_for(args),
    )
    summary = {
        "output_path": str(result.output_path),
        "target": result.target.name,
        "adapters": {name: str(path) for name, path in result.adapters.items()},
        "lora_inputs": len(result.manifest["lora_inputs"]),
    }
    print(json.dumps(summary, indent=2))
    return 0
