"""`evaluate` metric modules shipped with slmops, so evaluation works offline.

``evaluate.load("accuracy")`` fetches a script from the Hugging Face Hub. The modules in
this folder are complete `evaluate` scripts over scikit-learn, rouge-score and sacrebleu,
with the hub modules' names, arguments and output keys; ``load_metric`` loads them by
path. Any other name goes to ``evaluate.load`` unchanged (the hub, for users with a
network), and a path to a local metric script works too.
"""

from __future__ import annotations

import functools
from pathlib import Path

from slmops.errors import MetricError
from slmops.models import transient_hub_error

SHIPPED = (
    "accuracy",
    "f1",
    "precision",
    "recall",
    "confusion_matrix",
    "exact_match",
    "rouge",
    "bleu",
)
_HERE = Path(__file__).resolve().parent


def metric_path(name: str) -> Path:
    """The script of a shipped metric."""
    if name not in SHIPPED:
        raise MetricError(f"{name!r} is not a shipped metric; shipped: {', '.join(SHIPPED)}")
    return _HERE / f"{name}.py"


@functools.cache
def load_metric(name_or_path: str):
    """A shipped metric by name, a local metric script (``.py`` or its folder), or a hub
    name (``rouge``, ``owner/metric``)."""
    import evaluate

    local = Path(name_or_path)
    if name_or_path in SHIPPED:
        target = str(metric_path(name_or_path))
    elif local.exists() or local.suffix == ".py":
        if not local.exists():
            raise MetricError(f"metric script {local} does not exist")
        target = str(local.resolve())
    else:
        target = name_or_path
    try:
        return evaluate.load(target, keep_in_memory=True)
    except Exception as exc:
        transient = transient_hub_error(exc, f"metric {name_or_path!r}")
        if transient is not None:  # a busy hub: retried, not failed for good
            raise transient from exc
        hint = (
            f"shipped metrics work offline: {', '.join(SHIPPED)}; or pass the path of a "
            "local metric script"
        )
        raise MetricError(
            f"metric {name_or_path!r} could not be loaded ({type(exc).__name__}: {exc}); {hint}"
        ) from None
