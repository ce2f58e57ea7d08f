"""Gates: each judged at, below and above its threshold; skipped cases; the failure message."""

import pytest

from slmops.errors import GateFailure
from slmops.evaluation.gates import (
    EXPORT_REMEDIES,
    OVERFITTING_REMEDIES,
    UNDERFITTING_REMEDIES,
    GateRecord,
    export_degradation,
    failed,
    improvement,
    loss_gap,
    metric_bounds,
    rising_eval_loss,
)

# --- loss_gap ------------------------------------------------------------------------


def test_loss_gap_below_threshold_passes():
    record = loss_gap(1.0, 1.25, max_ratio=1.5, min_difference=0.1)
    assert record.name == "loss_gap"
    assert record.passed is True
    assert record.observed == pytest.approx(1.25)
    assert record.threshold == 1.5
    assert record.explanation == "final eval loss 1.25 / final train loss 1 = 1.25; <= 1.5"
    assert record.remedies == ()


def test_loss_gap_at_threshold_passes():
    record = loss_gap(1.0, 1.5, max_ratio=1.5, min_difference=0.1)
    assert record.passed is True
    assert record.observed == pytest.approx(1.5)
    assert "<= 1.5" in record.explanation


def test_loss_gap_above_threshold_fails_as_overfitting():
    record = loss_gap(0.5, 1.0, max_ratio=1.5, min_difference=0.1)
    assert record.passed is False
    assert record.observed == pytest.approx(2.0)
    assert record.threshold == 1.5
    assert "final eval loss 1 / final train loss 0.5 = 2 > 1.5 (max_loss_gap)" in (
        record.explanation
    )
    assert "0.5 above train loss" in record.explanation
    assert "overfitting" in record.explanation
    assert record.remedies == OVERFITTING_REMEDIES


def test_loss_gap_observed_is_rounded():
    record = loss_gap(3.0, 1.0, max_ratio=1.5, min_difference=0.1)
    assert record.observed == 0.3333
    assert record.passed is True


def test_loss_gap_large_ratio_of_near_zero_losses_passes():
    """Ten times a tiny loss is still a tiny gap: min_difference keeps the gate quiet."""
    record = loss_gap(0.001, 0.01, max_ratio=1.5, min_difference=0.05)
    assert record.passed is True
    assert record.observed == pytest.approx(10.0)
    assert "= 10" in record.explanation
    assert "the losses differ by only 0.009 (<= 0.05)" in record.explanation
    assert record.remedies == ()


def test_loss_gap_difference_at_min_difference_passes():
    record = loss_gap(0.25, 0.75, max_ratio=1.5, min_difference=0.5)
    assert record.passed is True
    assert record.observed == pytest.approx(3.0)
    assert "differ by only 0.5 (<= 0.5)" in record.explanation


def test_loss_gap_zero_train_loss_gives_inf():
    record = loss_gap(0.0, 0.5, max_ratio=1.5, min_difference=0.1)
    assert record.observed == "inf"
    assert record.passed is False
    assert "final train loss 0 = inf > 1.5" in record.explanation


def test_loss_gap_zero_losses_pass():
    record = loss_gap(0.0, 0.0, max_ratio=1.5, min_difference=0.1)
    assert record.observed == "inf"
    assert record.passed is True
    assert "differ by only 0 (<= 0.1)" in record.explanation


@pytest.mark.parametrize(("train", "evaluation"), [(None, 1.0), (1.0, None), (None, None)])
def test_loss_gap_without_losses_is_skipped(train, evaluation):
    record = loss_gap(train, evaluation, max_ratio=1.5, min_difference=0.1)
    assert record.passed is None
    assert record.observed is None
    assert record.threshold == 1.5
    assert record.explanation == "not judged: the run recorded no train and eval loss"


# --- rising_eval_loss ----------------------------------------------------------------


def test_rising_eval_loss_below_window_passes():
    record = rising_eval_loss([2.0, 1.5, 1.25, 1.5, 1.75], window=3)
    assert record.name == "rising_eval_loss"
    assert record.passed is True
    assert record.observed == 2
    assert record.threshold == 3
    assert record.explanation == (
        "eval loss rose at the last 2 evaluation(s) in a row, fewer than 3 "
        "(1.5 -> 1.25 -> 1.5 -> 1.75)"
    )
    assert record.remedies == ()


