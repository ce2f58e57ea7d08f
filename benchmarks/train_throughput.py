"""Training throughput and memory: slmops against an Olive-shaped baseline, on two data
shapes, and QLoRA / DoRA beside LoRA.

Every variant trains the bundled SmolLM2-135M-Instruct (LoRA r16 / alpha 32 on every
projection) with the same batch and steps, each in its own process (so peak RSS is its
own), one after the other in one run. Two data shapes:

- tones: short classification rows (the demo config, phrase_tones.yaml; max_seq_len 128),
  the answer one or two tokens;
- instructions: question/answer rows with answers of about 30 tokens (instructions.json with
  the slm_instructions pipeline's template and max_seq_len 256), about 50 tokens a row;
- long: the ~200-token rows the issue means by long instruction rows, made here from the
  same file (four consecutive questions in one prompt, their four answers as the answer;
  max_seq_len 256), so padding saves little and the hot loop has to earn the ratio.

Variants per shape:

- olive-shaped: what ``olive finetune`` does: every row padded to max_seq_len, gradient
  checkpointing on, logits at every position;
- slmops, logits everywhere: slmops before this work (per-batch padding,
  the LM head at every position);
- slmops, glibc's allocator defaults: the default with SLMOPS_KEEP_FREED_MEMORY=0 (as Olive
  and the two rows above run), to show what keeping freed memory between steps is worth;
- slmops, torch's dropout: the default with SLMOPS_FAST_DROPOUT=0 (as Olive and the first
  two rows run), to show what drawing LoRA dropout masks four per random word is worth;
- slmops, peft's LoRA forward: the default with SLMOPS_FUSED_LORA=0 (as Olive and the first
  two rows run), to show what the fused LoRA projection and the faster frozen-weight GEMM
  (slmops.training.fused_lora, slmops.training.cpu_gemm) are worth;
- slmops, the head apart from the loss: the default with SLMOPS_FUSED_HEAD=0 (logits of
  the labeled positions written whole, then torch's cross-entropy), to show what computing
  the LM head inside the loss a chunk of tokens at a time (slmops.training.head_loss) is
  worth;
- slmops: the default (logits only where the next token is a target, computed with the
  loss in chunks; glibc keeps the memory a step frees for the next,
  slmops.training.allocator; LoRA dropout masks drawn four per random word,
  slmops.training.dropout; each LoRA projection in one autograd function,
  slmops.training.fused_lora);
- slmops bf16: the default with ``--mixed_precision bf16`` (autocast; on CPUs with AMX or
  AVX512-BF16 the matmuls run in bfloat16). Not the same arithmetic as the others: given
  for the record, outside the targets.

    python benchmarks/train_throughput.py [--steps 15] [--batch 8] [--shapes tones,long]
        [--only "olive-shaped;slmops"]
    python benchmarks/train_throughput.py --profile [--shapes tones]

``--only`` runs the variants it names, each by its whole name or the start of it (the
ratios that need a variant left out are not printed). ``--profile`` trains slmops's default on
the first shape with torch.profiler over steps 3-6 and prints where a step's CPU time goes
(the top operators, and the optimizer step, the batch collation and the evaluation as
shares of the training time).

Prints a markdown table and the ratios the issues target: slmops samples/s >= 3x the
Olive-shaped baseline's on each shape, slmops peak RSS <= 1.10x that of the run before the
change, QLoRA's weights in memory <= 0.35x LoRA's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from slmops.training.config import FinetuneConfig

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
    "long": [
        "--model_name_or_path", "smollm2-135m-instruct",
        "--text_template", "User: {input}\nAssistant: {output}",
        "--max_seq_len", "256", "--learning_rate", "2e-4",
    ],
}  # fmt: skip
LONG_ROWS_PER_ROW = 4  # instruction rows per long row
OLIVE = "olive-shaped (pad to max_seq_len, grad. checkpointing, all logits)"
BEFORE = "slmops, logits everywhere (before)"
SLMOPS = "slmops"
GLIBC = "slmops, glibc's allocator defaults"
TORCH_DROPOUT = "slmops, torch's dropout"
PEFT_FORWARD = "slmops, peft's LoRA forward"
HEAD_APART = "slmops, the head apart from the loss"
BF16 = "slmops bf16 (--mixed_precision bf16, for the record)"
VARIANTS = {
    OLIVE: [*LORA, "--padding", "max_length", "--gradient_checkpointing", "--logits", "all"],
    BEFORE: [*LORA, "--logits", "all"],
    GLIBC: LORA,
    TORCH_DROPOUT: LORA,
    PEFT_FORWARD: LORA,
    HEAD_APART: LORA,
    SLMOPS: LORA,
    BF16: [*LORA, "--mixed_precision", "bf16"],
}
# Olive, and slmops before this work, train with glibc's allocator defaults, torch's
# dropout and peft's LoRA forward; slmops.training.allocator keeps freed memory for the
# next step (GLIBC isolates it), slmops.training.dropout draws the masks (TORCH_DROPOUT
# isolates that), slmops.training.fused_lora fuses each projection (PEFT_FORWARD) and
# slmops.training.head_loss computes the head with the loss (HEAD_APART).
DEFAULT_ALLOCATOR = {"SLMOPS_KEEP_FREED_MEMORY": "0"}
DROPOUT_OFF = {"SLMOPS_FAST_DROPOUT": "0"}
FUSED_OFF = {"SLMOPS_FUSED_LORA": "0"}
HEAD_OFF = {"SLMOPS_FUSED_HEAD": "0"}
EVERY_CHANGE_OFF = {**DEFAULT_ALLOCATOR, **DROPOUT_OFF, **FUSED_OFF, **HEAD_OFF}
VARIANT_ENV = {
    OLIVE: EVERY_CHANGE_OFF,
    BEFORE: EVERY_CHANGE_OFF,
    GLIBC: DEFAULT_ALLOCATOR,
    TORCH_DROPOUT: DROPOUT_OFF,
    PEFT_FORWARD: FUSED_OFF,
    HEAD_APART: HEAD_OFF,
}
# What each default-on change is worth: slmops against the run with that one change off.
ISOLATED = [
    ("kept freed memory", GLIBC, "glibc's defaults"),
    ("dropout masks 4 per random word", TORCH_DROPOUT, "torch's dropout"),
    ("fused LoRA projections", PEFT_FORWARD, "peft's LoRA forward"),
    ("head computed with the loss", HEAD_APART, "the head apart"),
]
# Only on the tone data: the adapter methods against LoRA (weights in memory).
METHODS = {
    "qlora (nf4, double quant)": ["--method", "qlora"],
    "dora": ["--method", "dora"],
}


def chosen(variants: dict, only: str | None) -> dict:
    """The variants ``--only`` names: each entry picks the variant of that exact name, or
    else every variant whose name starts with it."""
    if not only:
        return dict(variants)
    picked = set()
    for entry in (part.strip() for part in only.split(";")):
        picked |= {entry} & variants.keys() or {n for n in variants if n.startswith(entry)}
    return {name: flags for name, flags in variants.items() if name in picked}


def long_rows(folder: Path) -> Path:
    """instructions.json as ~200-token rows: each row asks LONG_ROWS_PER_ROW consecutive
    questions and answers them in order."""
    rows = json.loads((ROOT / "include" / "data" / "instructions.json").read_text())
    long = []
    for start in range(0, len(rows) - LONG_ROWS_PER_ROW + 1, LONG_ROWS_PER_ROW):
        group = rows[start : start + LONG_ROWS_PER_ROW]
        questions = "\n".join(f"{n}. {row['input']}" for n, row in enumerate(group, 1))
        answers = "\n".join(f"{n}. {row['output']}" for n, row in enumerate(group, 1))
        long.append({"input": f"Answer each question in turn.\n{questions}", "output": answers})
    path = folder / "long_instructions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in long))
    return path


def shape_flags(shape: str, folder: Path) -> list[str]:
    if shape == "long":
        return [*SHAPES[shape], "--data_files", str(long_rows(folder))]
    return SHAPES[shape]


def train(flags: list[str], steps: int, batch: int, out: Path, env: dict | None = None) -> dict:
    command = [
        sys.executable, "-m", "slmops", "finetune", *flags,
        "-o", str(out), "--max_steps", str(steps), "--eval_steps", str(steps),
        "--logging_steps", str(steps), "--per_device_train_batch_size", str(batch),
        "--merge_adapter", "false",
    ]  # fmt: skip
    environment = {**os.environ, **(env or {})}
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=environment)
    metrics = json.loads((out / "training_metrics.json").read_text())
    samples = metrics["global_step"] * batch
    metrics["samples_per_second"] = samples / metrics["train_runtime_s"]
    metrics["tokens_per_row"] = metrics["train_tokens"] / samples
    return metrics


def profile(shape: str, batch: int) -> int:
    """One slmops training in this process, profiled over steps 3-6 (after warm-up)."""
    import torch
    from transformers import TrainerCallback

    from slmops.commands import config_from_args  # the CLI's own flag parsing
    from slmops.commands.finetune import register
    from slmops.training.run import run

    class Profile(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:
                self.profiler = torch.profiler.profile(record_shapes=False)
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                self.profiler.__exit__(None, None, None)

    with tempfile.TemporaryDirectory(prefix="slmops-profile-") as tmp:
        parser = argparse.ArgumentParser()
        register(parser.add_subparsers(dest="command"))
        flags = [*shape_flags(shape, Path(tmp)), *LORA, "-o", tmp]
        flags += ["--max_steps", "8", "--eval_steps", "8"]
        flags += ["--per_device_train_batch_size", str(batch), "--merge_adapter", "false"]
        args = parser.parse_args(["finetune", *flags])
        config = config_from_args(FinetuneConfig, args, config_file=args.config)
        callback = Profile()
        run(config, callbacks=[callback])
    events = callback.profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    print(f"\n{shape}, batch {batch}: steps 3-6 profiled, {total / 1e6:.1f} s of CPU time\n")
    print("| operator | self CPU s | share | calls |")
    print("|---|---:|---:|---:|")
    for event in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]:
        share = event.self_cpu_time_total / total
        print(
            f"| {event.key} | {event.self_cpu_time_total / 1e6:.2f} | {share:.1%} | {event.count} |"
        )
    by_name = {event.key: event for event in events}
    print()
    for label in ("Optimizer.step", "_fused_adamw", "DataLoader", "collate"):
        matches = [e for key, e in by_name.items() if label.lower() in key.lower()]
        if matches:
            seconds = max(e.cpu_time_total for e in matches) / 1e6
            print(f"{label}: {seconds:.2f} s in total ({seconds * 1e6 / total:.1%})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    parser.add_argument("--only", help="the variants to run, separated by semicolons")
    parser.add_argument("--profile", action="store_true", help="profile slmops's steps")
    args = parser.parse_args()
    shapes = [name.strip() for name in args.shapes.split(",")]
    variants = chosen(VARIANTS, args.only)
    methods = chosen(METHODS, args.only)
    if args.profile:
        return profile(shapes[0], args.batch)
    rows: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="slmops-bench-") as tmp:
        runs = [
            (shape, name, shape_flags(shape, Path(tmp)) + flags)
            for shape in shapes
            for name, flags in variants.items()
        ]
        if "tones" in shapes:
            runs += [("tones", name, SHAPES["tones"] + flags) for name, flags in methods.items()]
        for index, (shape, name, flags) in enumerate(runs):
            print(f"training {shape}: {name} ...", file=sys.stderr, flush=True)
            out = Path(tmp) / str(index)
            rows[shape, name] = m = train(flags, args.steps, args.batch, out, VARIANT_ENV.get(name))
            print(
                f"  {m['samples_per_second']:.2f} samples/s, peak RSS "
                f"{m['peak_memory_mb']['rss']:,.0f} MB",
                file=sys.stderr,
                flush=True,
            )

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
        now = rows.get((shape, SLMOPS))
        olive, before = rows.get((shape, OLIVE)), rows.get((shape, BEFORE))
        if now is None:
            continue
        if olive:
            speedup = now["samples_per_second"] / olive["samples_per_second"]
            print(f"{shape}: slmops samples/s / Olive-shaped = {speedup:.2f}x (target >= 3x)")
            passed &= speedup >= 3
        if before:
            change = now["samples_per_second"] / before["samples_per_second"]
            memory = now["peak_memory_mb"]["rss"] / before["peak_memory_mb"]["rss"]
            print(f"{shape}: slmops samples/s / before the change = {change:.2f}x")
            print(f"{shape}: slmops peak RSS / before the change = {memory:.2f}x (target <= 1.10x)")
            passed &= memory <= 1.10
        for what, name, against in ISOLATED:
            other = rows.get((shape, name))
            if other is None:
                continue
            print(
                f"{shape}: {what}: samples/s "
                f"{now['samples_per_second'] / other['samples_per_second']:.2f}x, peak RSS "
                f"{now['peak_memory_mb']['rss'] / other['peak_memory_mb']['rss']:.2f}x "
                f"of {against}"
            )
        if (shape, BF16) in rows and olive:
            bf16 = rows[shape, BF16]["samples_per_second"]
            print(
                f"{shape}: slmops bf16 samples/s / slmops = "
                f"{bf16 / now['samples_per_second']:.2f}x, / Olive-shaped = "
                f"{bf16 / olive['samples_per_second']:.2f}x (for the record)"
            )
    if ("tones", "qlora (nf4, double quant)") in rows and ("tones", SLMOPS) in rows:
        qlora = rows["tones", "qlora (nf4, double quant)"]["model_memory_mb"]
        ratio = qlora / rows["tones", SLMOPS]["model_memory_mb"]
        print(f"QLoRA weights / LoRA weights = {ratio:.2f}x (target <= 0.35x)")
        passed &= ratio <= 0.35
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
