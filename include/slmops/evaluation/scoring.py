"""Scores of one model's answers: classification, generation and language-modelling metrics.

Text and class metrics go through `evaluate` (``slmops.evaluation.metrics``); the eval loss is the
token-weighted cross-entropy of the reference completions, computed as in training
(prompt tokens masked), and perplexity is its exponent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from slmops.data.batching import IGNORE_INDEX, TOKEN_COUNT, PaddingCollator, encode_examples
from slmops.data.formatting import Example
from slmops.errors import MetricError
from slmops.evaluation.metrics import load_metric
from slmops.training.trainer import shifted_cross_entropy

UNRECOGNISED = "(unrecognised)"  # an answer that names no label


def without_special_tokens(text: str, tokenizer) -> str:
    """``text`` as a generated answer decodes: no end-of-turn or other special tokens."""
    for token in tokenizer.all_special_tokens:
        text = text.replace(token, "")
    return text.strip()


def label_of(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer gives: the whole answer if it is one (case, spaces and
    punctuation aside), else the label named first in it (a base model answers in
    sentences), else None."""
    normalized = _words(answer)
    by_words = {_words(label): label for label in labels}
    if normalized in by_words:
        return by_words[normalized]
    first: tuple[int, str] | None = None
    for words, label in by_words.items():
        if not words:
            continue
        match = re.search(rf"(?<!\w){re.escape(words)}(?!\w)", normalized)
        if match and (first is None or match.start() < first[0]):
            first = (match.start(), label)
    return first[1] if first else None


def _words(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def classification_metrics(
    predicted: Sequence[str | None], references: Sequence[str], labels: Sequence[str]
) -> dict:
    """Accuracy, macro F1/precision/recall, per-class scores and the confusion matrix.

    Macro averages run over the known labels; an unrecognised answer counts as wrong.
    The matrix has an extra column (and an empty row) for unrecognised answers.
    """
    index = {label: i for i, label in enumerate(labels)}
    other = len(labels)
    predictions = [index.get(label, other) if label else other for label in predicted]
    truth = [index[label] for label in references]
    known = list(range(len(labels)))
    metrics = {
        "accuracy": _compute("accuracy", predictions, truth)["accuracy"],
        "macro_f1": _compute("f1", predictions, truth, labels=known, average="macro")["f1"],
        "macro_precision": _compute("precision", predictions, truth, labels=known, average="macro")[
            "precision"
        ],
        "macro_recall": _compute("recall", predictions, truth, labels=known, average="macro")[
            "recall"
        ],
    }
    per_label = {
        name: _compute(name, predictions, truth, labels=known, average=None)[name]
        for name in ("precision", "recall", "f1")
    }
    support = [truth.count(i) for i in known]
    per_class = {
        label: {
            "precision": per_label["precision"][i],
            "recall": per_label["recall"][i],
            "f1": per_label["f1"][i],
            "support": support[i],
        }
        for i, label in enumerate(labels)
    }
    matrix = _compute("confusion_matrix", predictions, truth, labels=[*known, other])
    return {
        "metrics": metrics,
        "per_class": per_class,
        "confusion_matrix": matrix["confusion_matrix"],
        "unrecognised": predictions.count(other),
    }


def generation_metrics(
    answers: Sequence[str], references: Sequence[str], extra: Sequence[str] = ()
) -> dict[str, float]:
    """ROUGE-1/2/L, BLEU and exact match (case and punctuation aside), plus ``extra`` metrics."""
    references = [reference.strip() for reference in references]
    rouge = _compute("rouge", answers, references, rouge_types=["rouge1", "rouge2", "rougeL"])
    metrics = {name: rouge[name] for name in ("rougeL", "rouge1", "rouge2")}
    metrics["bleu"] = _compute("bleu", answers, references)["bleu"]
    metrics["exact_match"] = _compute(
        "exact_match", answers, references, ignore_case=True, ignore_punctuation=True
    )["exact_match"]
    for key, value in text_metrics(extra, answers, references).items():
        metrics[key if key not in metrics else f"extra.{key}"] = value
    return metrics


def text_metrics(
    names: Sequence[str], answers: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """The numeric results of any `evaluate` metrics over (answer, reference) strings."""
    metrics: dict[str, float] = {}
    for name in names:
        for key, value in _compute(name, answers, references).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[key] = float(value)
    return metrics


def _compute(name: str, predictions, references, **kwargs) -> dict:
    metric = load_metric(name)
    try:
        return metric.compute(predictions=list(predictions), references=list(references), **kwargs)
    except Exception as exc:
        raise MetricError(f"metric {name!r} failed: {type(exc).__name__}: {exc}") from None


def language_modeling_metrics(
    model, tokenizer, examples: Sequence[Example], *, max_seq_len: int, batch_size: int
) -> dict[str, float]:
    """Eval loss (mean cross-entropy per completion token, in nats) and perplexity."""
    import torch

    encoded, _ = encode_examples(examples, tokenizer, max_seq_len, what="eval")
    collate = PaddingCollator(tokenizer.pad_token_id)
    total, tokens = 0.0, 0
    # Longest first: similar lengths share a batch, so little padding is computed.
    ordered = sorted(encoded, key=len, reverse=True)
    for start in range(0, len(ordered), batch_size):
        batch = collate(ordered[start : start + batch_size])
        batch.pop(TOKEN_COUNT)
        batch = {key: value.to(model.device) for key, value in batch.items()}
        with torch.inference_mode():
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        # Divided by 1, the training loss is the sum over the batch's answer tokens.
        total += shifted_cross_entropy(logits, batch["labels"], num_items_in_batch=1).item()
        tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    loss = total / tokens if tokens else math.nan
    return {"eval_loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}
