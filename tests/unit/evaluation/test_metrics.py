"""The shipped `evaluate` metric modules agree with the libraries they wrap and with hand sums."""

import textwrap

import evaluate
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from slmops.errors import MetricError
from slmops.evaluation.metrics import SHIPPED, load_metric, metric_path

# A 3-class sample with some of every kind of error.
REFERENCES = [0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 1]
PREDICTIONS = [0, 2, 2, 2, 1, 0, 1, 1, 1, 2, 0, 1]

ASCII_PAIRS = [
    ("The cat sat on the mat.", "The cat lay on the rug!"),
    ("Police killed the gunman in 2019", "the gunman was killed by police, in 2019"),
    ("snake_case words and U.S.A. dots", "snake case words and usa"),
    ("first line here\nsecond line there", "second line here\nfirst line"),
    ("nothing in common", "entirely different text"),
]


def compute(name, **inputs):
    return load_metric(name).compute(**inputs)


# --- classification metrics ------------------------------------------------------------


def test_accuracy_hand_computed():
    result = compute("accuracy", predictions=[0, 1, 1, 1], references=[0, 0, 1, 1])
    assert result == {"accuracy": pytest.approx(0.75)}


def test_accuracy_matches_sklearn_and_counts_without_normalize():
    result = compute("accuracy", predictions=PREDICTIONS, references=REFERENCES)
    assert result["accuracy"] == pytest.approx(accuracy_score(REFERENCES, PREDICTIONS))
    counted = compute("accuracy", predictions=PREDICTIONS, references=REFERENCES, normalize=False)
    assert counted["accuracy"] == pytest.approx(8.0)
    assert type(counted["accuracy"]) is float


def test_f1_hand_computed_binary_and_macro():
    """Class 0: P 1, R 1/2, F1 2/3. Class 1: P 2/3, R 1, F1 4/5. Macro: (2/3 + 4/5) / 2."""
    inputs = {"predictions": [0, 1, 1, 1], "references": [0, 0, 1, 1]}
    assert compute("f1", **inputs)["f1"] == pytest.approx(0.8)
    assert compute("f1", **inputs, average="macro")["f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_f1_averages_match_sklearn(average):
    result = compute("f1", predictions=PREDICTIONS, references=REFERENCES, average=average)
    expected = f1_score(REFERENCES, PREDICTIONS, average=average)
    assert result["f1"] == pytest.approx(expected)
    assert type(result["f1"]) is float


def test_f1_per_class_and_with_labels_match_sklearn():
    per_class = compute("f1", predictions=PREDICTIONS, references=REFERENCES, average=None)
    assert per_class["f1"] == pytest.approx(list(f1_score(REFERENCES, PREDICTIONS, average=None)))
    assert len(per_class["f1"]) == 3

    chosen = compute(
        "f1", predictions=PREDICTIONS, references=REFERENCES, labels=[2, 0], average=None
    )
    expected = f1_score(REFERENCES, PREDICTIONS, labels=[2, 0], average=None)
    assert chosen["f1"] == pytest.approx(list(expected))

    macro_two = compute(
        "f1", predictions=PREDICTIONS, references=REFERENCES, labels=[0, 1], average="macro"
    )
    expected = f1_score(REFERENCES, PREDICTIONS, labels=[0, 1], average="macro")
    assert macro_two["f1"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "function"), [("precision", precision_score), ("recall", recall_score)]
)
def test_precision_and_recall_per_class_match_sklearn(name, function):
    per_class = compute(name, predictions=PREDICTIONS, references=REFERENCES, average=None)
    assert per_class[name] == pytest.approx(list(function(REFERENCES, PREDICTIONS, average=None)))
    macro = compute(name, predictions=PREDICTIONS, references=REFERENCES, average="macro")
    assert macro[name] == pytest.approx(function(REFERENCES, PREDICTIONS, average="macro"))


def test_precision_and_recall_hand_computed():
    """Predictions [0, 1, 1, 1] for references [0, 0, 1, 1]: class 1 found always, right 2/3."""
    inputs = {"predictions": [0, 1, 1, 1], "references": [0, 0, 1, 1], "average": None}
    assert compute("precision", **inputs)["precision"] == pytest.approx([1.0, 2 / 3])
    assert compute("recall", **inputs)["recall"] == pytest.approx([0.5, 1.0])


