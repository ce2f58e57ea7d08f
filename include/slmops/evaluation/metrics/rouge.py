"""ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (rouge-score), averaged over examples.

Unlike rouge-score's default tokenizer, which keeps only [a-z0-9] and so scores any
non-Latin text (Russian, say) as 0, words are Unicode word characters, lowercased; on
ASCII text the two agree. ``use_stemmer=True`` uses rouge-score's English Porter stemmer.
The average is a plain mean (the hub module's bootstrap median is random).
"""

import re

import evaluate
from rouge_score import rouge_scorer, tokenizers

from slmops.evaluation.metrics import common

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class UnicodeWords(tokenizers.Tokenizer):
    def tokenize(self, text):
        return re.findall(r"[^\W_]+", text.lower())


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004",
            inputs_description="predictions, references: strings (ROUGE-Lsum splits "
            "sentences at newlines). rouge_types: which scores. use_stemmer: English "
            "Porter stemming. use_aggregator: False gives a list per example.",
            features=common.text_features(),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(
        self,
        predictions,
        references,
        rouge_types=ROUGE_TYPES,
        use_aggregator=True,
        use_stemmer=False,
    ):
        tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True) if use_stemmer else UnicodeWords()
        scorer = rouge_scorer.RougeScorer(list(rouge_types), tokenizer=tokenizer)
        per_example = {name: [] for name in rouge_types}
        for prediction, reference in zip(predictions, references, strict=True):
            scores = scorer.score(reference, prediction)
            for name in rouge_types:
                per_example[name].append(scores[name].fmeasure)
        if not use_aggregator:
            return per_example
        return {
            name: sum(values) / len(values) if values else 0.0
            for name, values in per_example.items()
        }
