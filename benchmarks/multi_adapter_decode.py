"""Multi-adapter decode against the merged int4 model, with and without the packed LoRA
projections, on the demo's fine-tuned SmolLM2, side by side in one run.

    python benchmarks/multi_adapter_decode.py [--run_path RUN/finetune] [--rounds 5]
        [--out DIR] [--reuse]

1. The run's merged model is exported for cpu-int4 (what `slmops auto-opt` serves).
2. ``generate_adapters`` builds an int4 base for the run's adapter twice: as it does now
   (q/k/v and gate/up packed with their LoRA, ``slmops.export.lora_fusion``) and as it did
   before (each projection its own int4 MatMul with its own LoRA A, B and Add).
3. The three decode the same 5 eval prompts (64 new tokens), each in its own process,
   ``--rounds`` rounds alternating the models (``benchmark.measure``): decode tokens/s
   medians and each multi-adapter model's ratio to the merged one.

Goal (the performance issue): multi-adapter decode >= 0.85x the merged model's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from unittest import mock

from inference import demo_run, log  # benchmarks/inference.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
MERGED = "merged int4 (cpu-int4)"
PACKED = "multi-adapter int4, packed LoRA (now)"
UNPACKED = "multi-adapter int4, one LoRA per projection (before)"


def export_merged(run_path: Path, folder: Path, reuse: bool) -> Path:
    from slmops.export.exporter import export_model
    from slmops.export.targets import TARGETS

    if not (reuse and (folder / "genai_config.json").is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log(f"exporting {MERGED}")
        export_model(run_path / "merged", folder, TARGETS["cpu-int4"], log=log)
    return folder


def build_multi(run_path: Path, folder: Path, *, packed: bool, reuse: bool) -> dict:
    """A one-adapter int4 base; ``packed=False`` skips the packing as the builder before did."""
    from slmops.export import multi_adapter
    from slmops.export.multi_adapter import ADAPTER_SUFFIX, generate_adapters

    adapter_file = folder / f"label{ADAPTER_SUFFIX}"
    if not (reuse and adapter_file.is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        metrics = json.loads((run_path / "training_metrics.json").read_text())
        base = metrics["config"]["model_name_or_path"]
        log(f"building {PACKED if packed else UNPACKED}")
        with mock.patch.object(
            multi_adapter, "fuse_lora_model", multi_adapter.fuse_lora_model if packed else _none
        ):
            generate_adapters(
                base, [run_path / "adapter"], folder, adapter_names=["label"], log=log
            )
    return {"label": adapter_file}


def _none(model_path: Path) -> int:
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run_path", type=Path, help="a fine-tuning run (default: the last `make demo`'s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts/bench/multi_adapter")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (medians)")
    parser.add_argument("--reuse", action="store_true", help="keep models an earlier run built")
    args = parser.parse_args()
    args.run_path = (args.run_path or demo_run()).resolve()
    if not (args.run_path / "adapter").is_dir() or not (args.run_path / "merged").is_dir():
        parser.error(f"{args.run_path} has no adapter/ and merged/; run `make demo` first")

    from slmops.evaluation import eval_set
    from slmops.export.benchmark import Subject, measure
    from slmops.export.runners import encode_prompts

    merged = export_merged(args.run_path, args.out / "merged-int4", args.reuse)
    subjects = [Subject(MERGED, "onnx", merged)]
    for label, packed, name in ((PACKED, True, "packed"), (UNPACKED, False, "unpacked")):
        folder = args.out / name
        adapters = build_multi(args.run_path, folder, packed=packed, reuse=args.reuse)
        subjects.append(Subject(label, "onnx", folder, adapters=adapters, adapter="label"))

    plan = eval_set.for_run(args.run_path)
    prompt_ids = encode_prompts(plan.tokenizer, [e.prompt for e in plan.data.eval[:5]])
    log(f"timing {len(subjects)} models, {args.rounds} rounds alternating")
    rows = {row["label"]: row for row in measure(subjects, prompt_ids, 64, rounds=args.rounds)}
    merged_speed = rows[MERGED]["decode_tokens_per_s"]
    print(f"\n{args.rounds} rounds alternating, 5 prompts, 64 new tokens, medians\n")
    print("| model | decode tok/s | x merged | first token ms | size MB | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, row in rows.items():
        speed = row["decode_tokens_per_s"]
        print(f"| {label} | {speed} | {speed / merged_speed:.2f} | {row['first_token_ms']} | "
              f"{row['size_mb']} | {row['peak_rss_mb']} |")  # fmt: skip
    ratio = rows[PACKED]["decode_tokens_per_s"] / merged_speed
    print(f"\nmulti-adapter (packed) / merged int4 decode = {ratio:.2f}x (target >= 0.85x)")
    (args.out / "multi_adapter_decode.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0 if ratio >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
