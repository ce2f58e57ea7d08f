"""Does the exported model still answer like the PyTorch model it came from?

Two checks, both greedy and on the same token ids:

- the eval set of the fine-tuning run, scored with the evaluation stage's metrics for the
  PyTorch model and for the exported one; the ``max_export_degradation`` gate compares
  their primary metric;
- greedy-token agreement on a fixed set of prompts (eval prompts plus a few general ones):
  how much of each answer matches token for token before the first difference.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path

from slmops.evaluation import gates
from slmops.evaluation.config import LOWER_IS_BETTER
from slmops.evaluation.eval_set import EvalPlan
from slmops.evaluation.gates import GateRecord
from slmops.evaluation.run import score_answers
from slmops.export.runners import encode_prompts, greedy_answers, open_exported
from slmops.export.runners.pytorch import TorchRunner
from slmops.export.targets import Target
from slmops.inference import decode_answers, greedy_token_ids
from slmops.models import load_causal_lm
from slmops.progress import Log, no_log

# General prompts every parity check includes, whatever the task: they show whether the
# export kept the model's language, not just its task.
GENERAL_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Name three colours.",
    "Explain in one sentence what a neural network is.",
)
AGREEMENT_NEW_TOKENS = 32
SAMPLE_ROWS = 8


def agreement_prompts(tokenizer, eval_prompts: Sequence[str], count: int) -> list[str]:
    """The fixed agreement prompts: the first ``count`` eval prompts, then the general
    ones in the tokenizer's chat template (as written when there is none)."""
    general = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        if tokenizer.chat_template
        else text
        for text in GENERAL_PROMPTS
    ]
    return [*eval_prompts[:count], *general]


def token_agreement(reference: Sequence[Sequence[int]], exported: Sequence[Sequence[int]]) -> dict:
    """Mean share of each answer that matches before the first differing token (of the
    longer answer), and the share of answers identical token for token."""
    shares = []
    for ref, out in zip(reference, exported, strict=True):
        longest = max(len(ref), len(out))
        if longest == 0:
            shares.append(1.0)
            continue
        same = 0
        for left, right in zip(ref, out, strict=False):
            if left != right:
                break
            same += 1
        shares.append(same / longest)
    identical = sum(list(ref) == list(out) for ref, out in zip(reference, exported, strict=True))
    return {
        "prompts": len(shares),
        "mean_prefix_agreement": round(sum(shares) / len(shares), 4) if shares else None,
        "identical_answers": round(identical / len(shares), 4) if shares else None,
    }


def check(
    folder: Path,
    target: Target,
    source_dir: Path,
    tokenizer,
    eval_plan: EvalPlan | None,
    *,
    max_degradation: float,
    agreement_count: int = 16,
    batch_size: int = 16,
    log: Log = no_log,
) -> tuple[dict, GateRecord]:
    """Score the PyTorch model in ``source_dir`` and the export in ``folder`` on the same
    prompts; returns the parity summary and the degradation gate's record."""
    eval_prompts = [example.prompt for example in eval_plan.data.eval] if eval_plan else []
    scored_prompts = eval_prompts if eval_plan and eval_plan.task != "language_modeling" else []
    fixed = agreement_prompts(tokenizer, eval_prompts, agreement_count)
    fixed_ids = encode_prompts(tokenizer, fixed)
    new_tokens = eval_plan.max_new_tokens if eval_plan else AGREEMENT_NEW_TOKENS

    started = time.monotonic()
    reference_answers, reference_fixed = _pytorch_answers(
        source_dir, tokenizer, scored_prompts, fixed_ids, new_tokens, batch_size
    )
    log(f"parity: PyTorch answered {len(scored_prompts) + len(fixed)} prompts")
    runner = open_exported(folder, device=target.device)
    exported_answers = greedy_answers(runner, encode_prompts(tokenizer, scored_prompts), new_tokens)
    exported_fixed = greedy_answers(runner, fixed_ids, AGREEMENT_NEW_TOKENS)
    del runner
    gc.collect()

    summary: dict = {
        "target": target.name,
        "agreement": token_agreement(reference_fixed, exported_fixed),
    }
    reference_text = decode_answers(tokenizer, reference_answers)
    exported_text = decode_answers(tokenizer, exported_answers)
    record = _degradation(
        summary, eval_plan, reference_text, exported_text, target, max_degradation
    )
    summary["samples"] = [
        {"prompt": prompt, "pytorch": ref, target.name: out}
        for prompt, ref, out in zip(
            scored_prompts[:SAMPLE_ROWS], reference_text, exported_text, strict=False
        )
    ]
    summary["gate"] = record.as_dict()
    summary["seconds"] = round(time.monotonic() - started, 2)
    log(f"parity {target.name}: {record.explanation}; {_agreement_line(summary['agreement'])}")
    return summary, record


