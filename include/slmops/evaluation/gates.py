"""Gates: checks that stop a bad model before it is exported or published.

Each gate returns a ``GateRecord`` {name, observed, threshold, passed, explanation};
``passed`` is None when a gate could not be judged (no training history, no base model),
which never stops a run. ``GateFailure`` carries the failed records and a message with
the values and the remedies the reference guide gives.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Differences of scores are floats: 0.6 - 0.5 is 0.0999..., which must meet a 0.1 bar.
_TOLERANCE = 1e-9

# The reference guide's remedies for overfitting ("Common problems: overfitting").
OVERFITTING_REMEDIES = (
    "lower --lora_r or --lora_alpha (the guide: r 16, lora_alpha 16)",
    "add dropout or weight decay (--lora_dropout 0.1, --weight_decay 0.01)",
    "add training data",
    "train fewer steps (--max_steps, --num_train_epochs)",
    "turn on early stopping (--early_stopping_patience 2)",
)
UNDERFITTING_REMEDIES = (
    "train longer or with a higher --learning_rate",
    "add training data, and check its labels with `slmops validate`",
    "check the prompt format (--text_template / --use_chat_template) matches how the "
    "model is asked",
)
EXPORT_REMEDIES = (
    "try a higher-precision target (cpu-int8 or cpu-fp32 instead of cpu-int4)",
    "compare the exported model's answers with the PyTorch ones in the parity report",
)


@dataclass
class GateRecord:
    name: str
    observed: Any
    threshold: Any
    passed: bool | None
    explanation: str
    remedies: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        record = asdict(self)
        record["remedies"] = list(self.remedies)
        return record


def _skipped(name: str, threshold: Any, why: str) -> GateRecord:
    return GateRecord(name, None, threshold, None, f"not judged: {why}")


def _format(value: float) -> str:
    return f"{value:.4g}"


def loss_gap(
    final_train_loss: float | None,
    final_eval_loss: float | None,
    max_ratio: float,
    min_difference: float,
) -> GateRecord:
    """Overfitting: eval / train loss above ``max_ratio`` and apart by over ``min_difference``."""
    name = "loss_gap"
    if final_train_loss is None or final_eval_loss is None:
        return _skipped(name, max_ratio, "the run recorded no train and eval loss")
    difference = final_eval_loss - final_train_loss
    ratio = final_eval_loss / final_train_loss if final_train_loss > 0 else math.inf
    observed = round(ratio, 4) if math.isfinite(ratio) else "inf"
    values = (
        f"final eval loss {_format(final_eval_loss)} / final train loss "
        f"{_format(final_train_loss)} = {_format(ratio)}"
    )
    if ratio > max_ratio and difference > min_difference:
        return GateRecord(
            name,
            observed,
            max_ratio,
            False,
            f"{values} > {max_ratio} (max_loss_gap), and eval loss is {_format(difference)} "
            f"above train loss: the model fits its training rows far better than unseen ones "
            "(overfitting)",
            OVERFITTING_REMEDIES,
        )
    if ratio > max_ratio:
        reason = f"the losses differ by only {_format(difference)} (<= {min_difference})"
    else:
        reason = f"<= {max_ratio}"
    return GateRecord(name, observed, max_ratio, True, f"{values}; {reason}")


def rising_eval_loss(eval_losses: list[float], window: int) -> GateRecord:
    """Overfitting when the eval loss rose at each of the last ``window`` evaluations."""
    name = "rising_eval_loss"
    if window == 0:
        return _skipped(name, window, "turned off (rising_eval_loss_window 0)")
    if len(eval_losses) < 2:
        return _skipped(name, window, f"{len(eval_losses)} evaluation(s) recorded, need 2")
    rises = 0
    for before, after in zip(reversed(eval_losses[:-1]), reversed(eval_losses), strict=False):
        if after <= before:
            break
        rises += 1
    trail = " -> ".join(_format(loss) for loss in eval_losses[-(max(rises, window) + 1) :])
    if rises >= window:
        return GateRecord(
            name,
            rises,
            window,
            False,
            f"eval loss rose at each of the last {rises} evaluations ({trail}) while training "
            f"went on (limit {window}): the model is getting worse on unseen rows (overfitting)",
            OVERFITTING_REMEDIES,
        )
    return GateRecord(
        name,
        rises,
        window,
        True,
        f"eval loss rose at the last {rises} evaluation(s) in a row, fewer than {window} ({trail})",
    )


def metric_bounds(
    metrics: dict[str, float],
    floors: dict[str, float],
    ceilings: dict[str, float],
) -> list[GateRecord]:
    """``min_metric[name]`` and ``max_metric[name]`` records for the fine-tuned model."""
    records = []
    for kind, bounds, ok in (("min", floors, _at_least), ("max", ceilings, _at_most)):
        for metric, bound in bounds.items():
            name = f"{kind}_metric[{metric}]"
            if metric not in metrics:
                records.append(
                    GateRecord(
                        name,
                        None,
                        bound,
                        False,
                        f"{metric} was not computed for this task (computed: "
                        f"{', '.join(sorted(metrics))}); fix the gate's metric name",
                    )
                )
                continue
            value = metrics[metric]
            passed = ok(value, bound)
            relation = (
                (">=" if kind == "min" else "<=") if passed else ("<" if kind == "min" else ">")
            )
            records.append(
                GateRecord(
                    name,
                    round(value, 6),
                    bound,
                    passed,
                    f"fine-tuned {metric} {_format(value)} {relation} {bound}",
                    () if passed else UNDERFITTING_REMEDIES,
                )
            )
    return records


def _at_least(value: float, bound: float) -> bool:
    return value >= bound


def _at_most(value: float, bound: float) -> bool:
    return value <= bound


def improvement(
    base: float | None,
    fine_tuned: float,
    metric: str,
    min_improvement: float,
    *,
    lower_is_better: bool = False,
) -> GateRecord:
    """The fine-tuned model beats the base by at least ``min_improvement`` on ``metric``."""
    name = "min_improvement"
    if base is None:
        return _skipped(name, min_improvement, "the base model was not scored")
    gain = base - fine_tuned if lower_is_better else fine_tuned - base
    values = f"{metric}: base {_format(base)}, fine-tuned {_format(fine_tuned)}"
    direction = "lower" if lower_is_better else "higher"
    if gain + _TOLERANCE >= min_improvement:
        return GateRecord(
            name,
            round(gain, 6),
            min_improvement,
            True,
            f"{values}; {_format(gain)} {direction}, at least {min_improvement}",
        )
    return GateRecord(
        name,
        round(gain, 6),
        min_improvement,
        False,
        f"{values}; the fine-tuned model is only {_format(gain)} {direction} (needs "
        f"{min_improvement}): fine-tuning did not pay off",
        UNDERFITTING_REMEDIES,
    )


def export_degradation(
    reference: float,
    exported: float,
    metric: str,
    max_degradation: float,
    *,
    target: str,
    lower_is_better: bool = False,
) -> GateRecord:
    """An exported model scores at most ``max_degradation`` worse than the PyTorch model."""
    name = f"max_export_degradation[{target}]"
    loss = exported - reference if lower_is_better else reference - exported
    values = f"{metric}: PyTorch {_format(reference)}, {target} {_format(exported)}"
    if loss - _TOLERANCE <= max_degradation:
        return GateRecord(
            name,
            round(loss, 6),
            max_degradation,
            True,
            f"{values}; {_format(max(loss, 0.0))} worse, within {max_degradation}",
        )
    return GateRecord(
        name,
        round(loss, 6),
        max_degradation,
        False,
        f"{values}; {_format(loss)} worse than the PyTorch model, more than "
        f"{max_degradation} (max_export_degradation)",
        EXPORT_REMEDIES,
    )


def failed(records: list[GateRecord]) -> list[GateRecord]:
    return [record for record in records if record.passed is False]
