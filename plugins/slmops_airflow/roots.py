"""Where a DAG run reads and writes, from what the deployment sets, never from a run's input.

The deployment sets the roots in the environment ($SLMOPS_ARTIFACTS_ROOT,
$SLMOPS_DATA_ROOTS). The Airflow Variables ``slmops_artifacts_root`` and
``slmops_data_roots`` may narrow them (a folder inside one), never widen them: anyone who
may edit Variables is not thereby allowed to read ``/``. A run's own folder follows from
the artifacts root, the DAG id and the run id (``slmops.pipeline.locations.run_dir``):
nothing an XCom or a trigger says can move it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARTIFACTS_VARIABLE = "slmops_artifacts_root"
DATA_ROOTS_VARIABLE = "slmops_data_roots"


def configured_roots() -> tuple[Path, list[Path]]:
    """(artifacts root, data roots): the deployment's, narrowed by the Airflow Variables
    when set. A Variable outside the deployment's roots is a ConfigError naming it."""
    from airflow.sdk import Variable

    from slmops.pipeline import locations

    return (
        locations.narrowed_artifacts_root(
            Variable.get(ARTIFACTS_VARIABLE, default=None), f"Airflow Variable {ARTIFACTS_VARIABLE}"
        ),
        locations.narrowed_data_roots(
            Variable.get(DATA_ROOTS_VARIABLE, default=None),
            f"Airflow Variable {DATA_ROOTS_VARIABLE}",
        ),
    )


def this_run_dir(context: Any) -> Path:
    """The folder of the DAG run in ``context``, from the configured artifacts root."""
    from slmops.pipeline import locations

    artifacts, _ = configured_roots()
    return locations.run_dir(artifacts, context["dag"].dag_id, context["run_id"])


def checked_run_dir(value: Any, context: Any, param: str) -> Path:
    """``value`` (a run_dir XCom or template) as a path, which must be this run's folder
    or lie inside it; anything else is a ConfigError naming ``param`` and both folders."""
    from slmops.pipeline.planned import inside_run

    return inside_run(value, this_run_dir(context), param)