def test_rising_eval_loss_at_window_fails():
    record = rising_eval_loss([2.0, 1.0, 1.25, 1.5, 1.75], window=3)
    assert record.passed is False
    assert record.observed == 3
    assert record.threshold == 3
    assert "rose at each of the last 3 evaluations (1 -> 1.25 -> 1.5 -> 1.75)" in (
        record.explanation
    )
    assert "(limit 3)" in record.explanation
    assert "overfitting" in record.explanation
    assert record.remedies == OVERFITTING_REMEDIES


def test_rising_eval_loss_above_window_fails():
    record = rising_eval_loss([1.0, 2.0, 3.0, 4.0, 5.0], window=2)
    assert record.passed is False
    assert record.observed == 4
    assert "rose at each of the last 4 evaluations" in record.explanation


def test_rising_eval_loss_counts_only_the_trailing_rises():
    """A flat step ends the run of rises; earlier rises do not count."""
    record = rising_eval_loss([1.0, 2.0, 3.0, 3.0, 3.5], window=2)
    assert record.passed is True
    assert record.observed == 1


def test_rising_eval_loss_falling_passes_with_zero_rises():
    record = rising_eval_loss([3.0, 2.0, 1.0], window=1)
    assert record.passed is True
    assert record.observed == 0


def test_rising_eval_loss_window_zero_is_skipped():
    record = rising_eval_loss([1.0, 2.0, 3.0, 4.0], window=0)
    assert record.passed is None
    assert record.observed is None
    assert record.threshold == 0
    assert record.explanation == "not judged: turned off (rising_eval_loss_window 0)"


@pytest.mark.parametrize("losses", [[], [1.5]])
def test_rising_eval_loss_with_fewer_than_two_evaluations_is_skipped(losses):
    record = rising_eval_loss(losses, window=2)
    assert record.passed is None
    assert record.observed is None
    assert record.threshold == 2
    assert record.explanation == (f"not judged: {len(losses)} evaluation(s) recorded, need 2")


# --- metric_bounds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "passed", "relation"),
    [(0.75, True, ">="), (0.875, True, ">="), (0.5, False, "<")],
    ids=["at", "above", "below"],
)
def test_min_metric(value, passed, relation):
    (record,) = metric_bounds({"accuracy": value}, {"accuracy": 0.75}, {})
    assert record.name == "min_metric[accuracy]"
    assert record.passed is passed
    assert record.observed == pytest.approx(value)
    assert record.threshold == 0.75
    assert record.explanation == f"fine-tuned accuracy {value:.4g} {relation} 0.75"
    assert record.remedies == (() if passed else UNDERFITTING_REMEDIES)


@pytest.mark.parametrize(
    ("value", "passed", "relation"),
    [(0.25, True, "<="), (0.125, True, "<="), (0.5, False, ">")],
    ids=["at", "below", "above"],
)
def test_max_metric(value, passed, relation):
    (record,) = metric_bounds({"wer": value}, {}, {"wer": 0.25})
    assert record.name == "max_metric[wer]"
    assert record.passed is passed
    assert record.observed == pytest.approx(value)
    assert record.threshold == 0.25
    assert record.explanation == f"fine-tuned wer {value:.4g} {relation} 0.25"
    assert record.remedies == (() if passed else UNDERFITTING_REMEDIES)


def test_metric_bounds_rounds_observed_and_orders_floors_first():
    records = metric_bounds(
        {"accuracy": 0.123456789, "f1": 0.9}, {"accuracy": 0.1}, {"f1": 0.95, "accuracy": 0.2}
    )
    assert [r.name for r in records] == [
        "min_metric[accuracy]",
        "max_metric[f1]",
        "max_metric[accuracy]",
    ]
    assert records[0].observed == 0.123457
    assert [r.passed for r in records] == [True, True, True]


def test_metric_bounds_of_a_metric_not_computed_fails():
    (record,) = metric_bounds({"rouge1": 0.5, "bleu": 0.25}, {"accuracy": 0.8}, {})
    assert record.name == "min_metric[accuracy]"
    assert record.passed is False
    assert record.observed is None
    assert record.threshold == 0.8
    assert "accuracy was not computed" in record.explanation
    assert "(computed: bleu, rouge1)" in record.explanation
    assert "fix the gate's metric name" in record.explanation


