"""Precision, the share of predictions of a class that are right (scikit-learn)."""

from sklearn.metrics import precision_score

from slmops.evaluation.metrics import common


class Precision(common.AveragedScore):
    score_name = "precision"
    score_function = precision_score
    description = __doc__
