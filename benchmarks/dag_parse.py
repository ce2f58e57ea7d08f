"""DAG parsing and serialization of dags/, the work the dag-processor repeats on every
parse and ``airflow dags test`` does twice before the first task, with the trigger forms'
Params as they are and as they were before, side by side in one run.

Airflow resolves (validates) every Param of every task whenever it serializes a DAG, and
jsonschema checks a schema against its meta-schema before each validation. Before, the
Params named no "$schema", so the check used the 2020-12 meta-schema; now they name
draft-07 (``slmops_airflow.form.SCHEMA_DIALECT``).

    python benchmarks/dag_parse.py [--rounds 5]

Each measurement runs in a fresh process (imports warm, then timed): fill a DagBag from
dags/, then serialize every DAG as the dag-processor does. Rounds alternate the two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WAYS = {"now (draft-07)": "draft-07", "before (no $schema)": "none"}


def child(way: str) -> dict:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    import slmops_airflow.form as form

    if way == "none":
        form.SCHEMA_DIALECT = None
    started = time.perf_counter()
    bag = DagBag(str(REPO / "dags"))
    parsed = time.perf_counter()
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    done = time.perf_counter()
    tasks = sum(len(dag.tasks) for dag in bag.dags.values())
    params = sum(len(task.params) for dag in bag.dags.values() for task in dag.tasks)
    return {
        "parse": parsed - started,
        "serialize": done - parsed,
        "dags": len(bag.dags),
        "tasks": tasks,
        "task_params": params,
    }


def measure(way: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "include")]),
    )
    done = subprocess.run(
        [sys.executable, __file__, "--child", way],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    if done.returncode:
        sys.exit(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in WAYS}
    with tempfile.TemporaryDirectory(prefix="slmops-dag-parse-") as home:
        for _ in range(args.rounds):
            for name, way in WAYS.items():
                results[name].append(measure(way, Path(home)))
    first = next(iter(results.values()))[0]
    print(
        f"\n{first['dags']} DAGs, {first['tasks']} tasks, {first['task_params']} task Params; "
        f"median of {args.rounds} fresh processes each, alternating\n"
    )
    print("| Params | parse s | serialize s | total s |")
    print("|---|---:|---:|---:|")
    totals = {}
    for name, rows in results.items():
        parse = statistics.median(row["parse"] for row in rows)
        serialize = statistics.median(row["serialize"] for row in rows)
        totals[name] = statistics.median(row["parse"] + row["serialize"] for row in rows)
        print(f"| {name} | {parse:.2f} | {serialize:.2f} | {totals[name]:.2f} |")
    now, before = totals.values()
    print(f"\nnow / before = {now / before:.2f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
    else:
        sys.exit(main())
