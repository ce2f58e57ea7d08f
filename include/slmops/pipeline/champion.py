"""Champion / challenger: does a retrained model replace the published one?

The challenger (this run's ONNX export) and the champion (the model's latest published
version) answer the same eval rows, this run's held-out split of the new data, with
the same target and the same greedy decoding. The challenger is promoted only when its
primary metric is better by at least ``promotion_margin``; otherwise the champion stays
published. The decision, its reason and both scores go to RUN_DIR/champion/decision.json,
which the run report shows and publishing obeys.
"""

from __future__ import annotations

import gc
from pathlib import Path

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.evaluation.config import LOWER_IS_BETTER
from slmops.layout import EXPORT_RECORD, ModelStore, RunLayout
from slmops.pipeline.plan import read_plan
from slmops.progress import Log, no_log
from slmops.report import cell

PROMOTE = "promote"
KEEP = "keep"


def read_decision(run_dir: Path) -> dict | None:
    return read_json_if_any(RunLayout(run_dir).decision)


def challenge(run_dir: Path, *, log: Log = no_log) -> dict:
    """Score challenger and champion on the same rows; write and return the decision."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    margin = plan["params"]["promotion_margin"]
    models_root = Path(plan["models_root"])
    champion = ModelStore(models_root).latest_version(plan["model_name"])
    layout = RunLayout(run_dir)
    exported = _passed_targets(layout, plan["cpu_targets"])
    decision = {"margin": margin, "model_name": plan["model_name"], "run_id": plan["run_id"]}
    if champion is None:
        decision.update(
            decision=PROMOTE,
            reason=f"no champion: nothing is published as {plan['model_name']} yet",
        )
        return _write(run_dir, decision, log)
    manifest = read_json_if_any(ModelStore.manifest(champion))
    decision["champion"] = {"version": manifest["version"], "path": str(champion)}
    common = [name for name in exported if ModelStore.onnx(champion, name).is_dir()]
    if not common:
        decision.update(
            decision=PROMOTE,
            reason=f"the champion ({manifest['version']}) has no CPU target in common with "
            f"this run ({', '.join(exported) or 'none'}), so they cannot answer the same way; "
            "the challenger's own gates passed",
        )
        return _write(run_dir, decision, log)

    target = common[0]
    from slmops.evaluation import eval_set

    eval_plan = eval_set.for_run(plan["evaluate"]["run_path"], log=log)
    primary = eval_plan.primary
    challenger_score = _score(layout.onnx(target), eval_plan)
    champion_score = _score(ModelStore.onnx(champion, target), eval_plan)
    lower_is_better = primary in LOWER_IS_BETTER
    gain = challenger_score - champion_score
    gain = -gain if lower_is_better else gain
    promoted = gain >= margin - 1e-12
    decision.update(
        decision=PROMOTE if promoted else KEEP,
        target=target,
        primary_metric=primary,
        eval_rows=len(eval_plan.data.eval),
        challenger={"metric": challenger_score},
        gain=round(gain, 6),
    )
    decision["champion"].update(
        metric=champion_score,
        metric_when_published=manifest["metrics"].get("fine_tuned"),
        dataset_fingerprint=manifest.get("dataset_fingerprint"),
    )
    better = "lower" if lower_is_better else "higher"
    scores = (
        f"on the same {decision['eval_rows']} eval rows ({target}): challenger {primary} "
        f"{cell(challenger_score)}, champion {manifest['version']} {cell(champion_score)}"
    )
    if promoted:
        decision["reason"] = f"{scores}; the challenger is {cell(gain)} {better}, margin {margin}"
    else:
        decision["reason"] = (
            f"{scores}; a gain of {cell(gain)} is below the promotion margin {margin}, "
            "so the champion stays published"
        )
    return _write(run_dir, decision, log)


def _passed_targets(layout: RunLayout, names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if (read_json_if_any(layout.onnx(name) / EXPORT_RECORD) or {}).get("passed")
    ]


def _score(folder: Path, eval_plan) -> float:
    from transformers import AutoTokenizer

    from slmops.export.parity import score_exported
    from slmops.export.runners import open_exported

    runner = open_exported(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # an export keeps its tokenizer
    try:
        scored = score_exported(runner, eval_plan, tokenizer)
    finally:
        del runner
        gc.collect()
    return scored["metrics"][eval_plan.primary]


def _write(run_dir: Path, decision: dict, log: Log) -> dict:
    atomic_write_json(RunLayout(run_dir).decision, decision)
    log(f"champion/challenger: {decision['decision']}: {decision['reason']}")
    return decision
