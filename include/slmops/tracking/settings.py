"""Where runs are tracked: the deployment's MLflow server, or an embedded store.

Resolution, first that is set wins: the ``uri`` a caller passes (the Airflow side reads
it from a connection), ``$MLFLOW_TRACKING_URI``, else a SQLite store with local
artifacts under ARTIFACTS_ROOT/mlflow, so tracking works with nothing to start.
``$SLMOPS_TRACKING=off`` turns tracking off. Light: no mlflow import here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TRACKING_ENV = "SLMOPS_TRACKING"
URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "SLMOPS_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "slmops"
STORE_DIR = "mlflow"  # ARTIFACTS_ROOT/mlflow: mlflow.db and artifacts/
DATABASE_NAME = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
_OFF = {"0", "off", "false", "no", "disabled"}


@dataclass(frozen=True)
class TrackingSettings:
    uri: str
    experiment: str = DEFAULT_EXPERIMENT
    artifact_location: str | None = None  # for a new experiment in the embedded store
    enabled: bool = True

    @property
    def embedded(self) -> bool:
        return self.uri.startswith("sqlite:")


def embedded_store(artifacts_root: Path) -> tuple[str, str]:
    """The embedded store's tracking URI and artifact folder under ``artifacts_root``."""
    folder = Path(artifacts_root).resolve() / STORE_DIR
    return f"sqlite:///{folder / DATABASE_NAME}", str(folder / ARTIFACTS_DIR)


def settings_for(artifacts_root: Path, uri: str | None = None) -> TrackingSettings:
    """The tracking settings of runs under ``artifacts_root``."""
    experiment = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    enabled = os.environ.get(TRACKING_ENV, "on").strip().lower() not in _OFF
    chosen = uri or os.environ.get(URI_ENV)
    if chosen:
        return TrackingSettings(chosen, experiment, None, enabled)
    database, artifacts = embedded_store(artifacts_root)
    return TrackingSettings(database, experiment, artifacts, enabled)


def artifacts_root_of(models_root: str | Path) -> Path:
    """A run's artifacts root, from its plan's ``models_root`` (ROOT/models)."""
    return Path(models_root).parent
