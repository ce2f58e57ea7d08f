"""One LoRA training step with logits at every position against logits only where the
loss needs them (slmops's default), side by side in one process.

The bundled SmolLM2-135M-Instruct with LoRA r16 on every projection, a batch shaped like
the tone data (rows of --tokens tokens, the last --answer of them trained on), forward +
backward; medians of --rounds alternating rounds after one warm-up step each.

    python benchmarks/labeled_logits_step.py [--batch 8] [--tokens 60] [--answer 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model

from slmops.data.batching import IGNORE_INDEX
from slmops.models import load_causal_lm, resolve
from slmops.training.trainer import labeled_cross_entropy, labeled_positions

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--answer", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    model = load_causal_lm(str(resolve("smollm2-135m-instruct").path))
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=PROJECTIONS)
    model = get_peft_model(model, lora)
    model.train()
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.tokens))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -args.answer :] = ids[:, -args.answer :]
    mask = torch.ones_like(ids)

    def step(kind: str) -> float:
        started = time.perf_counter()
        if kind == "every position":
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        else:
            keep = labeled_positions(labels)
            outputs = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep)
            loss = labeled_cross_entropy(outputs, labels)
        loss.backward()
        model.zero_grad()
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"every position": [], "labeled positions": []}
    for kind in times:
        step(kind)  # warm-up
    for _ in range(args.rounds):
        for kind, seconds in times.items():
            seconds.append(step(kind))
    print(f"batch {args.batch} x {args.tokens} tokens, {args.answer} trained on per row\n")
    print("| logits | s / step (median) |\n|---|---:|")
    medians = {kind: statistics.median(seconds) for kind, seconds in times.items()}
    for kind, median in medians.items():
        print(f"| {kind} | {median:.3f} |")
    ratio = medians["every position"] / medians["labeled positions"]
    print(f"\nlabeled logits speed-up: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
