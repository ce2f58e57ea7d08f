"""slmops.pipeline.approval: what a reviewer is asked, and what publish makes of the answer."""

from __future__ import annotations

import json

import pytest

from slmops.pipeline import approval


def test_no_decision_stops_nothing_and_approval_lets_publish_go(run_dir):
    assert approval.read(run_dir) is None and approval.refusal(run_dir) is None
    approval.record(run_dir, approval.APPROVED, by="ana")
    assert approval.refusal(run_dir) is None


def test_refusals_say_who_when_and_why(run_dir):
    approval.record(run_dir, approval.REJECTED, by="bo", reason=" too few rows ", at="T1")
    assert approval.refusal(run_dir) == "bo rejected publishing at T1: too few rows"
    approval.record(run_dir, approval.REJECTED, at="T2")
    assert approval.refusal(run_dir) == "a reviewer rejected publishing at T2 (no reason given)"
    approval.record(run_dir, approval.TIMED_OUT, at="T3")
    assert approval.refusal(run_dir) == "nobody approved publishing before the timeout (T3)"
    with pytest.raises(ValueError, match="expected one of approved, rejected, timed_out"):
        approval.record(run_dir, "maybe")


def test_the_request_shows_the_champion_beside_base_and_fine_tuned(run_dir):
    decision = {
        "decision": "promote",
        "reason": "the challenger beats the champion by 0.02",
        "champion": {"version": "v1", "metric": 0.96},
    }
    (run_dir / "champion").mkdir()
    (run_dir / "champion/decision.json").write_text(json.dumps(decision))
    subject, body = approval.request(run_dir, report_url="http://ui/slmops/runs/x/y")
    assert subject == "Publish tones? accuracy 0.05 -> 0.98"
    assert "| champion v1 | 0.96 |" in body
    assert "Champion/challenger: promote: the challenger beats the champion by 0.02." in body
    assert "[Open the run report](http://ui/slmops/runs/x/y)" in body


def test_a_decision_made_without_scores_still_says_why(run_dir):
    """A fail-closed keep (nothing to compare) has no champion score, but its reason."""
    decision = {
        "decision": "keep",
        "reason": "the champion (v1) has no CPU target in common with this run (cpu-int8)",
        "champion": {"version": "v1", "path": "tones/versions/v1"},
    }
    (run_dir / "champion").mkdir()
    (run_dir / "champion/decision.json").write_text(json.dumps(decision))
    body = approval.request(run_dir)[1]
    assert "| champion v1 |" not in body  # no score to show
    assert f"Champion/challenger: keep: {decision['reason']}." in body


def test_a_run_without_evaluation_says_so(run_dir):
    (run_dir / "finetune/evaluation/evaluation.json").unlink()
    assert approval.request(run_dir)[1] == "The run has no evaluation: nothing to review."