def test_zero_division_is_used_for_a_class_never_predicted():
    inputs = {"predictions": [0, 0, 0], "references": [0, 1, 1], "labels": [1]}
    assert compute("precision", **inputs)["precision"] == pytest.approx(0.0)
    assert compute("precision", **inputs, zero_division=1)["precision"] == pytest.approx(1.0)


def test_confusion_matrix_matches_sklearn():
    result = compute("confusion_matrix", predictions=PREDICTIONS, references=REFERENCES)
    assert result["confusion_matrix"] == confusion_matrix(REFERENCES, PREDICTIONS).tolist()
    assert result["confusion_matrix"] == [[2, 1, 0], [1, 3, 1], [0, 1, 3]]


def test_confusion_matrix_with_a_label_that_never_occurs():
    """Label 3 appears in neither list: its row and column are zeros, in the order asked."""
    labels = [2, 0, 1, 3]
    result = compute(
        "confusion_matrix", predictions=[0, 1, 2, 2], references=[0, 1, 1, 2], labels=labels
    )
    expected = [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert result["confusion_matrix"] == expected
    assert expected == confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], labels=labels).tolist()


def test_confusion_matrix_normalized_by_row():
    result = compute(
        "confusion_matrix", predictions=[0, 1, 1, 1], references=[0, 0, 1, 1], normalize="true"
    )
    assert result["confusion_matrix"] == [pytest.approx([0.5, 0.5]), pytest.approx([0.0, 1.0])]


# --- exact match ---------------------------------------------------------------------


def test_exact_match_is_strict_by_default():
    result = compute(
        "exact_match",
        predictions=["Paris", "paris", "Rome", "Oslo"],
        references=["Paris", "Paris", "Rome.", "Oslo"],
    )
    assert result["exact_match"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("prediction", "reference", "options"),
    [
        ("PARIS", "paris", {"ignore_case": True}),
        ("Paris, France!", "Paris France", {"ignore_punctuation": True}),
        ("room 101", "room ", {"ignore_numbers": True}),
        ("the answer: yes", "yes", {"regexes_to_ignore": ["the ", r"answer:\s*"]}),
        (
            "Answer: 42 APPLES.",
            "answer  apples",
            {
                "ignore_case": True,
                "ignore_punctuation": True,
                "ignore_numbers": True,
            },
        ),
    ],
)
def test_exact_match_options(prediction, reference, options):
    """The options turn a strict miss into a match."""
    strict = compute("exact_match", predictions=[prediction], references=[reference])
    assert strict["exact_match"] == pytest.approx(0.0)
    loose = compute("exact_match", predictions=[prediction], references=[reference], **options)
    assert loose["exact_match"] == pytest.approx(1.0)


def test_exact_match_removes_digits_without_closing_the_gap():
    """As the hub module: digits are deleted, the spaces around them stay."""
    result = compute(
        "exact_match",
        predictions=["hello 1 world"],
        references=["hello world"],
        ignore_numbers=True,
    )
    assert result["exact_match"] == pytest.approx(0.0)


# --- ROUGE ---------------------------------------------------------------------------


def test_rouge_hand_computed():
    """'a b c' vs 'a b d e': 2 shared words, P 2/3, R 2/4, F 4/7; 1 shared bigram of 2 and 3."""
    result = compute("rouge", predictions=["a b c"], references=["a b d e"])
    assert result["rouge1"] == pytest.approx(4 / 7)
    assert result["rouge2"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert result["rougeL"] == pytest.approx(4 / 7)
    assert result["rougeLsum"] == pytest.approx(4 / 7)


def test_rouge_agrees_with_rouge_score_on_ascii():
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types)
    predictions = [prediction for prediction, _ in ASCII_PAIRS]
    references = [reference for _, reference in ASCII_PAIRS]
    per_example = compute(
        "rouge", predictions=predictions, references=references, use_aggregator=False
    )
    averaged = compute("rouge", predictions=predictions, references=references)
    for name in types:
        expected = [scorer.score(ref, pred)[name].fmeasure for pred, ref in ASCII_PAIRS]
        assert per_example[name] == pytest.approx(expected)
        assert averaged[name] == pytest.approx(sum(expected) / len(expected))
    assert 0 < averaged["rouge1"] < 1


