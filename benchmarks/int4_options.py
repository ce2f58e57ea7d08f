"""int4 builder options side by side: size, decode speed and eval-set accuracy of the
demo's fine-tuned SmolLM2 exported once per option set of onnxruntime-genai's builder.

    python benchmarks/int4_options.py [--run_path RUN/finetune] [--out DIR]
        [--only NAME,NAME] [--rounds 3] [--reuse] [--rows eval|all]

(from the project root: the run's data paths are relative to it)

1. The run's merged model is exported with the cpu-int4 target once per option set
   (``OPTION_SETS``; each replaces the target's own builder options). A set the builder
   refuses, or whose model does not load, is reported with the reason. For reference, a
   few sets export with another target (``OTHER_TARGET``): fp32 with no quantization (how
   much the exported graph alone changes the answers), cpu-int8 (weight-only int8), and
   dynamic int8, what cpu-int8 was before.
2. Each export answers the run's eval rows greedily (``parity.score_exported``, the
   scoring parity uses); PyTorch fp32 answers them once (the evaluation stage's batching).
   ``--rows all`` scores the training rows too: not a measure of generalization but of
   how faithfully each export answers as PyTorch does, on ten times the rows (one row of
   the 63 eval rows is 1.6 points). Each row also counts the answers that differ from
   PyTorch's.
3. Every model that loads, and PyTorch fp32, decodes the same 5 prompts in its own
   process, ``--rounds`` rounds alternating the models (``benchmark.measure``, as
   benchmarks/inference.py does): decode tokens/s medians, and ratios to today's cpu-int4
   (``k_quant``) and to PyTorch fp32.

Goal (the inference issue): within 1.0 accuracy point of PyTorch at the same or better
decode speed than today's cpu-int4, and >= 8x PyTorch fp32.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from inference import demo_run, log  # benchmarks/inference.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "k_quant"  # cpu-int4 before this benchmark
DEFAULT = "cpu-int4 default"  # whatever targets.py says now
# name -> the builder's --extra_options. The LM head is tied to the embedding in SmolLM2:
# an int8 (or float) LM head needs shared_embeddings=false, as the builder's tied
# GatherBlockQuantized only reads 4-bit weights.
OPTION_SETS: dict[str, dict[str, str]] = {
    BASELINE: {"algo_config": "k_quant"},
    "rtn": {"algo_config": "rtn"},
    "k_quant acc1": {"algo_config": "k_quant", "accuracy_level": "1"},
    # The CPU EP's default is 4 (activations quantized to int8); 3 computes in bfloat16,
    # which CPUs with AMX / AVX512-BF16 run natively.
    "k_quant acc3": {"algo_config": "k_quant", "accuracy_level": "3"},
    "k_quant acc2": {"algo_config": "k_quant", "accuracy_level": "2"},
    "k_quant b16": {"algo_config": "k_quant", "block_size": "16"},
    "k_quant b64": {"algo_config": "k_quant", "block_size": "64"},
    "k_quant asym": {"algo_config": "k_quant", "is_symmetric": "false"},
    "k_quant last_matmul:uint4 (tied)": {
        "algo_config": "k_quant",
        "matmul_mixed_precision": "last_matmul:uint4",
    },
    "k_quant mixed_layers:int8": {
        "algo_config": "k_quant",
        "matmul_mixed_precision": "mixed_layers:int8",
    },
    "k_quant last_matmul:int8 (tied)": {
        "algo_config": "k_quant",
        "matmul_mixed_precision": "last_matmul:int8",
    },
    "k_quant last_matmul:int8 untied": {
        "algo_config": "k_quant",
        "matmul_mixed_precision": "last_matmul:int8",
        "shared_embeddings": "false",
    },
    # llama.cpp's mixed strategy (the first and last eighth of the layers, and every third
    # layer's qkv/v/down projections, in int8) with the head in int8 too: the builder's
    # "k_quant_mixed".
    "k_quant_mixed (tied)": {
        "algo_config": "k_quant",
        "matmul_mixed_precision": "last_matmul:int8,mixed_layers:int8",
    },
    "k_quant_mixed untied": {
        "algo_config": "k_quant",
        "matmul_mixed_precision": "last_matmul:int8,mixed_layers:int8",
        "shared_embeddings": "false",
    },
    "k_quant fp32 lm_head": {
        "algo_config": "k_quant",
        "nodes_to_exclude": "/lm_head/MatMul",
        "shared_embeddings": "false",
    },
}


# Option sets exported for another target than cpu-int4: where the exported graph alone,
# with no quantization, already answers unlike PyTorch.
DYNAMIC_INT8 = "int8 dynamic (cpu-int8 before)"  # the fp32 export, then quantize_dynamic
OTHER_TARGET = {
    "fp32 (no quantization)": "cpu-fp32",
    "int8 (cpu-int8)": "cpu-int8",
    DYNAMIC_INT8: "cpu-fp32",
}
OPTION_SETS.update({name: {} for name in OTHER_TARGET})


def option_sets() -> dict[str, dict[str, str]]:
    """OPTION_SETS and, first, the cpu-int4 target's default as it is now (when it is not
    one of them already)."""
    from slmops.export.targets import TARGETS

    default = dict(TARGETS["cpu-int4"].builder_options)
    if default in OPTION_SETS.values():
        return dict(OPTION_SETS)
    return {DEFAULT: default, **OPTION_SETS}


def export_all(
    model_dir: Path, out: Path, names: list[str], *, reuse: bool = False
) -> dict[str, dict]:
    """Export ``model_dir`` once per option set; name -> {"path", "size_mb"} or {"error"}.
    With ``reuse``, a set's folder left by an earlier run is kept."""
    from slmops.export.benchmark import size_on_disk
    from slmops.export.exporter import export_model
    from slmops.export.targets import TARGETS

    # Each set is the builder's whole --extra_options: the target's own are left out, so a
    # row means the same whatever cpu-int4's default is ("cpu-int4 default" is that).
    results = {}
    for name in names:
        folder = out / _slug(name)
        options = option_sets()[name]
        bare = replace(TARGETS[OTHER_TARGET.get(name, "cpu-int4")], builder_options=())
        if reuse and (folder / "genai_config.json").is_file():
            log(f"reusing {folder}")
            results[name] = {"path": folder, "size_mb": round(size_on_disk(folder) / 2**20, 1),
                             "options": options}  # fmt: skip
            continue
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        log(f"exporting {name}: {options}")
        try:
            record = export_model(model_dir, folder, bare, builder_options=options, log=log)
        except Exception as exc:  # the builder's refusal is a result here
            results[name] = {"error": _first_line(exc)}
            continue
        if record["fell_back"]:
            results[name] = {"error": f"fell back to torch.onnx: {record['fallback_reason']}"}
            continue
        if name == DYNAMIC_INT8:
            from slmops.export import MODEL_FILE
            from slmops.export.quantize import quantize_int8_dynamic

            quantize_int8_dynamic(folder / MODEL_FILE, folder / MODEL_FILE)
        results[name] = {"path": folder, "size_mb": round(size_on_disk(folder) / 2**20, 1),
                         "options": options}  # fmt: skip
    return results


