"""Training throughput and memory: slmops against an Olive-shaped baseline, on two data
shapes, and QLoRA / DoRA beside LoRA.

Every variant trains the bundled SmolLM2-135M-Instruct (LoRA r16 / alpha 32 on every
projection) with the same batch and steps, each in its own process (so peak RSS is its
own), one after the other in one run. Two data shapes:

- tones: short classification rows (the demo config, phrase_tones.yaml; max_seq_len 128),
  the answer one or two tokens;
- instructions: question/answer rows with answers of about 30 tokens (instructions.json with
  the slm_instructions pipeline's template and max_seq_len 256).

Variants per shape:

- olive-shaped: what ``olive finetune`` does: every row padded to max_seq_len, gradient
  checkpointing on, logits at every position;
- slmops, logits everywhere: slmops before the labeled-logits change (per-batch padding,
  the LM head at every position);
- slmops: the default (logits only where the next token is a target).

    python benchmarks/train_throughput.py [--steps 15] [--batch 8] [--shapes tones,instructions]

Prints a markdown table and the ratios the issues target: slmops samples/s >= 3x the
Olive-shaped baseline's on each shape, slmops peak RSS <= 1.10x that of the run before the
change, QLoRA's weights in memory <= 0.35x LoRA's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LORA = ["--method", "lora", "--lora_r", "16", "--lora_alpha", "32"]
SHAPES = {
    "tones": [
        "--config", str(ROOT / "include" / "configs" / "finetune" / "phrase_tones.yaml"),
    ],
    "instructions": [
        "--model_name_or_path", "smollm2-135m-instruct",
        "--data_files", str(ROOT / "include" / "data" / "instructions.json"),
        "--text_template", "User: {input}\nAssistant: {output}",
        "--max_seq_len", "256", "--learning_rate", "2e-4",
    ],
}  # fmt: skip
OLIVE = "olive-shaped (pad to max_seq_len, grad. checkpointing, all logits)"
BEFORE = "slmops, logits everywhere (before)"
SLMOPS = "slmops"
VARIANTS = {
    OLIVE: [*LORA, "--padding", "max_length", "--gradient_checkpointing", "--logits", "all"],
    BEFORE: [*LORA, "--logits", "all"],
    SLMOPS: LORA,
}
# Only on the tone data: the adapter methods against LoRA (weights in memory).
METHODS = {
    "qlora (nf4, double quant)": ["--method", "qlora"],
    "dora": ["--method", "dora"],
}


def train(flags: list[str], steps: int, batch: int, out: Path) -> dict:
    command = [
        sys.executable, "-m", "slmops", "finetune", *flags,
        "-o", str(out), "--max_steps", str(steps), "--eval_steps", str(steps),
        "--logging_steps", str(steps), "--per_device_train_batch_size", str(batch),
        "--merge_adapter", "false",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "training_metrics.json").read_text())
    samples = metrics["global_step"] * batch
    metrics["samples_per_second"] = samples / metrics["train_runtime_s"]
    metrics["tokens_per_row"] = metrics["train_tokens"] / samples
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    args = parser.parse_args()
    shapes = [name.strip() for name in args.shapes.split(",")]
    rows: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="slmops-bench-") as tmp:
        runs = [
            (shape, name, SHAPES[shape] + flags)
            for shape in shapes
            for name, flags in VARIANTS.items()
        ]
        if "tones" in shapes:
            runs += [("tones", name, SHAPES["tones"] + flags) for name, flags in METHODS.items()]
        for index, (shape, name, flags) in enumerate(runs):
            print(f"training {shape}: {name} ...", file=sys.stderr, flush=True)
            rows[shape, name] = train(flags, args.steps, args.batch, Path(tmp) / str(index))

    print(f"\n{args.steps} steps, batch {args.batch}, CPU\n")
    print(
        "| data | variant | tokens/row | samples/s | tokens/s (non-padding) | train s "
        "| weights in memory MB | peak RSS MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (shape, name), m in rows.items():
        print(
            f"| {shape} | {name} | {m['tokens_per_row']:.0f} | {m['samples_per_second']:.2f} | "
            f"{m['tokens_per_second']:,.0f} | {m['train_runtime_s']:.1f} | "
            f"{m['model_memory_mb']:,.0f} | {m['peak_memory_mb']['rss']:,.0f} |"
        )
    print()
    passed = True
    for shape in shapes:
        olive, before, now = (rows[shape, name] for name in (OLIVE, BEFORE, SLMOPS))
        speedup = now["samples_per_second"] / olive["samples_per_second"]
        change = now["samples_per_second"] / before["samples_per_second"]
        memory = now["peak_memory_mb"]["rss"] / before["peak_memory_mb"]["rss"]
        print(f"{shape}: slmops samples/s / Olive-shaped = {speedup:.2f}x (target >= 3x)")
        print(f"{shape}: slmops samples/s / before the change = {change:.2f}x")
        print(f"{shape}: slmops peak RSS / before the change = {memory:.2f}x (target <= 1.10x)")
        passed &= speedup >= 3 and memory <= 1.10
    if "tones" in shapes:
        qlora = rows["tones", "qlora (nf4, double quant)"]["model_memory_mb"]
        ratio = qlora / rows["tones", SLMOPS]["model_memory_mb"]
        print(f"QLoRA weights / LoRA weights = {ratio:.2f}x (target <= 0.35x)")
        passed &= ratio <= 0.35
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
