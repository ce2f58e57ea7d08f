"""Experiment tracking, the model registry and lineage: MLflow and OpenLineage.

``runs.record_run`` puts a pipeline run into MLflow (one run, a nested run per stage)
from what its stages wrote; ``registry.register`` mirrors the file-based model store as
registered model versions with ``champion`` / ``challenger`` aliases; ``lineage``
describes each stage's inputs and outputs for OpenLineage. With no configuration the
tracker is an embedded MLflow store under the artifacts root; tracking never fails a run.
"""

from slmops import lazy_exports

_ENTRY_POINTS = {
    "TrackingSettings": "slmops.tracking.settings",
    "settings_for": "slmops.tracking.settings",
    "record_run": "slmops.tracking.runs",
    "record_report": "slmops.tracking.runs",
    "register": "slmops.tracking.registry",
    "compare_runs": "slmops.tracking.compare",
    "list_runs": "slmops.tracking.compare",
}
__all__ = sorted(_ENTRY_POINTS)
__getattr__ = lazy_exports(__name__, _ENTRY_POINTS)
