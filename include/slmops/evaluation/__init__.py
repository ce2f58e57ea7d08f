"""Evaluation: metrics, base vs fine-tuned, the overfitting gates and the report.

``run.run(EvaluateConfig) -> EvaluationResult`` scores and judges; ``eval_set`` builds the
eval set every scoring stage shares (evaluation, ONNX parity, champion / challenger,
multi-adapter); ``gates`` are the checks that stop a bad model; ``metrics`` ships the
`evaluate` metric scripts so scoring works offline.
"""

from slmops import lazy_exports

_ENTRY_POINTS = {
    "EvaluateConfig": "slmops.evaluation.config",
    "GateThresholds": "slmops.evaluation.config",
    "EvaluationResult": "slmops.evaluation.run",
    "EvalPlan": "slmops.evaluation.eval_set",
    "GateRecord": "slmops.evaluation.gates",
    "load_metric": "slmops.evaluation.metrics",
}
__all__ = sorted(_ENTRY_POINTS)
__getattr__ = lazy_exports(__name__, _ENTRY_POINTS)