def test_metric_bounds_without_bounds_gives_no_records():
    assert metric_bounds({"accuracy": 0.9}, {}, {}) == []


# --- improvement ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fine_tuned", "passed", "gain"),
    [(0.75, True, 0.25), (0.875, True, 0.375), (0.625, False, 0.125)],
    ids=["at", "above", "below"],
)
def test_improvement(fine_tuned, passed, gain):
    record = improvement(0.5, fine_tuned, "accuracy", 0.25)
    assert record.name == "min_improvement"
    assert record.passed is passed
    assert record.observed == pytest.approx(gain)
    assert record.threshold == 0.25
    assert f"accuracy: base 0.5, fine-tuned {fine_tuned:.4g}" in record.explanation
    if passed:
        assert f"{gain:.4g} higher, at least 0.25" in record.explanation
        assert record.remedies == ()
    else:
        assert f"only {gain:.4g} higher (needs 0.25)" in record.explanation
        assert "did not pay off" in record.explanation
        assert record.remedies == UNDERFITTING_REMEDIES


@pytest.mark.parametrize(
    ("fine_tuned", "passed", "gain"),
    [(1.5, True, 0.5), (1.0, True, 1.0), (1.75, False, 0.25)],
    ids=["at", "above", "below"],
)
def test_improvement_lower_is_better(fine_tuned, passed, gain):
    record = improvement(2.0, fine_tuned, "perplexity", 0.5, lower_is_better=True)
    assert record.passed is passed
    assert record.observed == pytest.approx(gain)
    assert f"perplexity: base 2, fine-tuned {fine_tuned:.4g}" in record.explanation
    assert f"{gain:.4g} lower" in record.explanation


def test_improvement_of_a_worse_model_is_negative():
    record = improvement(0.75, 0.5, "accuracy", 0.0)
    assert record.passed is False
    assert record.observed == pytest.approx(-0.25)
    assert "only -0.25 higher (needs 0.0)" in record.explanation


def test_improvement_at_a_decimal_threshold_passes():
    record = improvement(0.5, 0.6, "accuracy", 0.1)
    assert record.observed == pytest.approx(0.1)
    assert record.passed is True


def test_improvement_without_a_base_score_is_skipped():
    record = improvement(None, 0.9, "accuracy", 0.05)
    assert record.name == "min_improvement"
    assert record.passed is None
    assert record.observed is None
    assert record.threshold == 0.05
    assert record.explanation == "not judged: the base model was not scored"


# --- export_degradation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("exported", "passed", "loss"),
    [(0.75, True, 0.125), (0.625, False, 0.25), (0.8125, True, 0.0625)],
    ids=["at", "above", "below"],
)
def test_export_degradation(exported, passed, loss):
    record = export_degradation(0.875, exported, "accuracy", 0.125, target="cpu-int4")
    assert record.name == "max_export_degradation[cpu-int4]"
    assert record.passed is passed
    assert record.observed == pytest.approx(loss)
    assert record.threshold == 0.125
    assert f"accuracy: PyTorch 0.875, cpu-int4 {exported:.4g}" in record.explanation
    if passed:
        assert f"{loss:.4g} worse, within 0.125" in record.explanation
        assert record.remedies == ()
    else:
        assert f"{loss:.4g} worse than the PyTorch model, more than 0.125" in record.explanation
        assert "(max_export_degradation)" in record.explanation
        assert record.remedies == EXPORT_REMEDIES


def test_export_degradation_of_a_better_export_reads_zero_worse():
    record = export_degradation(0.75, 0.875, "accuracy", 0.0, target="cpu-int8")
    assert record.passed is True
    assert record.observed == pytest.approx(-0.125)
    assert "0 worse, within 0.0" in record.explanation


