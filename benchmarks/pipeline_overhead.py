"""The pipeline as a DAG and in one process, stage by stage, and the waste removed between
stages, all measured in one run, one thing after the other.

1. ``slmops run --config`` (one process) and ``airflow dags test slm_finetune`` (SQLite,
   every task in the one process) on the same small settings
   (``slmops.testing.tiny_pipeline_params``: the tiny model, 96 tone rows, 60 steps of full
   fine-tuning, a cpu-fp32 export with parity, no benchmark; the environment and
   AIRFLOW_HOME of ``orchestration_overhead.py``), alternating, ``--pipeline_rounds``
   times each. Printed (medians): wall times, their ratio (goal: the DAG within 1.15x) and
   each stage's time in both: the ``== STAGE done in S s`` lines of ``slmops run``, the
   task instances' durations in Airflow's database.
2. On the run folder ``slmops run`` left, each waste removed, before and after, in fresh
   processes (as an Airflow task starts), rounds interleaved:
   - the eval set of an optimize target or the champion: read from evaluate's
     eval_set.json vs built from the data (the file hidden);
   - parity: evaluate's answers reused vs generated again (fine_tuned_answers.json
     hidden): parity's own seconds and the optimize task's;
   - load once (a tiny LoRA run, its adapter merged in the task as `slmops auto-opt
     --adapter_path` does): the merge kept for parity vs merged, saved and loaded again.
3. With ``--run_path DIR`` (an evaluated training folder, e.g. the demo's finetune/):
   parity before and after on it, as in 2 (the ONNX target of ``--target``).

    python benchmarks/pipeline_overhead.py [--rounds 3] [--pipeline_rounds 2]
        [--run_path RUN/finetune --target cpu-int4] [--pipeline smollm2 --rounds 0]

``--before DIR`` (a checkout of an earlier commit: ``git worktree add DIR REF``) also runs
``airflow dags test`` on that checkout's dags/, plugins/ and include/ in each round, and
prints the change's ratio: after / before.

``--pipeline smollm2`` times the smallest real pipeline instead of the tiny one: the
bundled SmolLM2-135M, LoRA, 30 steps on the same 96 tone rows, the default cpu-int4 target
with parity (``SMOLLM2``); the tiny pipeline is mostly fixed costs (Airflow's start, the
DAG parse), this one is what a user's smallest run looks like. ``--rounds 0`` skips 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestration_overhead import PYTHON, REPO, _env, dags_test, local_run

from slmops.testing import tiny_pipeline_data, tiny_pipeline_params

# The smallest real pipeline (--pipeline smollm2): tiny_pipeline_params with these.
SMOLLM2 = {
    "model_name_or_path": "smollm2-135m-instruct",
    "method": "lora",
    "max_steps": 30,
    "eval_steps": 15,
    "learning_rate": 3e-4,
    "per_device_train_batch_size": 8,
    "min_primary_metric": 0.3,
    "targets": ["cpu-int4"],
    # A timing run: after 30 steps the answers' margins are thin and int4 flips some (0.42
    # of 24 rows in a trial); the parity gate is not what this measures.
    "max_export_degradation": 1.0,
}
STAGE_LINE = re.compile(r"^== (\S+) done in ([\d.]+) s$", re.MULTILINE)


def local_stages(log: Path) -> dict[str, float]:
    """Each stage's own seconds, from ``slmops run``'s log."""
    return {name: float(seconds) for name, seconds in STAGE_LINE.findall(log.read_text())}


def dag_stages(root: Path, targets: list[str]) -> tuple[dict[str, float], float]:
    """({task: seconds}, the DAG run's own start -> end) from Airflow's database."""
    with sqlite3.connect(root / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, map_index, duration FROM task_instance "
            "WHERE dag_id = 'slm_finetune' AND state IN ('success', 'skipped') "
            "ORDER BY start_date"
        ).fetchall()
        start, end = db.execute(
            "SELECT julianday(start_date), julianday(end_date) FROM dag_run "
            "WHERE dag_id = 'slm_finetune'"
        ).fetchone()
    stages = {}
    for task_id, map_index, duration in rows:
        name = f"{task_id}[{targets[map_index]}]" if map_index >= 0 else task_id
        stages[name] = float(duration or 0.0)
    return stages, (end - start) * 86400


def _child(root: Path, kind: str, *args: str) -> dict:
    """One measurement in a fresh process (this file's ``--child``), as a task would run."""
    done = subprocess.run(
        [PYTHON, __file__, "--child", kind, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(root),
        check=False,
    )
    if done.returncode:
        sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _hidden(path: Path):
    """``path`` moved away for the block: the stages then run as they did before it."""
    away = path.with_name(path.name + ".hidden")
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)


def before_after(rounds: int, measure, hide: Path) -> tuple[list[dict], list[dict]]:
    """(before: ``hide`` hidden, after: as it is), ``rounds`` of each, interleaved."""
    before, after = [], []
    for _ in range(rounds):
        with _hidden(hide):
            before.append(measure())
        after.append(measure())
    return before, after


# -- the children


def child_eval_set(run_path: str) -> dict:
    started = time.perf_counter()
    from slmops.evaluation import eval_set

    eval_set.for_run(run_path)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    eval_set.for_run(run_path)
    return {"cold": cold, "warm": time.perf_counter() - started}


def child_optimize(run_path: str, out: str, target: str = "cpu-fp32") -> dict:
    started = time.perf_counter()
    from slmops.export.optimize import optimize

    result = optimize(
        None, target, Path(out), run_path=run_path, benchmark=False, fail_on_gates=False
    )
    return {
        "task": time.perf_counter() - started,
        "parity": result.parity["seconds"],
        "reused": result.parity["reference_answers"]["reused"],
    }


def child_merge(run_path: str, out: str, way: str) -> dict:
    """The merge as optimize made it before (merged, saved, loaded again for parity) or
    as it makes it now (kept in memory)."""
    from slmops.export import optimize as optimize_module
    from slmops.export.config import AutoOptConfig
    from slmops.models import load_causal_lm, load_padding_tokenizer, quiet_libraries
    from slmops.training.adapters import merge_into_base

    quiet_libraries()
    config = AutoOptConfig(run_path=run_path, adapter_path=Path(run_path) / "adapter",
                           output_path=Path(out), parity=False)  # fmt: skip
    source = optimize_module._source(config, lambda _: None)
    tokenizer = load_padding_tokenizer(source.base)
    load_causal_lm(source.base)  # warm: both ways start with the libraries imported
    started = time.perf_counter()
    if way == "before":
        merge_into_base(source.base, source.adapter, Path(out) / "merged", tokenizer)
        load_causal_lm(str(Path(out) / "merged"))
    else:
        optimize_module._merged(source, Path(out), tokenizer, config, lambda _: None)
    return {"seconds": time.perf_counter() - started}


CHILDREN = {"eval_set": child_eval_set, "optimize": child_optimize, "merge": child_merge}


# -- the run


def lora_run(root: Path, params: dict) -> Path:
    """A tiny LoRA training folder (6 steps) on the same data."""
    out = root / "lora"
    argv = [PYTHON, "-m", "slmops", "finetune", "--model_name_or_path", str(root / "data/tiny"),
            "--data_files", str(root / "data/tones.jsonl"), "--text_template",
            params["text_template"], "--label_field", "tone", "--max_steps", "6",
            "--eval_fraction", "0.25", "-o", str(out)]  # fmt: skip
    done = subprocess.run(argv, env=_env(root), cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"LoRA training failed:\n{done.stderr[-3000:]}")
    return out


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def _stage_medians(ways: list[dict], key: str) -> dict[str, float]:
    names = dict.fromkeys(name for way in ways for name in way[key])
    return {
        name: statistics.median(way[key][name] for way in ways if name in way[key])
        for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="before/after rounds each")
    parser.add_argument("--pipeline_rounds", type=int, default=2, help="runs of each way")
    parser.add_argument("--run_path", type=Path, help="also: parity on this training folder")
    parser.add_argument("--target", default="cpu-int4", help="--run_path's ONNX target")
    parser.add_argument("--pipeline", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--before", type=Path, help="an earlier checkout: its dags test too")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="slmops-pipeline-", dir="/tmp"))
    try:
        params = tiny_pipeline_params("overhead", **(SMOLLM2 if args.pipeline == "smollm2" else {}))
        ways = [
            _both_ways(root / f"round-{index}", params, args.before, before_first=index % 2 == 1)
            for index in range(args.pipeline_rounds)
        ]
        [run_path] = (root / "round-0" / "local" / "runs").glob("*/*/finetune")
        rows = _waste(root, run_path, params, args.rounds) if args.rounds else []
        if args.run_path:
            rows += _given_run(root, args.run_path.resolve(), args.target, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _print(ways, rows, args.rounds)


def _both_ways(
    root: Path, params: dict, before: Path | None = None, before_first: bool = False
) -> dict:
    """One ``slmops run`` and one ``airflow dags test``, each in a folder of its own (and
    one ``airflow dags test`` of ``before``)."""
    tiny_pipeline_data(root / "data")
    if before:
        shutil.copytree(root / "data", root / "before" / "data")
    earlier = _before(root, params, before) if before and before_first else {}
    local = local_run(root, params)
    test = dags_test(root, params)
    theirs, dag_run = dag_stages(root, params["targets"])
    ways = {
        "local": local,
        "test": test,
        "dag_run": dag_run,
        "ours": local_stages(root / "local.log"),
        "theirs": theirs,
    }
    if before:  # alternating rounds: before first in odd rounds, after first in even ones
        ways.update(earlier or _before(root, params, before))
    return ways


def _before(root: Path, params: dict, before: Path) -> dict:
    seconds = dags_test(root / "before", params, tree=before.resolve())
    stages, dag_run = dag_stages(root / "before", params["targets"])
    return {"before": seconds, "before_stages": stages, "before_dag_run": dag_run}


def _given_run(root: Path, run_path: Path, target: str, rounds: int) -> list[tuple]:
    outs = iter(range(1000))
    parities = before_after(
        rounds,
        lambda: _child(root, "optimize", str(run_path), str(root / f"given-{next(outs)}"), target),
        run_path / "evaluation" / "fine_tuned_answers.json",
    )
    assert all(row["reused"] for row in parities[1]), "the given run's answers were not reused"
    return [
        (f"parity {target} on {run_path.parent.name}/{run_path.name}", *parities, "parity"),
        (f"optimize[{target}] task on it, fresh process", *parities, "task"),
    ]


def _waste(root: Path, run_path: Path, params: dict, rounds: int) -> list[tuple]:
    evaluation = run_path / "evaluation"
    sets = before_after(
        rounds, lambda: _child(root, "eval_set", str(run_path)), evaluation / "eval_set.json"
    )
    outs = iter(range(1000))
    parities = before_after(
        rounds,
        lambda: _child(root, "optimize", str(run_path), str(root / f"onnx-{next(outs)}")),
        evaluation / "fine_tuned_answers.json",
    )
    assert not any(row["reused"] for row in parities[0]) and all(r["reused"] for r in parities[1])
    lora = lora_run(root / "round-0", params)
    merges: tuple[list, list] = ([], [])
    for index in range(rounds):
        for way, into in zip(("before", "after"), merges, strict=True):
            out = root / f"merge-{way}-{index}"
            out.mkdir()
            into.append(_child(root, "merge", str(lora), str(out), way))
    return [
        ("eval set, fresh process (imports included)", *sets, "cold"),
        ("eval set, warm process", *sets, "warm"),
        ("parity cpu-fp32, its own seconds", *parities, "parity"),
        ("optimize[cpu-fp32] task, fresh process", *parities, "task"),
        ("LoRA merge for export + parity's model", *merges, "seconds"),
    ]


def _print(ways: list[dict], rows: list[tuple], rounds: int) -> None:
    local = _median(ways, "local")
    print(f"median of {len(ways)} runs each, alternating")
    print(f"{'way':<44} {'wall s':>8} {'x slmops run':>13}")
    for name, seconds in (
        ("slmops run --config (one process)", local),
        ("airflow dags test slm_finetune", _median(ways, "test")),
        ("  its DAG run, start -> end", _median(ways, "dag_run")),
    ):
        print(f"{name:<44} {seconds:8.1f} {seconds / local:13.2f}")
    if "before" in ways[0]:
        _print_change(ways)
    ours, theirs = _stage_medians(ways, "ours"), _stage_medians(ways, "theirs")
    print(f"\n{'stage':<24} {'slmops run s':>13} {'dags test s':>12} {'ratio':>7}")
    for name in dict.fromkeys([*ours, *theirs]):
        mine, dag = ours.get(name), theirs.get(name)
        cells = [f"{v:13.1f}" if v is not None else f"{'-':>13}" for v in (mine,)]
        cells.append(f"{dag:12.1f}" if dag is not None else f"{'-':>12}")
        cells.append(f"{dag / mine:7.2f}" if mine and dag is not None else f"{'-':>7}")
        print(f"{name:<24} {' '.join(cells)}")
    if not rows:
        return
    print(f"\nwaste removed (median of {rounds} rounds, interleaved)")
    print(f"{'what':<44} {'before s':>9} {'after s':>8} {'after/before':>13}")
    for name, before, after, key in rows:
        old, new = _median(before, key), _median(after, key)
        print(f"{name:<44} {old:9.2f} {new:8.2f} {new / old:13.2f}")


def _print_change(ways: list[dict]) -> None:
    """``airflow dags test`` of the earlier checkout against this one, stage by stage."""
    print(f"\n{'dags test, this change':<44} {'before s':>9} {'after s':>8} {'after/before':>13}")
    for name, old, new in (
        ("wall", _median(ways, "before"), _median(ways, "test")),
        ("its DAG run, start -> end", _median(ways, "before_dag_run"), _median(ways, "dag_run")),
    ):
        print(f"{name:<44} {old:9.1f} {new:8.1f} {new / old:13.2f}")
    old_stages, new_stages = _stage_medians(ways, "before_stages"), _stage_medians(ways, "theirs")
    for name, old in old_stages.items():
        new = new_stages.get(name)
        if new is not None and old >= 0.5:
            print(f"  {name:<42} {old:9.1f} {new:8.1f} {new / old:13.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
    else:
        main()