def scoring_plan(run_path: Path, rows: str):
    """The run's eval set, or (``rows == "all"``) its training and eval rows as one set."""
    from slmops.evaluation import eval_set
    from slmops.evaluation.config import config_for_run
    from slmops.evaluation.scoring import without_special_tokens

    if rows == "eval":
        return eval_set.for_run(run_path, log=log)
    plan = eval_set.build(config_for_run(run_path), log)  # from the data: train rows too
    data = plan.data
    every = data.train + data.eval
    labels = None if data.eval_labels is None else (data.train_labels or []) + data.eval_labels
    return replace(
        plan,
        data=replace(data, eval=every, eval_labels=labels),
        references=[without_special_tokens(e.completion, plan.tokenizer) for e in every],
    )


def score_all(run_path: Path, exports: dict[str, dict], rows: str = "eval") -> float:
    """Fill each export's accuracy and answers differing from PyTorch's (or its load
    error); returns PyTorch's accuracy."""
    import gc

    from slmops.evaluation.run import score_answers
    from slmops.export.parity import score_exported
    from slmops.export.runners import open_exported
    from slmops.inference import decode_answers, greedy_token_ids
    from slmops.models import load_causal_lm

    plan = scoring_plan(run_path, rows)
    primary = plan.primary
    for name, result in exports.items():
        if "error" in result:
            continue
        try:
            runner = open_exported(result["path"])
        except Exception as exc:
            result["error"] = _first_line(exc)
            continue
        scored = score_exported(runner, plan)
        result["accuracy"] = scored["metrics"][primary]
        result["answers"] = scored["answers"]
        log(f"{name}: {primary} {result['accuracy']:.4f}")
        del runner
        gc.collect()
    model = load_causal_lm(str(run_path / "merged"))
    prompts = [example.prompt for example in plan.data.eval]
    ids = greedy_token_ids(model, plan.tokenizer, prompts, max_new_tokens=plan.max_new_tokens,
                           batch_size=16)  # fmt: skip
    torch_answers = decode_answers(plan.tokenizer, ids)
    reference = score_answers(plan, torch_answers)["metrics"][primary]
    log(f"pytorch-fp32: {primary} {reference:.4f} on {len(prompts)} rows")
    for result in exports.values():
        if "answers" in result:
            pairs = zip(result["answers"], torch_answers, strict=True)
            result["differ"] = sum(mine != theirs for mine, theirs in pairs)
            result["rows"] = len(torch_answers)
    return reference


