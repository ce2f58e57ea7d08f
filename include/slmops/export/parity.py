"""Does the exported model still answer like the PyTorch model it came from?

Two checks, both greedy and on the same token ids:

- the eval set of the fine-tuning run, scored with the evaluation stage's metrics for the
  PyTorch model and for the exported one; the ``max_export_degradation`` gate compares
  their primary metric;
- greedy-token agreement on a fixed set of prompts (eval prompts plus a few general ones):
  how much of each answer matches token for token before the first difference.

The PyTorch side (``reference``) runs on a model the caller has loaded (optimize passes
the merge it has just made). Its answers to the eval rows are the ones the evaluate stage
stored when they are answers of the same eval set, weights and generation settings
(``slmops.evaluation.answers``); the agreement prompts are always answered here. The
summary says which (``reference_answers``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slmops.evaluation import answers, gates
from slmops.evaluation.config import LOWER_IS_BETTER
from slmops.evaluation.eval_set import EvalPlan
from slmops.evaluation.gates import GateRecord
from slmops.evaluation.run import score_answers
from slmops.export.runners import encode_prompts, greedy_answers, open_exported
from slmops.export.runners.pytorch import TorchRunner
from slmops.export.targets import Target
from slmops.inference import decode_answers, greedy_token_ids
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
BATCH_SIZE = 16  # the eval rows are answered in batches, as the evaluate stage does


@dataclass(frozen=True)
class StoredAnswers:
    """Where the evaluate stage's answers may be, and the weights parity's model has: the
    folder it was loaded from (the base, when an adapter is merged in) and the adapter."""

    path: Path
    model_dir: Path
    adapter: Path | None


@dataclass
class Reference:
    """The PyTorch model's greedy answers (token ids) to the eval rows and to the
    agreement prompts, what the export must match."""

    scored_prompts: list[str]
    scored: list[list[int]]
    new_tokens: int
    fixed_ids: list[list[int]]
    fixed: list[list[int]]
    reuse: dict  # {"reused": bool, "source" or "why"}
    seconds: float


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


def reference(
    model,
    tokenizer,
    eval_plan: EvalPlan | None,
    *,
    stored: StoredAnswers | None = None,
    agreement_count: int = 16,
    batch_size: int = BATCH_SIZE,
    log: Log = no_log,
) -> Reference:
    """The PyTorch side of parity, from ``model`` (loaded in float32 on CPU): the eval
    rows' answers (the ``stored`` ones when they fit, see ``answers.reusable``) batched as
    the evaluation stage makes them, so the PyTorch scores equal its report's; the
    agreement answers one by one, like the export's."""
    started = time.monotonic()
    eval_prompts = [example.prompt for example in eval_plan.data.eval] if eval_plan else []
    scored_prompts = eval_prompts if eval_plan and eval_plan.task != "language_modeling" else []
    fixed_ids = encode_prompts(
        tokenizer, agreement_prompts(tokenizer, eval_prompts, agreement_count)
    )
    new_tokens = eval_plan.max_new_tokens if eval_plan else AGREEMENT_NEW_TOKENS
    scored, reuse = _stored_answers(
        stored, eval_plan, tokenizer, scored_prompts, new_tokens, batch_size
    )
    if scored is None:
        scored = greedy_token_ids(
            model, tokenizer, scored_prompts, max_new_tokens=new_tokens, batch_size=batch_size
        )
    fixed = greedy_answers(TorchRunner(model, tokenizer), fixed_ids, AGREEMENT_NEW_TOKENS)
    answered = len(fixed_ids) + (0 if reuse["reused"] else len(scored_prompts))
    how = f"; the {len(scored_prompts)} eval answers are evaluate's" if reuse["reused"] else ""
    log(f"parity: PyTorch answered {answered} prompts{how}")
    return Reference(
        scored_prompts,
        scored,
        new_tokens,
        fixed_ids,
        fixed,
        reuse,
        round(time.monotonic() - started, 2),
    )


def _stored_answers(
    stored: StoredAnswers | None,
    eval_plan: EvalPlan | None,
    tokenizer,
    prompts: list[str],
    new_tokens: int,
    batch_size: int,
) -> tuple[list[list[int]] | None, dict]:
    """(evaluate's answers to ``prompts`` when they fit, else None; the reuse record)."""
    if not prompts:
        return None, {"reused": False, "why": "no eval rows to answer"}
    if stored is None or eval_plan is None:
        return None, {"reused": False, "why": "no stored answers to look at (no run_path)"}
    generation = answers.generation(
        tokenizer, prompts, max_new_tokens=new_tokens, batch_size=batch_size, device="cpu"
    )
    scored, why = answers.reusable(
        stored.path,
        eval_set=eval_plan.fingerprint,
        model_dir=stored.model_dir,
        adapter=stored.adapter,
        generation=generation,
    )
    if scored is None:
        return None, {"reused": False, "why": why}
    return scored, {"reused": True, "source": str(stored.path)}


def check(
    folder: Path,
    target: Target,
    reference: Reference,
    tokenizer,
    eval_plan: EvalPlan | None,
    *,
    max_degradation: float,
    log: Log = no_log,
) -> tuple[dict, GateRecord]:
    """Score the export in ``folder`` on the prompts ``reference`` answered; returns the
    parity summary and the degradation gate's record."""
    started = time.monotonic()
    runner = open_exported(folder, device=target.device)
    exported_answers = greedy_answers(
        runner, encode_prompts(tokenizer, reference.scored_prompts), reference.new_tokens
    )
    exported_fixed = greedy_answers(runner, reference.fixed_ids, AGREEMENT_NEW_TOKENS)
    del runner
    gc.collect()

    summary: dict = {
        "target": target.name,
        "agreement": token_agreement(reference.fixed, exported_fixed),
        "reference_answers": reference.reuse,
    }
    reference_text = decode_answers(tokenizer, reference.scored)
    exported_text = decode_answers(tokenizer, exported_answers)
    record = _degradation(
        summary, eval_plan, reference_text, exported_text, target, max_degradation
    )
    summary["samples"] = [
        {"prompt": prompt, "pytorch": ref, target.name: out}
        for prompt, ref, out in zip(
            reference.scored_prompts[:SAMPLE_ROWS], reference_text, exported_text, strict=False
        )
    ]
    summary["gate"] = record.as_dict()
    summary["seconds"] = round(reference.seconds + time.monotonic() - started, 2)
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