def test_rouge_stemmer_agrees_with_rouge_score():
    prediction, reference = "the runners were running quickly", "a runner runs quick"
    result = compute("rouge", predictions=[prediction], references=[reference], use_stemmer=True)
    expected = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score(reference, prediction)
    assert result["rouge1"] == pytest.approx(expected["rouge1"].fmeasure)
    unstemmed = compute("rouge", predictions=[prediction], references=[reference])
    assert result["rouge1"] > unstemmed["rouge1"]


def test_rouge_scores_cyrillic_text_where_rouge_score_gives_zero():
    """'Кошка сидит на ковре' vs 'кошка сидит на полу': 3 of 4 words shared (case ignored)."""
    prediction, reference = "Кошка сидит на ковре", "кошка сидит на полу"
    default = rouge_scorer.RougeScorer(["rouge1"]).score(reference, prediction)
    assert default["rouge1"].fmeasure == pytest.approx(0.0)
    result = compute("rouge", predictions=[prediction], references=[reference])
    assert result["rouge1"] == pytest.approx(0.75)
    assert result["rouge2"] == pytest.approx(2 / 3)
    assert result["rougeL"] == pytest.approx(0.75)


def test_rouge_only_the_types_asked():
    result = compute(
        "rouge", predictions=["a b"], references=["a b"], rouge_types=["rouge1", "rougeL"]
    )
    assert result == {"rouge1": pytest.approx(1.0), "rougeL": pytest.approx(1.0)}


# --- BLEU ----------------------------------------------------------------------------

BLEU_KEYS = {
    "bleu",
    "precisions",
    "brevity_penalty",
    "length_ratio",
    "translation_length",
    "reference_length",
}


def assert_matches_sacrebleu(result, expected):
    """Our 0..1 result against a sacrebleu BLEUScore on its 0..100 scale."""
    assert set(result) == BLEU_KEYS
    assert result["bleu"] == pytest.approx(expected.score / 100)
    assert result["precisions"] == pytest.approx([p / 100 for p in expected.precisions])
    assert result["brevity_penalty"] == pytest.approx(expected.bp)
    assert result["length_ratio"] == pytest.approx(expected.sys_len / expected.ref_len)
    assert result["translation_length"] == expected.sys_len
    assert result["reference_length"] == expected.ref_len


def test_bleu_of_an_identical_sentence_is_one():
    sentence = "the quick brown fox jumps over the lazy dog"
    result = compute("bleu", predictions=[sentence], references=[sentence])
    assert result["bleu"] == pytest.approx(1.0)
    assert result["precisions"] == pytest.approx([1.0] * 4)
    assert result["brevity_penalty"] == pytest.approx(1.0)
    assert result["length_ratio"] == pytest.approx(1.0)
    assert result["translation_length"] == result["reference_length"] == 9


def test_bleu_single_reference_strings_match_sacrebleu():
    predictions = ["the cat sat on the mat", "a dog barked loudly at night"]
    references = ["the cat is on the mat", "the dog barked at night"]
    result = compute("bleu", predictions=predictions, references=references)
    assert_matches_sacrebleu(result, sacrebleu.corpus_bleu(predictions, [references]))
    assert 0 < result["bleu"] < 1


def test_bleu_multiple_references_per_prediction_match_sacrebleu():
    predictions = ["the cat sat on the mat", "a dog barks"]
    references = [["the cat is on the mat", "a cat sat on the mat"], ["the dog", "a dog barks"]]
    result = compute("bleu", predictions=predictions, references=references)
    streams = [list(column) for column in zip(*references, strict=True)]
    assert_matches_sacrebleu(result, sacrebleu.corpus_bleu(predictions, streams))
    single = compute("bleu", predictions=predictions, references=[refs[0] for refs in references])
    assert result["bleu"] > single["bleu"]


def test_bleu_a_varying_number_of_references():
    """A missing reference is no reference (None to sacrebleu), not an empty one."""
    predictions = ["the cat sat on the mat", "a dog"]
    references = [["the cat is on the mat", "a cat sat on the mat"], ["the dog"]]
    result = compute("bleu", predictions=predictions, references=references)
    expected = sacrebleu.corpus_bleu(
        predictions, [["the cat is on the mat", "the dog"], ["a cat sat on the mat", None]]
    )
    assert_matches_sacrebleu(result, expected)