def score_exported(
    runner, eval_plan: EvalPlan, tokenizer=None, *, adapter: str | None = None
) -> dict:
    """An exported model's metrics on the plan's eval rows (greedy, as parity scores it);
    ``adapter`` picks one adapter of a multi-adapter model, ``tokenizer`` defaults to the
    plan's. Returns ``score_answers``' dict plus the answers' text under "answers"."""
    tokenizer = tokenizer or eval_plan.tokenizer
    prompts = [example.prompt for example in eval_plan.data.eval]
    answers = greedy_answers(
        runner, encode_prompts(tokenizer, prompts), eval_plan.max_new_tokens, adapter=adapter
    )
    text = decode_answers(tokenizer, answers)
    return {**score_answers(eval_plan, text), "answers": text}


def _pytorch_answers(
    source_dir: Path,
    tokenizer,
    scored_prompts: list[str],
    fixed_ids: list[list[int]],
    new_tokens: int,
    batch_size: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """The reference: eval answers batched as the evaluation stage makes them (so the
    PyTorch scores equal its report's), agreement answers one by one like the export's."""
    model = load_causal_lm(str(source_dir))
    scored = greedy_token_ids(
        model, tokenizer, scored_prompts, max_new_tokens=new_tokens, batch_size=batch_size
    )
    fixed = greedy_answers(TorchRunner(model, tokenizer), fixed_ids, AGREEMENT_NEW_TOKENS)
    del model
    gc.collect()
    return scored, fixed


def _degradation(
    summary: dict,
    eval_plan: EvalPlan | None,
    reference_text: list[str],
    exported_text: list[str],
    target: Target,
    max_degradation: float,
) -> GateRecord:
    """Fill the eval-set part of ``summary`` and judge it."""
    name = f"max_export_degradation[{target.name}]"
    if eval_plan is None:
        return GateRecord(
            name, None, max_degradation, None, "no eval set: pass --run_path to score the export"
        )
    if eval_plan.task == "language_modeling":
        return GateRecord(
            name,
            None,
            max_degradation,
            None,
            "a language-modelling run has no answers to score; see the token agreement",
        )
    reference = score_answers(eval_plan, reference_text)
    exported = score_answers(eval_plan, exported_text)
    primary = eval_plan.primary
    summary.update(
        task=eval_plan.task,
        primary_metric=primary,
        eval_rows=len(reference_text),
        pytorch={"metrics": reference["metrics"]},
        exported={"metrics": exported["metrics"]},
    )
    if primary not in reference["metrics"]:
        return GateRecord(
            name, None, max_degradation, None, f"{primary} is not computed from answers"
        )
    return gates.export_degradation(
        reference["metrics"][primary],
        exported["metrics"][primary],
        primary,
        max_degradation,
        target=target.name,
        lower_is_better=primary in LOWER_IS_BETTER,
    )


def _agreement_line(agreement: dict) -> str:
    return (
        f"token agreement {agreement['mean_prefix_agreement']} over {agreement['prompts']} "
        f"prompts, {agreement['identical_answers']} identical"
    )
