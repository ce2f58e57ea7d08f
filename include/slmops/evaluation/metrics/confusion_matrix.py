"""Confusion matrix: row i, column j counts references of class i predicted as class j."""

import evaluate
from sklearn.metrics import confusion_matrix

from slmops.evaluation.metrics import common


class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="scikit-learn: Machine Learning in Python, Pedregosa et al., JMLR 12, 2011",
            inputs_description="predictions, references: class ids. labels: the ids, in the "
            "order of the rows and columns (default: all seen, sorted). normalize: true, "
            "pred, all or None (counts).",
            features=common.label_features(),
        )

    def _compute(self, predictions, references, labels=None, sample_weight=None, normalize=None):
        matrix = confusion_matrix(
            references, predictions, labels=labels, sample_weight=sample_weight, normalize=normalize
        )
        return {"confusion_matrix": matrix.tolist()}
