"""Corpus BLEU (sacrebleu), on the 0..1 scale and with the keys of the hub's ``bleu``.

sacrebleu's 13a tokenizer is the one the hub module uses too. Smoothing defaults to
sacrebleu's ``exp`` (an n-gram order without a match no longer zeroes the score);
``smooth=False`` turns it off, as in the hub module. A corpus whose answers are all
shorter than ``max_order`` tokens still scores 0: for one-word answers read exact match
or ROUGE. References: one string per prediction, or a list of them.
"""

import datasets
import evaluate
import sacrebleu

from slmops.evaluation.metrics import common


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018",
            inputs_description="predictions: strings. references: a string or a list of "
            "strings per prediction. max_order: n-gram order. smooth: exp smoothing. "
            "tokenize: a sacrebleu tokenizer name (13a, intl, zh, char, none...).",
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                common.text_features(),
            ],
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, max_order=4, smooth=True, tokenize="13a"):
        references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
        widest = max((len(refs) for refs in references), default=1)
        # sacrebleu takes one stream per reference position; missing ones are None.
        streams = [
            [refs[i] if i < len(refs) else None for refs in references] for i in range(widest)
        ]
        scorer = sacrebleu.BLEU(
            tokenize=tokenize,
            smooth_method="exp" if smooth else "none",
            max_ngram_order=max_order,
        )
        result = scorer.corpus_score(list(predictions), streams)
        return {
            "bleu": result.score / 100,
            "precisions": [p / 100 for p in result.precisions],
            "brevity_penalty": result.bp,
            "length_ratio": result.sys_len / result.ref_len if result.ref_len else 0.0,
            "translation_length": result.sys_len,
            "reference_length": result.ref_len,
        }
