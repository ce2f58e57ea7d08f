"""Export the shared base with every adapter (``slmops generate-adapter``'s format) into
RUN_DIR/multi_adapter/TARGET/ and score each adapter through it on its own eval rows."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from slmops.artifacts import atomic_write_json
from slmops.gc_scope import collect_only_new
from slmops.layout import RunLayout
from slmops.models import MODEL_LIBRARIES
from slmops.pipeline.multi_adapter.plan import read_multi_plan
from slmops.progress import Log, no_log
from slmops.report import cell


@collect_only_new(*MODEL_LIBRARIES)
def build(run_dir: Path, *, log: Log = no_log) -> dict:
    """Export the shared base with every adapter, then score each adapter through it."""
    from slmops.evaluation import eval_set
    from slmops.export.multi_adapter import generate_adapters, open_multi_adapter
    from slmops.export.parity import score_exported

    run_dir = Path(run_dir)
    multi = read_multi_plan(run_dir)
    layout = RunLayout(run_dir)
    folder = layout.multi / multi["target"]
    names = [adapter["name"] for adapter in multi["adapters"]]
    started = time.monotonic()
    generate_adapters(
        multi["base_model"],
        [RunLayout(adapter["run_dir"]).finetune.adapter for adapter in multi["adapters"]],
        folder,
        target=multi["target"],
        adapter_names=names,
        log=log,
    )
    runner = open_multi_adapter(folder)
    scores: dict[str, Any] = {}
    try:
        for adapter in multi["adapters"]:
            eval_plan = eval_set.for_run(adapter["evaluate"]["run_path"], log=log)
            own = score_exported(runner, eval_plan, adapter=adapter["name"])
            # The other adapters answer the same prompts: they must not answer alike.
            others = {
                other: score_exported(runner, eval_plan, adapter=other)["answers"]
                for other in names
                if other != adapter["name"]
            }
            scores[adapter["name"]] = {
                "primary_metric": eval_plan.primary,
                "metric": own["metrics"].get(eval_plan.primary),
                "metrics": own["metrics"],
                "eval_rows": len(eval_plan.data.eval),
                "samples": [
                    {
                        "prompt": example.prompt,
                        adapter["name"]: own["answers"][i],
                        **{other: answers[i] for other, answers in others.items()},
                    }
                    for i, example in enumerate(eval_plan.data.eval[:4])
                ],
                "same_answer_as": {
                    other: round(
                        sum(a == b for a, b in zip(own["answers"], answers, strict=True))
                        / max(len(answers), 1),
                        4,
                    )
                    for other, answers in others.items()
                },
            }
            log(
                f"adapter {adapter['name']} through the shared {multi['target']} base: "
                f"{eval_plan.primary} {cell(scores[adapter['name']]['metric'])}"
            )
    finally:
        del runner
        gc.collect()
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    record = {
        "target": multi["target"],
        "path": str(folder),
        "size_mb": round(size, 1),
        "adapters": scores,
        "seconds": round(time.monotonic() - started, 1),
    }
    atomic_write_json(layout.multi_scores, record)
    return record
