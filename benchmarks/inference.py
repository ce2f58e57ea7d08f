"""Inference speed and accuracy of the ONNX targets against PyTorch fp32, and of one
multi-adapter model against the merged export, on the demo's fine-tuned SmolLM2.

    python benchmarks/inference.py [--run_path RUN/finetune] [--out DIR]

1. ``optimize`` exports the run for cpu-int4, cpu-int8 and cpu-fp32 and scores each on the
   run's eval set against the PyTorch fine-tuned model (parity, greedy).
2. A second LoRA adapter is trained on the same phrases to answer with one sentence
   instead of a label (reused when already trained), and ``generate_adapters`` builds one
   int4 base serving both adapters; the label adapter is scored on the eval set through it.
3. Every model decodes the same 5 prompts in its own process, 3 rounds alternating the
   models, in this one run: time to first token, decode tokens/s (medians), size on disk,
   peak RSS, and the ratios to PyTorch fp32.

Targets (the ONNX issue): cpu-int4 decode >= 6x PyTorch fp32 tokens/s, accuracy within
2 points of the PyTorch fine-tuned model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "include" / "data" / "phrase_tones.jsonl"
TARGETS = ("cpu-int4", "cpu-int8", "cpu-fp32")
REASONS = {
    "joyful": "it celebrates something good",
    "angry": "it complains about something unfair",
    "sad": "it mourns something lost",
    "fearful": "it worries about something that could go wrong",
    "grateful": "it thanks someone",
    "curious": "it asks a question out of interest",
}
EXPLAIN_PROMPT = (
    "Say in one sentence which tone the user's phrase has (joyful, angry, sad, fearful, "
    "grateful or curious) and why."
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export_targets(run_path: Path, out: Path) -> dict:
    from slmops.export.optimize import optimize

    results = {}
    for target in TARGETS:
        log(f"exporting {target}")
        result = optimize(None, target, out / target, run_path=run_path, benchmark=False,
                          fail_on_gates=False, log=log)  # fmt: skip
        results[target] = result
    return results


def train_explain_adapter(run_path: Path, out: Path) -> Path:
    """A LoRA adapter on the same phrases that answers with a sentence (reused if done)."""
    from slmops.training.config import FinetuneConfig
    from slmops.training.run import run as train

    run_config = json.loads((run_path / "training_metrics.json").read_text())["config"]
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    data = out / "explain.jsonl"
    data.write_text(
        "".join(
            json.dumps({"phrase": row["phrase"], "explanation":
                        f"It sounds {row['tone']} because {REASONS[row['tone']]}."}) + "\n"
            for row in rows
        ),
        encoding="utf-8",
    )  # fmt: skip
    config = FinetuneConfig.model_validate(
        {
            "model_name_or_path": run_config["model_name_or_path"],
            "data_files": [str(data)],
            "use_chat_template": True,
            "input_field": "phrase",
            "output_field": "explanation",
            "system_prompt": EXPLAIN_PROMPT,
            "method": "lora",
            "max_steps": 80,
            "eval_steps": 40,
            "learning_rate": 5e-4,
            "max_seq_len": 128,
            "output_path": out / "explain-run",
        }
    )
    log("training the explanation adapter (reused when already trained)")
    return train(config, log=log).adapter_path


def build_multi_adapter(run_path: Path, explain: Path, out: Path):
    from slmops.export.multi_adapter import generate_adapters

    base = json.loads((run_path / "training_metrics.json").read_text())["config"]
    return generate_adapters(base["model_name_or_path"], [run_path / "adapter", explain],
                             out / "multi-adapter", adapter_names=["label", "explain"],
                             log=log)  # fmt: skip


def score_label_adapter(run_path: Path, multi_dir: Path) -> tuple[dict, list[dict]]:
    """Eval-set metrics of the label adapter served by the multi-adapter model, and a few
    answers of both adapters to the same phrases."""
    from slmops.evaluation import eval_set
    from slmops.evaluation.run import score_answers
    from slmops.export.multi_adapter import open_multi_adapter
    from slmops.export.runners import encode_prompts, greedy_answers
    from slmops.inference import chat_prompt, decode_answers

    eval_plan = eval_set.for_run(run_path)
    tokenizer = eval_plan.tokenizer
    runner = open_multi_adapter(multi_dir)
    prompt_ids = encode_prompts(tokenizer, [e.prompt for e in eval_plan.data.eval])
    answers = decode_answers(tokenizer, greedy_answers(runner, prompt_ids, eval_plan.max_new_tokens,
                                                       adapter="label"))  # fmt: skip
    metrics = score_answers(eval_plan, answers)["metrics"]
    system = json.loads((run_path / "training_metrics.json").read_text())["config"]["system_prompt"]
    samples = []
    for example in eval_plan.data.eval[:4]:
        phrase = example.prompt.split("<|im_start|>user\n")[-1].split("<|im_end|>")[0]
        label_ids = encode_prompts(tokenizer, [chat_prompt(tokenizer, phrase, system)])
        explain_ids = encode_prompts(tokenizer, [chat_prompt(tokenizer, phrase, EXPLAIN_PROMPT)])
        label = greedy_answers(runner, label_ids, 8, adapter="label")
        explanation = greedy_answers(runner, explain_ids, 40, adapter="explain")
        samples.append({
            "phrase": phrase,
            "label": decode_answers(tokenizer, label)[0],
            "explain": decode_answers(tokenizer, explanation)[0],
        })  # fmt: skip
    return metrics, samples


def measure_all(run_path: Path, exports: dict, multi) -> list[dict]:
    from slmops.evaluation import eval_set
    from slmops.export.benchmark import Subject, measure, with_speedups
    from slmops.export.runners import encode_prompts

    eval_plan = eval_set.for_run(run_path)
    prompts = [example.prompt for example in eval_plan.data.eval[:5]]
    prompt_ids = encode_prompts(eval_plan.tokenizer, prompts)
    subjects = [Subject("pytorch-fp32", "torch", run_path / "merged")]
    subjects += [Subject(name, "onnx", result.output_path) for name, result in exports.items()]
    subjects.append(Subject("multi-adapter int4 (label)", "onnx", multi.output_path,
                            adapters=dict(multi.adapters), adapter="label"))  # fmt: skip
    log("timing every model, each in its own process")
    return with_speedups(measure(subjects, prompt_ids, 64, rounds=3), "pytorch-fp32")


def demo_run() -> Path:
    """The fine-tuning folder of the newest slm_finetune run under artifacts/."""
    from slmops.errors import ConfigError
    from slmops.layout import RunLayout
    from slmops.pipeline.stages import latest_run

    try:
        return RunLayout(latest_run(ROOT / "artifacts")).finetune.root
    except ConfigError:
        return ROOT / "artifacts/demo/finetune"  # a run made with the CLI stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run_path", type=Path, help="a fine-tuning run (default: the last `make demo`'s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts/bench/inference")
    args = parser.parse_args()
    args.run_path = args.run_path or demo_run()
    if not (args.run_path / "training_metrics.json").is_file():
        parser.error(f"{args.run_path} is not a finished run; run `make demo` first")
    args.out.mkdir(parents=True, exist_ok=True)

    exports = export_targets(args.run_path, args.out)
    explain = train_explain_adapter(args.run_path, args.out)
    multi = build_multi_adapter(args.run_path, explain, args.out)
    multi_metrics, samples = score_label_adapter(args.run_path, multi.output_path)
    timings = measure_all(args.run_path, exports, multi)

    reference = next(iter(exports.values())).parity["pytorch"]["metrics"]["accuracy"]
    accuracy = {"pytorch-fp32": reference, "multi-adapter int4 (label)": multi_metrics["accuracy"]}
    accuracy.update({n: r.parity["exported"]["metrics"]["accuracy"] for n, r in exports.items()})
    agreement = {n: r.parity["agreement"]["mean_prefix_agreement"] for n, r in exports.items()}
    print(
        "\n| model | accuracy | decode tok/s | x PyTorch | first token ms | size MB | peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in timings:
        print(f"| {row['label']} | {accuracy[row['label']]:.4f} | {row['decode_tokens_per_s']} | "
              f"{row['decode_speedup']} | {row['first_token_ms']} | {row['size_mb']} | "
              f"{row['peak_rss_mb']} |")  # fmt: skip
    by_label = {row["label"]: row for row in timings}
    int4 = by_label["cpu-int4"]
    multi_row = by_label["multi-adapter int4 (label)"]
    print(f"\ntoken agreement with PyTorch (mean prefix): {agreement}")
    print(f"cpu-int4 decode speed-up over PyTorch fp32: {int4['decode_speedup']}x (target >= 6x)")
    print(f"cpu-int4 accuracy drop: {reference - accuracy['cpu-int4']:.4f} (target <= 0.02)")
    print(f"multi-adapter vs merged int4 decode: "
          f"{multi_row['decode_tokens_per_s'] / int4['decode_tokens_per_s']:.2f}x")  # fmt: skip
    print("\nthe two adapters of one multi-adapter model, same phrases:")
    for sample in samples:
        print(f"- {sample['phrase']!r}: label -> {sample['label']!r}; "
              f"explain -> {sample['explain']!r}")  # fmt: skip
    (args.out / "inference.json").write_text(json.dumps(
        {"timings": timings, "accuracy": accuracy, "agreement": agreement, "samples": samples},
        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
