"""A pipeline config that does not load, shown as a paused DAG of its own.

One DAG file builds every config-driven DAG, so an exception there would remove all of
them from Airflow. Instead each broken file gets a DAG under the id it would have had:
its page shows the error (file and field), it is paused at creation, and its one task
fails with the same error if someone triggers it. The other configs are untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)


def broken_config_dag(dag_id: str, path: Path, error: str) -> DAG:
    log.error("pipeline config %s does not load: %s", path, error)
    with DAG(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        is_paused_upon_creation=True,
        description=f"broken pipeline config {Path(path).name}",
        doc_md=(
            f"### {dag_id}: the pipeline config does not load\n\n"
            f"`{path}`:\n\n```\n{error}\n```\n\nFix the file; the DAG comes back with its "
            "stages at the next parse. Check it without Airflow: "
            f"`slmops run --config {Path(path).name}`."
        ),
        tags=["slmops", "config", "broken-config"],
    ) as dag:

        @task(task_id="config_error", retries=0)
        def config_error() -> None:
            raise AirflowFailException(error)

        config_error()
    return dag