def test_bleu_smoothing():
    """No 4-gram matches: unsmoothed BLEU is 0, exp smoothing (the default) is not."""
    predictions, references = ["the cat sat on a mat"], ["the cat lay on a mat"]
    smoothed = compute("bleu", predictions=predictions, references=references)
    plain = compute("bleu", predictions=predictions, references=references, smooth=False)
    assert plain["bleu"] == pytest.approx(0.0)
    assert plain["precisions"] == pytest.approx([5 / 6, 3 / 5, 1 / 4, 0.0])
    # exp smoothing: the first zero count becomes 1 / (2 * 3 4-grams).
    assert smoothed["precisions"] == pytest.approx([5 / 6, 3 / 5, 1 / 4, 1 / 6])
    assert smoothed["bleu"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** (1 / 4))
    assert_matches_sacrebleu(
        smoothed, sacrebleu.corpus_bleu(predictions, [references], smooth_method="exp")
    )
    assert_matches_sacrebleu(
        plain, sacrebleu.corpus_bleu(predictions, [references], smooth_method="none")
    )


def test_bleu_brevity_penalty_of_a_short_prediction():
    """2 words against 4: BP = e^(1 - 4/2); no 3-grams at all, so BLEU is 0 even smoothed."""
    predictions, references = ["the cat"], ["the cat sat down"]
    result = compute("bleu", predictions=predictions, references=references)
    assert result["brevity_penalty"] == pytest.approx(0.36787944)
    assert result["length_ratio"] == pytest.approx(0.5)
    assert result["bleu"] == pytest.approx(0.0)
    assert_matches_sacrebleu(result, sacrebleu.corpus_bleu(predictions, [references]))


def test_bleu_max_order():
    predictions, references = ["the cat sat"], ["the cat sat down"]
    result = compute("bleu", predictions=predictions, references=references, max_order=2)
    expected = sacrebleu.BLEU(max_ngram_order=2).corpus_score(predictions, [references])
    assert_matches_sacrebleu(result, expected)
    assert len(result["precisions"]) == 2


# --- loading -------------------------------------------------------------------------

LOCAL_METRIC = '''
"""Counts the predictions equal to twice their reference."""

import datasets
import evaluate


class Doubled(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="",
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references):
        pairs = zip(predictions, references)
        return {"doubled": sum(p == 2 * r for p, r in pairs) / len(predictions)}
'''


def test_load_a_local_metric_script_by_path(tmp_path):
    script = tmp_path / "doubled.py"
    script.write_text(textwrap.dedent(LOCAL_METRIC))
    metric = load_metric(str(script))
    assert isinstance(metric, evaluate.EvaluationModule)
    result = metric.compute(predictions=[2, 4, 5, 0], references=[1, 2, 3, 0])
    assert result == {"doubled": pytest.approx(0.75)}


def test_load_a_local_metric_folder(tmp_path):
    """evaluate's folder form: <folder>/<folder name>.py."""
    folder = tmp_path / "doubled_folder"
    folder.mkdir()
    (folder / "doubled_folder.py").write_text(textwrap.dedent(LOCAL_METRIC))
    metric = load_metric(str(folder))
    assert metric.compute(predictions=[2], references=[1]) == {"doubled": pytest.approx(1.0)}


def test_a_missing_script_path_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "missing_metric.py"
    with pytest.raises(MetricError, match="does not exist") as caught:
        load_metric(str(missing))
    assert str(missing) in str(caught.value)


def test_an_unknown_hub_name_lists_the_shipped_metrics():
    with pytest.raises(MetricError) as caught:
        load_metric("no_such_metric_xyz")
    message = str(caught.value)
    assert "'no_such_metric_xyz' could not be loaded" in message
    for name in SHIPPED:
        assert name in message


def test_a_namespaced_hub_name_goes_to_evaluate_load():
    """Offline, 'owner/metric' must fail as a hub load, not as a missing local script."""
    with pytest.raises(MetricError, match="could not be loaded"):
        load_metric("someone/no_such_metric_xyz")


def test_metric_path_of_a_name_that_is_not_shipped():
    with pytest.raises(MetricError, match="'perplexity' is not a shipped metric") as caught:
        metric_path("perplexity")
    assert "accuracy, f1, precision" in str(caught.value)


def test_metric_path_of_a_shipped_name():
    path = metric_path("rouge")
    assert path.name == "rouge.py"
    assert path.is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_metric_loads(name):
    metric = load_metric(name)
    assert isinstance(metric, evaluate.EvaluationModule)
    assert metric.name == name
