"""F1 score, the harmonic mean of precision and recall (scikit-learn)."""

from sklearn.metrics import f1_score

from slmops.evaluation.metrics import common


class F1(common.AveragedScore):
    score_name = "f1"
    score_function = f1_score
    description = __doc__
