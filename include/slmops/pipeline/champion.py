"""Champion / challenger: does a retrained model replace the published one?

The challenger (this run's ONNX export) and the champion (the model's latest published
version) answer the same eval rows, this run's held-out split of the new data, with
the same target and the same greedy decoding. The challenger is promoted only when its
primary metric is better by at least ``promotion_margin``; otherwise the champion stays
published, and so it does whenever the two cannot be compared (fail closed). The decision,
its reason and both scores go to RUN_DIR/champion/decision.json, which the run report
shows and publishing obeys; publishing challenges again, under the model's lock, when the
latest version is no longer the champion this decision was made against.
"""

from __future__ import annotations

import gc
from pathlib import Path

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.evaluation.config import LOWER_IS_BETTER
from slmops.gc_scope import collect_only_new
from slmops.layout import EXPORT_RECORD, ONNX_FOLDER, ModelStore, RunLayout
from slmops.pipeline import model_versions
from slmops.pipeline.plan import read_plan
from slmops.progress import Log, no_log
from slmops.report import cell

PROMOTE = "promote"
KEEP = "keep"


def read_decision(run_dir: Path) -> dict | None:
    return read_json_if_any(RunLayout(run_dir).decision)


# No preloading: it scores ONNX exports, so torch and transformers' models need not load.
@collect_only_new()
def challenge(run_dir: Path, *, log: Log = no_log) -> dict:
    """Score challenger and champion on the same rows; write and return the decision.

    It fails closed: when the two cannot be compared (the latest version's folder is
    gone, this run has no CPU target that passed, none in common with the champion) the
    champion stays, and the reason says why and what to do.
    """
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    margin = plan["params"]["promotion_margin"]
    store = ModelStore(Path(plan["models_root"]))
    name = plan["model_name"]
    named = store.latest_named(name)
    layout = RunLayout(run_dir)
    exported = _passed_targets(layout, plan["cpu_targets"])
    decision = {"margin": margin, "model_name": name, "run_id": plan["run_id"]}
    if named is None:
        decision.update(decision=PROMOTE, reason=f"no champion: nothing is published as {name} yet")
        return _write(run_dir, decision, log)
    decision["champion"] = {"version": named.name, "path": store.relative(named)}
    manifest = model_versions.read_manifest(named)
    if manifest is None:
        decision.update(
            decision=KEEP,
            reason=f"{store.latest(name)} names version {named.name}, but {named} is gone "
            "or incomplete, so nothing can be compared and the champion stays; restore the "
            "folder, or point latest.json at a whole version, then run again",
        )
        return _write(run_dir, decision, log)
    if named.name == model_versions.version_name(plan.get("dag_id", ""), plan["run_id"]):
        decision.update(decision=PROMOTE, reason="this run is already the published champion")
        return _write(run_dir, decision, log)
    if not exported:
        targets = ", ".join(plan["cpu_targets"] + plan.get("gpu_targets", [])) or "none"
        decision.update(
            decision=KEEP,
            reason=f"this run has no CPU target that passed (targets: {targets}); the "
            "challenger is scored on CPU, so it cannot be compared and the champion "
            f"{named.name} stays; add a CPU target to the run to challenge it",
        )
        return _write(run_dir, decision, log)
    common = [target for target in exported if ModelStore.onnx(named, target).is_dir()]
    if not common:
        decision.update(
            decision=KEEP,
            reason=f"the champion ({named.name}) has no CPU target in common with this run "
            f"({', '.join(exported)}), so they cannot answer the same way and the champion "
            "stays; add one of the champion's targets "
            f"({', '.join(_published_targets(named)) or 'none'}) to the run",
        )
        return _write(run_dir, decision, log)

    target = common[0]
    from slmops.evaluation import eval_set

    eval_plan = eval_set.for_run(plan["evaluate"]["run_path"], log=log)
    primary = eval_plan.primary
    challenger_score = _score(layout.onnx(target), eval_plan)
    champion_score = _score(ModelStore.onnx(named, target), eval_plan)
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
        metric_when_published=(manifest.get("metrics") or {}).get("fine_tuned"),
        dataset_fingerprint=manifest.get("dataset_fingerprint"),
    )
    better = "lower" if lower_is_better else "higher"
    scores = (
        f"on the same {decision['eval_rows']} eval rows ({target}): challenger {primary} "
        f"{cell(challenger_score)}, champion {named.name} {cell(champion_score)}"
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


def _published_targets(version_dir: Path) -> list[str]:
    folder = Path(version_dir) / ONNX_FOLDER
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


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
