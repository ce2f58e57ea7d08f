"""One base ONNX model whose LoRA weights are inputs, plus one ``.onnx_adapter`` per
adapter (Olive's ``generate-adapter``): onnxruntime-genai switches adapters per request
without loading the base twice.

How: the genai builder exports the base with each adapter in float, its LoRA MatMuls
beside the base MatMuls (the scale folded into lora_B); each adapter's weights are read
out of its own export, so the builder does the layout. The shared base is the target's
own export (for int4 the builder's k-quant int4, told to leave the LoRA MatMuls float)
with the LoRA weights turned into graph inputs: a symbolic rank (adapters of different
ranks share the base) and a rank-1 zero default (no adapter selected = the base model).
For int4, projections that share an input (q/k/v, gate/up) are then packed into one
int4 MatMul with one LoRA branch when any of them carries LoRA (``lora_fusion``: fewer
nodes per decoded token), and each adapter's weights are written in that packed layout.
Every adapter is checked name by name and shape by shape against those inputs before any
``.onnx_adapter`` file is written (the graph work is ``lora_graph``'s).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from slmops.artifacts import atomic_directory, atomic_write_json
from slmops.errors import ConfigError
from slmops.export import MODEL_FILE
from slmops.export.config import require_parent
from slmops.export.genai_builder import BUILD_LOG, build_with_genai
from slmops.export.lora_fusion import fuse_adapter, fuse_lora_model, packed_layout
from slmops.export.lora_graph import (
    check_matches,
    lora_inputs,
    lora_weight_names,
    lora_weights,
    lora_weights_to_inputs,
    write_adapter,
)
from slmops.export.quantize import load_model, quantize_int8
from slmops.export.targets import DEFAULT_TARGET, Target, resolve_target
from slmops.models import resolve
from slmops.progress import Log, no_log
from slmops.training.adapters import adapter_base_name, check_adapter_fits, check_adapter_folder

ADAPTER_SUFFIX = ".onnx_adapter"
MANIFEST = "adapters.json"
_FLOAT_PRECISION = {"int4": "fp32", "int8": "fp32", "fp32": "fp32", "fp16": "fp16"}


@dataclass
class MultiAdapterResult:
    output_path: Path
    target: Target
    adapters: dict[str, Path]  # name -> .onnx_adapter file
    manifest: dict


def generate_adapters(
    base_model: str | Path,
    adapter_paths: list[Path],
    out: Path,
    *,
    target: str | Target = DEFAULT_TARGET,
    adapter_names: list[str] | None = None,
    log: Log = no_log,
) -> MultiAdapterResult:
    """Write ``out`` (written whole or not at all): the shared base (a folder
    onnxruntime-genai loads), ``NAME.onnx_adapter`` per adapter and adapters.json."""
    target = target if isinstance(target, Target) else resolve_target(target)
    _check_target(target)
    out = require_parent(out)
    base = resolve(str(base_model), log=log)
    folders = [check_adapter_folder(path, "--adapter_paths") for path in adapter_paths]
    adapters = _named_adapters(folders, adapter_names)
    for path in adapters.values():
        _refuse_dora(path)
        check_adapter_fits(base.path, path, base.name)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix=".slmops-adapters-", dir=out.parent) as staging,
        atomic_directory(out) as folder,
    ):
        weights, lora_nodes = _export_with_each_adapter(
            base.path, adapters, Path(staging), target, log
        )
        _build_base(base.path, adapters, folder, Path(staging), target, lora_nodes, log)
        inputs = lora_inputs(folder / MODEL_FILE)
        layout = packed_layout(folder / MODEL_FILE)
        served = {name: fuse_adapter(tensors, layout) for name, tensors in weights.items()}
        for name, path in adapters.items():
            check_matches(name, path, served[name], inputs)
        for name, tensors in served.items():
            write_adapter(tensors, folder / f"{name}{ADAPTER_SUFFIX}")
        manifest = _manifest(base.name, target, adapters, weights, inputs, started)
        atomic_write_json(folder / MANIFEST, manifest)
    log(
        f"{len(adapters)} adapters over one {target.name} base, "
        f"{manifest['lora_branches']} LoRA branches a token: {out}"
    )
    files = {name: out / f"{name}{ADAPTER_SUFFIX}" for name in adapters}
    return MultiAdapterResult(out, target, files, manifest)


def _export_with_each_adapter(
    base_dir: Path,
    adapters: dict[str, Path],
    staging: Path,
    target: Target,
    log: Log,
) -> tuple[dict[str, dict], list[str]]:
    """Export the base in float with each adapter and read its LoRA weights back (the
    builder does the layout and folds the LoRA scale into B); also the LoRA MatMul node
    names, which the quantized base must leave alone."""
    weights: dict[str, dict] = {}
    lora_nodes: list[str] = []
    for name, path in adapters.items():
        build_dir = staging / name
        build_dir.mkdir()
        log(f"exporting the base with adapter {name} ({path})")
        build_with_genai(
            base_dir,
            build_dir,
            precision=_FLOAT_PRECISION[target.precision],
            execution_provider=target.builder_execution_provider,
            log_path=staging / BUILD_LOG,
            adapter_path=path,
            log=log,
        )
        model = load_model(build_dir / MODEL_FILE)
        weights[name] = lora_weights(model, build_dir)
        if lora_nodes:
            del model
            shutil.rmtree(build_dir)  # a whole float model per adapter: keep only the first
        else:
            lora_nodes = sorted(lora_weight_names(model).values())
    return weights, lora_nodes


def _build_base(
    base_dir: Path,
    adapters: dict[str, Path],
    folder: Path,
    staging: Path,
    target: Target,
    lora_nodes: list[str],
    log: Log,
) -> None:
    """The shared base in ``folder``: quantized like the target's own export, the LoRA
    MatMuls kept float and their weights turned into inputs."""
    first_name, first_path = next(iter(adapters.items()))
    if target.precision == "int4":
        # The builder's own int4 (k-quant, quantized embedding), told to skip LoRA MatMuls.
        options = {**dict(target.builder_options), "nodes_to_exclude": ",".join(lora_nodes)}
        build_with_genai(
            base_dir,
            folder,
            precision="int4",
            execution_provider=target.builder_execution_provider,
            log_path=staging / BUILD_LOG,
            adapter_path=first_path,
            options=options,
            log=log,
        )
    else:
        for entry in (staging / first_name).iterdir():
            shutil.move(str(entry), folder / entry.name)
    lora_weights_to_inputs(folder / MODEL_FILE)
    if target.precision == "int4":
        packed = fuse_lora_model(folder / MODEL_FILE)
        log(f"packed {packed} groups of int4 projections with their LoRA (q/k/v, gate/up)")
    if target.precision == "int8":
        log("weight-only int8 quantization of the base weights")
        quantize_int8(folder / MODEL_FILE, folder / MODEL_FILE, exclude_nodes=lora_nodes)
    shutil.copy2(staging / BUILD_LOG, folder / BUILD_LOG)


def _check_target(target: Target) -> None:
    if target.name == "gpu-int4":
        raise ConfigError(
            "--target gpu-int4 is not supported for multi-adapter models yet (the CUDA int4 "
            "quantization of a graph with LoRA inputs is untested); use gpu-fp16 or a CPU target"
        )


def _named_adapters(paths: list[Path], names: list[str] | None) -> dict[str, Path]:
    if not paths:
        raise ConfigError("--adapter_paths: give at least one adapter folder")
    if names is not None and len(names) != len(paths):
        raise ConfigError(
            f"--adapter_names: {len(names)} names for {len(paths)} adapters; give one per adapter"
        )
    chosen = names or _unique([_default_name(Path(path)) for path in paths])
    for name in chosen:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(
                f"--adapter_names: {name!r} is not usable as a file name; use letters, digits, "
                "'_', '-' or '.'"
            )
    duplicates = sorted({name for name in chosen if chosen.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"two adapters are named {', '.join(duplicates)}; pass --adapter_names to tell "
            "them apart"
        )
    return {name: Path(path) for name, path in zip(chosen, paths, strict=True)}


def _unique(names: list[str]) -> list[str]:
    """``run, run`` -> ``run, run-2``: default names never collide."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def _default_name(path: Path) -> str:
    """A run's adapter/ folder is named after its run; another folder after itself."""
    name = path.parent.name if path.name == "adapter" else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name) or "adapter"


