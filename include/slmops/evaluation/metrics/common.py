"""Shared pieces of the shipped metric scripts (``slmops.evaluation.metrics.common``).

The scripts import this module, never its classes by name: `evaluate` takes the first
metric class it finds in a script's namespace as the script's metric.
"""

from __future__ import annotations

import datasets
import evaluate


def label_features() -> datasets.Features:
    """Class ids, as the hub's classification metrics take them."""
    return datasets.Features(
        {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
    )


def text_features() -> datasets.Features:
    return datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
    )


def as_number(value):
    """Plain floats (or a list of them) in results, never numpy scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return float(value)


class AveragedScore(evaluate.Metric):
    """A scikit-learn score with ``average`` (binary, micro, macro, weighted or None)."""

    score_name = ""
    score_function = None  # a sklearn.metrics function
    description = ""

    def _info(self):
        return evaluate.MetricInfo(
            description=self.description,
            citation="scikit-learn: Machine Learning in Python, Pedregosa et al., JMLR 12, 2011",
            inputs_description=(
                "predictions, references: class ids. labels: the ids to score (default: all "
                "seen). average: binary (default), micro, macro, weighted, or None for a "
                "score per label. zero_division: the value when a ratio is 0/0."
            ),
            features=label_features(),
            reference_urls=["https://scikit-learn.org/stable/api/sklearn.metrics.html"],
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division=0,
    ):
        score = type(self).score_function(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {self.score_name: as_number(score)}
