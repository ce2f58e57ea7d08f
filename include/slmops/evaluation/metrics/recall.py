"""Recall, the share of a class's references that are found (scikit-learn)."""

from sklearn.metrics import recall_score

from slmops.evaluation.metrics import common


class Recall(common.AveragedScore):
    score_name = "recall"
    score_function = recall_score
    description = __doc__