def _refuse_dora(path: Path) -> None:
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora"):
        raise ConfigError(
            f"--adapter_paths {path}: a DoRA adapter cannot be served as a LoRA input (its "
            "magnitude vector rescales the whole weight); export it merged with "
            "`slmops auto-opt --adapter_path`"
        )
    if config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"--adapter_paths {path}: {config['peft_type']} is not a LoRA adapter")


def _manifest(
    base_name: str,
    target: Target,
    adapters: dict[str, Path],
    weights: dict[str, dict],
    inputs: dict[str, list],
    started: float,
) -> dict:
    return {
        "base_model": base_name,
        "target": target.as_dict(),
        "adapters": {
            name: {
                "file": f"{name}{ADAPTER_SUFFIX}",
                "source": str(path),
                "trained_on": adapter_base_name(path),
                "rank": int(next(a.shape[1] for k, a in weights[name].items() if ".lora_A." in k)),
            }
            for name, path in adapters.items()
        },
        "lora_inputs": inputs,
        # LoRA branches (A MatMul, B MatMul, Add) a decoded token runs through: what the
        # adapters cost at decode time beside the base (lora_fusion packs q/k/v, gate/up)
        "lora_branches": sum(".lora_A." in name for name in inputs),
        "seconds": round(time.monotonic() - started, 2),
    }


def open_multi_adapter(folder: Path, *, device: str = "cpu"):
    """A GenaiRunner over a multi-adapter folder with every adapter of adapters.json
    loaded; pick one per request with ``stream_ids(..., adapter=NAME)``."""
    from slmops.export.runners.genai import GenaiRunner

    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ConfigError(f"{folder}: no {MANIFEST}; build it with `slmops generate-adapter`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    runner = GenaiRunner(folder, device=device)
    for name, entry in manifest["adapters"].items():
        runner.load_adapter(folder / entry["file"], name)
    return runner
