"""ChallengeChampionOperator: the decision written into the run folder and returned; the
cases decided without scoring a model (no champion, no target in common)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from slmops.layout import ModelStore, RunLayout
from slmops.pipeline.model_versions import version_name
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


def test_a_champion_with_no_target_in_common_is_kept(finished_run, roots, context):
    """No comparison, no promotion: the champion stays, and the reason says what to do."""
    champion = finished_run(run_id="first", target="cpu-fp32")
    PublishModelOperator(
        task_id="publish", run_dir=str(champion), models_root=str(roots.models)
    ).execute(context(run_id="first"))

    challenger = finished_run(run_id="second", target="cpu-int4")
    result = challenge(challenger, context(run_id="second"))
    assert result["decision"] == "keep" and result["gain"] is None
    assert "no CPU target in common" in result["reason"]
    with pytest.raises(AirflowSkipException, match="no CPU target in common"):
        PublishModelOperator(
            task_id="publish", run_dir=str(challenger), models_root=str(roots.models)
        ).execute(context(run_id="second"))
    latest = json.loads(ModelStore(roots.models).latest("tones").read_text())
    assert latest["version"] == version_name("slm_finetune", "first")


def test_run_dir_is_templated(finished_run, context):
    run = finished_run()
    operator = ChallengeChampionOperator(task_id="challenge", run_dir="{{ params.run }}")
    assert tuple(operator.template_fields) == ("run_dir",)
    ctx = context(params={"run": str(run)})
    operator.render_template_fields(ctx)
    assert operator.execute(ctx)["decision"] == "promote"


def test_a_folder_without_a_plan_fails_clearly(context, roots, run_id):
    from slmops.pipeline import locations

    folder = locations.run_dir(roots.artifacts, "slm_finetune", run_id)
    folder.mkdir(parents=True)
    with pytest.raises(AirflowFailException, match="no plan; the prepare task writes it first"):
        challenge(folder, context())
    assert list(folder.iterdir()) == []  # no decision written
