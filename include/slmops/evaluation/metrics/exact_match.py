"""Exact match: the share of predictions identical to their reference after normalization."""

import re
import string

import evaluate

from slmops.evaluation.metrics import common


def normalize(
    text, regexes_to_ignore=(), ignore_case=False, ignore_punctuation=False, ignore_numbers=False
):
    for pattern in regexes_to_ignore or ():
        text = re.sub(pattern, "", text)
    if ignore_case:
        text = text.lower()
    if ignore_punctuation:
        text = text.translate(str.maketrans("", "", string.punctuation))
    if ignore_numbers:
        text = text.translate(str.maketrans("", "", string.digits))
    return text


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions, references: strings. regexes_to_ignore: "
            "patterns removed first; ignore_case, ignore_punctuation, ignore_numbers: "
            "what else to disregard (all False by default, as the hub's exact_match).",
            features=common.text_features(),
        )

    def _compute(
        self,
        predictions,
        references,
        regexes_to_ignore=None,
        ignore_case=False,
        ignore_punctuation=False,
        ignore_numbers=False,
    ):
        options = (regexes_to_ignore, ignore_case, ignore_punctuation, ignore_numbers)
        matches = [
            normalize(prediction, *options) == normalize(reference, *options)
            for prediction, reference in zip(predictions, references, strict=True)
        ]
        return {"exact_match": sum(matches) / len(matches) if matches else 0.0}
