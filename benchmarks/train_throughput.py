"""Training throughput and memory: LoRA, QLoRA and DoRA against an Olive-style baseline.

Every variant trains the bundled SmolLM2-135M-Instruct on the demo tone data with the same
batch, steps and max_seq_len, each in its own process (so peak RSS is its own). The
baseline is LoRA the way ``olive finetune`` runs it: every row padded to max_seq_len and
gradient checkpointing on. Tokens/s counts real (non-padding) tokens only.

    python benchmarks/train_throughput.py [--steps 15] [--batch 8]

Prints a markdown table and the ratios the fine-tuning issue targets:
LoRA tokens/s >= 1.5x the baseline's; QLoRA's weights in memory <= 0.35x LoRA's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIG = ROOT / "include" / "configs" / "finetune" / "phrase_tones.yaml"

VARIANTS = {
    "baseline (pad to max_seq_len + grad. checkpointing)": [
        "--method", "lora", "--padding", "max_length", "--gradient_checkpointing",
    ],
    "lora": ["--method", "lora"],
    "qlora (nf4, double quant)": ["--method", "qlora"],
    "dora": ["--method", "dora"],
}  # fmt: skip


def train(flags: list[str], steps: int, batch: int, out: Path) -> dict:
    command = [
        sys.executable, "-m", "slmops", "finetune", "--config", str(RUN_CONFIG),
        "-o", str(out), "--max_steps", str(steps), "--eval_steps", str(steps),
        "--logging_steps", str(steps), "--per_device_train_batch_size", str(batch),
        "--merge_adapter", "false", *flags,
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "training_metrics.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="slmops-bench-") as tmp:
        for index, (name, flags) in enumerate(VARIANTS.items()):
            print(f"training {name} ...", file=sys.stderr, flush=True)
            rows[name] = train(flags, args.steps, args.batch, Path(tmp) / str(index))
    print(f"\n{args.steps} steps, batch {args.batch}, max_seq_len 128, CPU\n")
    print("| variant | tokens/s (non-padding) | train s | weights in memory MB | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, m in rows.items():
        print(
            f"| {name} | {m['tokens_per_second']:,.0f} | {m['train_runtime_s']:.1f} | "
            f"{m['model_memory_mb']:,.0f} | {m['peak_memory_mb']['rss']:,.0f} |"
        )
    baseline, lora = rows[next(iter(VARIANTS))], rows["lora"]
    qlora = rows["qlora (nf4, double quant)"]
    speedup = lora["tokens_per_second"] / baseline["tokens_per_second"]
    memory = qlora["model_memory_mb"] / lora["model_memory_mb"]
    print(f"\nLoRA tokens/s / baseline tokens/s = {speedup:.2f}x (target >= 1.5x)")
    print(f"QLoRA weights / LoRA weights = {memory:.2f}x (target <= 0.35x)")
    return 0 if speedup >= 1.5 and memory <= 0.35 else 1


if __name__ == "__main__":
    raise SystemExit(main())
