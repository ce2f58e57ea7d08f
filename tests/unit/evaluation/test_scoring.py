"""Answer -> label matching, class and text metrics, and the eval loss."""

from __future__ import annotations

import math

import pytest

from slmops.data.formatting import Example
from slmops.evaluation.scoring import (
    classification_metrics,
    generation_metrics,
    label_of,
    language_modeling_metrics,
    without_special_tokens,
)

LABELS = ["angry", "joyful", "very sad"]


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("joyful", "joyful"),
        ("  Joyful. ", "joyful"),
        ("Very  sad!", "very sad"),
        ("The tone is angry, not joyful.", "angry"),  # the label named first
        ("I'd say joyful rather than angry", "joyful"),
        ("joyfully", None),  # whole words only
        ("sad", None),  # part of a label is not the label
        ("", None),
    ],
)
def test_label_of(answer, label):
    assert label_of(answer, LABELS) == label


def test_classification_metrics_by_hand():
    references = ["angry", "angry", "joyful", "very sad"]
    predicted = ["angry", "joyful", "joyful", None]
    scores = classification_metrics(predicted, references, LABELS)
    metrics = scores["metrics"]
    assert metrics["accuracy"] == pytest.approx(0.5)
    # angry P 1 R .5 F .667; joyful P .5 R 1 F .667; very sad P 0 (none predicted) R 0 F 0.
    assert metrics["macro_precision"] == pytest.approx(0.5)
    assert metrics["macro_recall"] == pytest.approx(0.5)
    assert metrics["macro_f1"] == pytest.approx(4 / 9)
    assert scores["per_class"]["angry"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert scores["unrecognised"] == 1
    # rows: reference angry, joyful, very sad, (unrecognised); the last column is unrecognised
    assert scores["confusion_matrix"] == [
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ]


def test_generation_metrics_by_hand():
    metrics = generation_metrics(["The cat sat.", "a dog"], ["the cat sat", "the cat ran away"])
    assert metrics["exact_match"] == pytest.approx(0.5)  # case and punctuation aside
    # rouge1 F: pair 1 = 1.0; pair 2: 0 overlap -> 0. Mean 0.5.
    assert metrics["rouge1"] == pytest.approx(0.5)
    assert metrics["rougeL"] == pytest.approx(0.5)
    assert 0.0 < metrics["bleu"] < 1.0


def test_extra_metrics_are_added_under_their_keys():
    metrics = generation_metrics(["a b"], ["a b"], extra=["exact_match"])
    assert metrics["extra.exact_match"] == 1.0


def test_special_tokens_are_removed_from_references(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token
    assert without_special_tokens(f"joyful{eos}\n", tiny_tokenizer) == "joyful"


def test_eval_loss_is_the_token_weighted_completion_loss(tiny_model_dir):
    import torch

    from slmops.data.batching import encode_examples
    from slmops.models import load_causal_lm, load_padding_tokenizer

    tokenizer = load_padding_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    examples = [
        Example("Phrase: what a day ->", " joyful"),
        Example("Phrase: how dare you, again and again ->", " angry and upset"),
        Example("Q ->", " a much longer answer than the others here"),
    ]
    scores = language_modeling_metrics(model, tokenizer, examples, max_seq_len=64, batch_size=2)
    # One row at a time, with transformers' own loss (mean over that row's answer tokens).
    encoded, _ = encode_examples(examples, tokenizer, 64, what="check")
    total = tokens = 0
    for row in encoded:
        ids = torch.tensor([row.input_ids])
        labels = torch.tensor([row.labels])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        count = sum(label != -100 for label in row.labels[1:])
        total, tokens = total + loss * count, tokens + count
    assert scores["eval_loss"] == pytest.approx(total / tokens, rel=1e-4)
    assert scores["perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-4)
