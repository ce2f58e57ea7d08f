"""Accuracy: the share of predictions equal to their reference (scikit-learn)."""

import evaluate
from sklearn.metrics import accuracy_score

from slmops.evaluation.metrics import common


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="scikit-learn: Machine Learning in Python, Pedregosa et al., JMLR 12, 2011",
            inputs_description="predictions, references: class ids. normalize: False gives "
            "the count of correct predictions instead of the share.",
            features=common.label_features(),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(
            references, predictions, normalize=normalize, sample_weight=sample_weight
        )
        return {"accuracy": common.as_number(score)}