def time_all(run_path: Path, exports: dict[str, dict], rounds: int) -> dict[str, dict]:
    from slmops.evaluation import eval_set
    from slmops.export.benchmark import Subject, measure, with_speedups
    from slmops.export.runners import encode_prompts

    plan = eval_set.for_run(run_path)
    prompt_ids = encode_prompts(plan.tokenizer, [e.prompt for e in plan.data.eval[:5]])
    subjects = [Subject("pytorch-fp32", "torch", run_path / "merged")]
    subjects += [Subject(n, "onnx", r["path"]) for n, r in exports.items() if "error" not in r]
    log(f"timing {len(subjects)} models, {rounds} rounds alternating")
    rows = with_speedups(measure(subjects, prompt_ids, 64, rounds=rounds), "pytorch-fp32")
    return {row["label"]: row for row in rows}


def table(exports: dict[str, dict], timings: dict[str, dict], reference: float) -> str:
    base_speed = timings.get(BASELINE, {}).get("decode_tokens_per_s")
    torch_row = timings["pytorch-fp32"]
    lines = [
        "| options | size MB | decode tok/s | x k_quant | x PyTorch | accuracy | drop (points) "
        "| answers unlike PyTorch's |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| pytorch-fp32 | {torch_row['size_mb']} | {torch_row['decode_tokens_per_s']} | | 1.0 | "
        f"{reference:.4f} | | |",
    ]
    for name, result in exports.items():
        if "error" in result or name not in timings:
            lines.append(f"| {name} | failed: {result.get('error', 'not timed')[:120]} "
                         "| | | | | | |")  # fmt: skip
            continue
        row = timings[name]
        speed = row["decode_tokens_per_s"]
        versus = f"{speed / base_speed:.2f}" if base_speed else ""
        lines.append(f"| {name} | {result['size_mb']} | {speed} | {versus} | "
                     f"{row['decode_speedup']} | {result['accuracy']:.4f} | "
                     f"{100 * (reference - result['accuracy']):.2f} | "
                     f"{result['differ']} of {result['rows']} |")  # fmt: skip
    return "\n".join(lines)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run_path", type=Path, help="a fine-tuning run (default: the last `make demo`'s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts/bench/int4_options")
    parser.add_argument("--only", help="comma-separated option-set names (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (medians)")
    parser.add_argument(
        "--reuse", action="store_true", help="keep exports an earlier run left in --out"
    )
    parser.add_argument(
        "--rows", choices=("eval", "all"), default="eval",
        help="score the eval rows, or the training rows too (fidelity to PyTorch)",
    )  # fmt: skip
    args = parser.parse_args()
    args.run_path = args.run_path or demo_run()
    if not (args.run_path / "merged").is_dir():
        parser.error(f"{args.run_path} has no merged/ model; run `make demo` first")
    sets = option_sets()
    names = args.only.split(",") if args.only else list(sets)
    unknown = [name for name in names if name not in sets]
    if unknown:
        parser.error(f"--only: unknown option sets {unknown}; choose from {list(sets)}")
    args.out.mkdir(parents=True, exist_ok=True)

    exports = export_all(args.run_path / "merged", args.out, names, reuse=args.reuse)
    reference = score_all(args.run_path, exports, args.rows)
    timings = time_all(args.run_path, exports, args.rounds)
    print(table(exports, timings, reference))
    (args.out / "int4_options.json").write_text(json.dumps(
        {"reference_accuracy": reference, "timings": timings,
         "exports": {n: {k: str(v) if isinstance(v, Path) else v for k, v in r.items()}
                     for n, r in exports.items()}}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
