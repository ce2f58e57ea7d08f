"""Integration fixtures: a migrated SQLite Airflow and ``dag.test()`` in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dag_runs import REPO


@pytest.fixture(scope="session")
def dag_env(tmp_path_factory, tiny_model_dir):
    """A migrated SQLite Airflow and a data root with the tiny model and 96 tone rows."""
    from slmops.testing import tiny_pipeline_data

    root = tmp_path_factory.mktemp("slm-finetune-dag")
    data = tiny_pipeline_data(root / "data", tiny_model_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(root / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        SLMOPS_DATA_ROOTS=str(data),
    )
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    return env


@pytest.fixture(scope="session")
def conf():
    from slmops.testing import tiny_pipeline_params

    return tiny_pipeline_params("tiny-tones")
