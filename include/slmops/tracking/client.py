"""An MLflow client that cannot fail a pipeline: every call goes through ``Tracker.safely``.

Opening checks what would otherwise hang or fail later: tracking turned off, a server
that does not answer (a short health request, no retries), a store that cannot be
created. Whatever goes wrong becomes one warning in the log and a note in the run's
report, and the caller carries on without tracking.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmops.progress import Log, no_log
from slmops.tracking.settings import TRACKING_ENV, TrackingSettings

HEALTH_TIMEOUT_S = 5.0
# A server that went away mid-run must not hold a task for mlflow's default 2 minutes
# of retries; the user's own settings win.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@dataclass
class Tracker:
    """An open tracking store; ``problem`` is set by the first failed call, after which
    every further call is skipped (one warning, not one per stage)."""

    settings: TrackingSettings
    client: Any
    experiment_id: str
    log: Log = no_log
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def safely(self, what: str) -> Iterator[bool]:
        """Run the block unless tracking already failed; turn an exception into a warning."""
        if self.problem:
            yield False
            return
        try:
            yield True
        except Exception as exc:  # tracking never fails a pipeline
            self.problem = f"{what} failed at {self.settings.uri}: {type(exc).__name__}: {exc}"
            self.log(f"WARNING tracking: {self.problem}; the run goes on without tracking")


@dataclass(frozen=True)
class Unavailable:
    """Why there is no tracker: turned off, unreachable, or the store failed to open."""

    uri: str
    reason: str


def open_tracker(settings: TrackingSettings, log: Log = no_log) -> Tracker | Unavailable:
    if not settings.enabled:
        return Unavailable(settings.uri, f"tracking is turned off (${TRACKING_ENV})")
    if settings.uri.startswith(("http://", "https://")):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        unreachable = _unreachable(settings.uri)
        if unreachable:
            return _unavailable(settings.uri, unreachable, log)
    try:
        client = _client(settings)
        experiment_id = _experiment(client, settings)
    except Exception as exc:  # an unusable store is a warning, not a failure
        return _unavailable(settings.uri, f"{type(exc).__name__}: {exc}", log)
    return Tracker(settings, client, experiment_id, log)


def _client(settings: TrackingSettings):
    from mlflow import MlflowClient

    if settings.embedded:
        database = Path(settings.uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=settings.uri, registry_uri=settings.uri)


def _experiment(client, settings: TrackingSettings) -> str:
    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            settings.experiment, artifact_location=settings.artifact_location
        )
    except Exception:  # another task created it a moment ago
        found = client.get_experiment_by_name(settings.experiment)
        if found is None:
            raise
        return found.experiment_id


def _unreachable(uri: str) -> str | None:
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=HEALTH_TIMEOUT_S) as response:
            response.read(64)
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"{health} answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{health} did not answer ({exc})"
    return None


def _unavailable(uri: str, reason: str, log: Log) -> Unavailable:
    log(f"WARNING tracking: MLflow at {uri} cannot be used ({reason}); the run is not tracked")
    return Unavailable(uri, reason)
