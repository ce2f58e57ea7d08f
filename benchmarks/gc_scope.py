"""Garbage collection during the stages: with ``slmops.gc_scope.collect_only_new`` (the
objects a process held when a stage began are frozen, so the collections after each
dropped model walk only the stage's own) against the same code with the freeze turned off
(``gc.freeze``/``gc.unfreeze`` made no-ops in that process: every collection walks
everything), each round in its own process, alternating. For a fresh process per stage,
also as the ``slmops`` command runs it: the freeze and ``collect_less_often`` (the young
generation's threshold raised for a one-job process).

    python benchmarks/gc_scope.py [--rounds 3] [--steps 20]

Two kinds of process, as Airflow runs them:
- one process for every stage (``airflow dags test``, ``slmops run``, a pytest worker):
  Airflow imported, then finetune, evaluate and auto-opt cpu-fp32 of the tests' tiny model
  (LoRA) one after the other;
- a fresh process per stage (a LocalExecutor or Celery task): each command on its own.
Prints wall and garbage-collection seconds (``gc.callbacks``) of each, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, sys, time
if sys.argv[1] == "off":
    gc.freeze = gc.unfreeze = lambda: None
if sys.argv[1] == "command":
    from slmops.gc_scope import collect_less_often
    collect_less_often()
spent, began = [0.0], [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - began[0]
gc.callbacks.append(timed)
started = time.perf_counter()
if sys.argv[2] == "one":
    import airflow.sdk  # noqa: F401  (a task process holds Airflow too)
from slmops.cli import main
for argv in json.loads(sys.argv[3]):
    if main(argv) != 0:
        sys.exit(f"slmops {argv[0]} failed")
print(json.dumps({"wall": time.perf_counter() - started, "gc": spent[0]}))
"""


def commands(root: Path, steps: int, tag: str) -> list[list[str]]:
    run = str(root / f"run-{tag}")
    return [
        ["finetune", "--model_name_or_path", str(root / "tiny"), "--data_files",
         str(root / "tones.jsonl"), "--text_template", "{phrase} -> {tone}", "--label_field",
         "tone", "--max_steps", str(steps), "--eval_fraction", "0.25", "-o", run],
        ["evaluate", "--run_path", run, "-o", str(root / f"eval-{tag}"), "--fail_on_gates",
         "false"],
        ["auto-opt", "--run_path", run, "--target", "cpu-fp32", "-o", str(root / f"onnx-{tag}"),
         "--benchmark", "false"],
    ]  # fmt: skip


def measure(freeze: str, kind: str, argvs: list[list[str]]) -> dict:
    totals = {"wall": 0.0, "gc": 0.0}
    for batch in [argvs] if kind == "one" else [[argv] for argv in argvs]:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, freeze, kind, json.dumps(batch)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            sys.exit(f"the {freeze}/{kind} child failed:\n{done.stderr[-3000:]}")
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        totals = {key: totals[key] + seconds[key] for key in totals}
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    from slmops.testing import tiny_pipeline_data

    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="gc-scope-") as scratch:
        root = tiny_pipeline_data(Path(scratch))
        for round_ in range(args.rounds):
            for kind in ("one", "fresh"):
                for freeze in ("on", "off", "command") if kind == "fresh" else ("on", "off"):
                    tag = f"{kind}-{freeze}-{round_}"
                    row = measure(freeze, kind, commands(root, args.steps, tag))
                    results.setdefault((kind, freeze), []).append(row)
                    print(f"round {round_ + 1}: {kind}/{freeze}: {row}", file=sys.stderr)
    labels = {"one": "one process for every stage", "fresh": "a fresh process per stage"}
    ways = {
        "on": "freeze",
        "off": "no freeze (before)",
        "command": "freeze + collect_less_often (the slmops command)",
    }
    print("| process | collections | wall s (median) | GC s (median) |")
    print("|---|---|---:|---:|")
    medians = {
        key: {m: statistics.median(row[m] for row in rows) for m in ("wall", "gc")}
        for key, rows in results.items()
    }
    for (kind, freeze), value in medians.items():
        print(f"| {labels[kind]} | {ways[freeze]} | {value['wall']:.1f} | {value['gc']:.2f} |")
    print()
    for kind, freeze in (("one", "on"), ("fresh", "on"), ("fresh", "command")):
        new, off = medians[(kind, freeze)], medians[(kind, "off")]
        print(
            f"{labels[kind]}, {ways[freeze]}: wall {new['wall'] / off['wall']:.2f}x, "
            f"GC {new['gc'] / off['gc']:.2f}x of no freeze"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
