"""Held-out accuracy of a fine-tuned classifier run beside its base model's.

Reads the run's own settings from training_metrics.json, rebuilds the same eval split
(same data, formatting and seed), greedily generates every answer with the base model and
with the merged fine-tuned model, and scores an answer by the first label word it contains
(lenient to the base model, which answers in sentences).

    python benchmarks/tone_accuracy.py RUN_DIR [--json OUT.json]

(The evaluation stage with metrics and gates is ``slmops evaluate``; this is the plain
generate-and-compare check the fine-tuning acceptance asks for.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from slmops.data import prepare
from slmops.inference import greedy_complete
from slmops.models import load_causal_lm, load_tokenizer, quiet_libraries, resolve
from slmops.training_config import FinetuneConfig


def predicted_label(answer: str, label_set: set[str]) -> str:
    """The first word of ``answer`` that is a label, else its first word."""
    words = re.findall(r"[A-Za-z]+", answer.lower())
    return next((word for word in words if word in label_set), words[0] if words else "")


def accuracy(model_path: Path, prompts: list[str], labels: list[str]) -> tuple[float, list[str]]:
    tokenizer = load_tokenizer(str(model_path))
    model = load_causal_lm(str(model_path))
    answers = greedy_complete(model, tokenizer, prompts, max_new_tokens=24, batch_size=16)
    label_set = {label.lower() for label in labels}
    predictions = [predicted_label(answer, label_set) for answer in answers]
    correct = sum(p == label.lower() for p, label in zip(predictions, labels, strict=True))
    return correct / len(labels), predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished `slmops finetune` output path")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    quiet_libraries()
    metrics = json.loads((args.run_dir / "training_metrics.json").read_text())
    config = FinetuneConfig.model_validate(metrics["config"])
    if not config.label_field:
        sys.exit("the run has no label_field: accuracy needs labelled completions")
    base = resolve(config.model_name_or_path)
    data = prepare(config, load_tokenizer(base))
    prompts = [example.prompt for example in data.eval]
    labels = data.eval_labels
    results = {"eval_rows": len(prompts), "steps": metrics["global_step"]}
    for name, path in (("base", base.path), ("fine_tuned", args.run_dir / "merged")):
        started = time.monotonic()
        score, predictions = accuracy(path, prompts, labels)
        results[f"{name}_accuracy"] = round(score, 4)
        results[f"{name}_seconds"] = round(time.monotonic() - started, 1)
        results[f"{name}_sample"] = predictions[:8]
    results["labels_sample"] = labels[:8]
    print(
        f"held-out accuracy on {len(prompts)} rows after {metrics['global_step']} steps: "
        f"base {results['base_accuracy']:.3f}  fine-tuned {results['fine_tuned_accuracy']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