@pytest.mark.parametrize(
    ("exported", "passed", "loss"),
    [(2.5, True, 0.5), (3.0, False, 1.0), (2.25, True, 0.25)],
    ids=["at", "above", "below"],
)
def test_export_degradation_lower_is_better(exported, passed, loss):
    record = export_degradation(
        2.0, exported, "perplexity", 0.5, target="cpu-fp32", lower_is_better=True
    )
    assert record.name == "max_export_degradation[cpu-fp32]"
    assert record.passed is passed
    assert record.observed == pytest.approx(loss)
    assert f"perplexity: PyTorch 2, cpu-fp32 {exported:.4g}" in record.explanation


def test_export_degradation_at_a_decimal_threshold_passes():
    record = export_degradation(0.8, 0.75, "accuracy", 0.05, target="cpu-int4")
    assert record.observed == pytest.approx(0.05)
    assert record.passed is True


# --- records, failed() and GateFailure -----------------------------------------------


def test_as_dict():
    record = loss_gap(0.5, 1.0, max_ratio=1.5, min_difference=0.1)
    data = record.as_dict()
    assert set(data) == {"name", "observed", "threshold", "passed", "explanation", "remedies"}
    assert data["name"] == "loss_gap"
    assert data["observed"] == pytest.approx(2.0)
    assert data["threshold"] == 1.5
    assert data["passed"] is False
    assert data["explanation"] == record.explanation
    assert data["remedies"] == list(OVERFITTING_REMEDIES)
    assert isinstance(data["remedies"], list)


def test_as_dict_of_a_skipped_record():
    data = improvement(None, 0.5, "accuracy", 0.1).as_dict()
    assert data == {
        "name": "min_improvement",
        "observed": None,
        "threshold": 0.1,
        "passed": None,
        "explanation": "not judged: the base model was not scored",
        "remedies": [],
    }


def test_failed_keeps_only_failures_not_skips():
    passing = loss_gap(1.0, 1.0, max_ratio=1.5, min_difference=0.1)
    skipped = rising_eval_loss([], window=2)
    failing = improvement(0.5, 0.5, "accuracy", 0.25)
    assert failed([passing, skipped, failing]) == [failing]
    assert failed([passing, skipped]) == []


def test_gate_failure_names_every_failed_gate_with_values_and_remedies_once():
    records = [
        loss_gap(0.5, 1.0, max_ratio=1.5, min_difference=0.1),
        rising_eval_loss([1.0, 1.25, 1.5], window=2),
        improvement(0.5, 0.625, "accuracy", 0.25),
    ]
    error = GateFailure(records)
    message = str(error)
    assert error.failed == records
    assert message.startswith("3 gates failed:\n")
    assert "- loss_gap: final eval loss 1 / final train loss 0.5 = 2 > 1.5" in message
    assert "- rising_eval_loss: eval loss rose at each of the last 2 evaluations" in message
    assert "(1 -> 1.25 -> 1.5)" in message
    assert "- min_improvement: accuracy: base 0.5, fine-tuned 0.625" in message
    assert "What to try (reference guide):" in message
    lines = message.splitlines()
    for remedy in OVERFITTING_REMEDIES + UNDERFITTING_REMEDIES:
        assert lines.count(f"  * {remedy}") == 1
    assert len(lines) == 1 + 3 + 1 + len(OVERFITTING_REMEDIES) + len(UNDERFITTING_REMEDIES)
    # the overfitting remedies the guide gives, by their key words
    for words in (
        "--lora_r",
        "--lora_alpha",
        "dropout",
        "weight decay",
        "training data",
        "fewer steps",
        "early stopping",
    ):
        assert words in message


def test_gate_failure_of_one_gate():
    record = export_degradation(0.875, 0.5, "accuracy", 0.125, target="cpu-int4")
    message = str(GateFailure([record]))
    lines = message.splitlines()
    assert lines[0] == "1 gate failed:"
    assert lines[1] == f"- max_export_degradation[cpu-int4]: {record.explanation}"
    assert "0.375 worse" in lines[1]
    assert lines[2] == "What to try (reference guide):"
    assert lines[3:] == [f"  * {remedy}" for remedy in EXPORT_REMEDIES]
    assert "lora_r" not in message


def test_gate_failure_without_remedies_has_no_remedy_section():
    record = GateRecord("custom", 1, 2, False, "custom failed")
    assert str(GateFailure([record])) == "1 gate failed:\n- custom: custom failed"
