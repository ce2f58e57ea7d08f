"""ChallengeChampionOperator: the decision written into the run folder and returned; the
cases decided without scoring a model (no champion, no target in common)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.layout import RunLayout
from slmops_airflow.champion import ChallengeChampionOperator
from slmops_airflow.publish import PublishModelOperator


def challenge(run, ctx) -> dict:
    return ChallengeChampionOperator(task_id="challenge", run_dir=str(run)).execute(ctx)


def test_without_a_champion_the_challenger_is_promoted(finished_run, context, run_id):
    run = finished_run()
    result = challenge(run, context())
    reason = "no champion: nothing is published as tones yet"
    assert result == {"decision": "promote", "reason": reason, "gain": None}
    decision = json.loads(RunLayout(run).decision.read_text())
    assert decision == {
        "margin": 0.01,
        "model_name": "tones",
        "run_id": run_id,
        "decision": "promote",
        "reason": reason,
    }


def test_a_champion_with_no_target_in_common_is_replaced(finished_run, roots, context):
    champion = finished_run(run_id="first", target="cpu-fp32")
    PublishModelOperator(
        task_id="publish", run_dir=str(champion), models_root=str(roots.models)
    ).execute(context(run_id="first"))

    challenger = finished_run(run_id="second", target="cpu-int4")
    result = challenge(challenger, context(run_id="second"))
    assert result["decision"] == "promote" and result["gain"] is None
    assert result["reason"].startswith(
        "the champion (first) has no CPU target in common with this run (cpu-int4)"
    )
    decision = json.loads(RunLayout(challenger).decision.read_text())
    assert decision["champion"] == {
        "version": "first",
        "path": str(roots.models / "tones/versions/first"),
    }
    facts = PublishModelOperator(
        task_id="publish", run_dir=str(challenger), models_root=str(roots.models)
    ).execute(context(run_id="second"))
    assert facts["version"] == "second"  # the decision lets it through


def test_run_dir_is_templated(finished_run, context):
    run = finished_run()
    operator = ChallengeChampionOperator(task_id="challenge", run_dir="{{ params.run }}")
    assert tuple(operator.template_fields) == ("run_dir",)
    ctx = context(params={"run": str(run)})
    operator.render_template_fields(ctx)
    assert operator.execute(ctx)["decision"] == "promote"


def test_a_folder_without_a_plan_fails_clearly(context, tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    with pytest.raises(AirflowFailException, match="no plan; the prepare task writes it first"):
        challenge(folder, context())
    assert list(folder.iterdir()) == []  # no decision written
