"""Run one DAG with ``dag.test()`` in this process; print its outcome as a JSON line.

    python dag_runner.py DAG_ID CONF_JSON [LOGICAL_DATE]

Tests start it as a child process with their own AIRFLOW_HOME and slmops roots in the
environment, so Airflow's settings (read once, at import) are the test's.
"""

from __future__ import annotations

import json
import sys

import pendulum
from airflow.dag_processing.dagbag import DagBag

from slmops.gc_scope import collect_less_often


def main(dag_id: str, conf: str, logical_date: str | None = None) -> None:
    collect_less_often()  # one job, as `airflow dags test` or the slmops command
    dag = _dag(dag_id)
    # One date for both: the run id derives from them, so a second call clears and reruns
    # the same run, as "Clear" in the UI does.
    when = pendulum.parse(logical_date) if logical_date else None
    kwargs = {"logical_date": when, "run_after": when} if when else {}
    run = dag.test(run_conf=json.loads(conf), **kwargs)
    tasks = {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
        for ti in run.get_task_instances()
    }
    result = {"state": str(run.state), "run_id": run.run_id, "tasks": tasks}
    print("DAG-RESULT " + json.dumps({**result, "asset_events": _asset_events(dag_id, run.run_id)}))


def _asset_events(dag_id: str, run_id: str) -> list[dict]:
    """The asset events this run emitted: ``[{"uri", "extra"}]``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
        ).all()
    return [{"uri": uri, "extra": extra} for uri, extra in rows]


def _dag(dag_id: str):
    bag = DagBag()
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.dags[dag_id]


if __name__ == "__main__":
    main(*sys.argv[1:])
