"""ApprovePublishOperator: skips unless the run asks for a review; otherwise writes the
report, asks (Airflow's awaiting_input state) with the numbers a reviewer needs, and
records the answer that publish then obeys."""

from __future__ import annotations

import datetime
import json

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskAwaitingInput

from slmops.layout import RunLayout
from slmops.pipeline import approval
from slmops_airflow.approval import ApprovePublishOperator
from slmops_airflow.publish import PublishModelOperator


def operator(run) -> ApprovePublishOperator:
    return ApprovePublishOperator(task_id="approve", run_dir=str(run))


def answer(option: str, *, reason: str = "", user: dict | None = None, timedout=False) -> dict:
    return {
        "chosen_options": [option],
        "params_input": {"reason": reason},
        "responded_at": datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.UTC),
        "responded_by_user": user,
        "timedout": timedout,
    }


class _TaskInstance:
    id = "0190b2c0-0000-7000-8000-000000000001"


def test_without_require_approval_it_skips_and_writes_nothing(finished_run, context):
    run = finished_run()
    with pytest.raises(AirflowSkipException, match="require_approval is off"):
        operator(run).execute(context())
    assert approval.read(run) is None
    assert not RunLayout(run).report.exists()


def test_it_writes_the_report_then_asks_with_gates_scores_and_samples(
    finished_run, context, monkeypatch
):
    run = finished_run(require_approval=True, approval_timeout_hours=2)
    requests = []
    monkeypatch.setattr(
        "airflow.providers.standard.operators.hitl.upsert_hitl_detail",
        lambda **request: requests.append(request),
    )
    task = operator(run)
    with pytest.raises(TaskAwaitingInput) as waiting:
        task.execute(context(task_instance=_TaskInstance()))

    assert waiting.value.timeout == datetime.timedelta(hours=2)  # then the defaults answer
    (request,) = requests
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert request["subject"] == "Publish tones? accuracy 0.05 -> 0.98"
    body = request["body"]
    assert "| base | 0.05 |" in body and "| fine-tuned | 0.98 |" in body
    assert "| loss_gap | PASS | loss_gap explained |" in body
    assert body.count("| joyful | – | joyful |") == approval.SAMPLE_ROWS  # 8 of the 12
    assert "phrase 0 \\| with a pipe" in body  # a pipe in the data keeps the table whole
    assert "/slmops/runs/slm_finetune/manual__2026-11-29T10%3A00%3A00%2B00%3A00" in body
    # The reviewer's form has the reason only, not the DAG's params.
    assert list(request["params"]) == ["reason"]
    assert request["params"]["reason"]["value"] is None
    # The reviewer reads the report the link opens: it is there before the question.
    assert RunLayout(run).report_html.is_file()


@pytest.mark.parametrize(
    ("event", "decision", "by", "published"),
    [
        (answer("Approve", reason="ok", user={"id": "1", "name": "ana"}), "approved", "ana", True),
        (
            answer("Reject", reason="too few rows", user={"id": "2", "name": "bo"}),
            "rejected",
            "bo",
            False,
        ),
        (answer("Reject", timedout=True), "timed_out", None, False),
    ],
)
def test_the_answer_is_recorded_and_publish_obeys_it(
    finished_run, context, roots, event, decision, by, published
):
    run = finished_run(require_approval=True)
    entry = operator(run).execute_complete(context(), event)
    assert entry == approval.read(run)
    assert (entry["decision"], entry["by"]) == (decision, by)
    assert json.loads(RunLayout(run).approval.read_text())["approved"] is published

    publish = PublishModelOperator(
        task_id="publish", run_dir=str(run), models_root=str(roots.models)
    )
    if published:
        assert publish.execute(context())["version"]
        return
    with pytest.raises(AirflowSkipException) as skipped:
        publish.execute(context())
    if decision == "rejected":
        assert "bo rejected publishing at" in str(skipped.value)
        assert "too few rows" in str(skipped.value)
    else:
        assert "nobody approved publishing before the timeout" in str(skipped.value)
    assert not (roots.models / "tones").exists()
