"""PublishModelOperator: a passed run becomes a model version and an Asset event through
the models alias; a run that did not pass fails; a kept champion skips, with the reason."""

from __future__ import annotations

import json
import os

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.definitions.asset import AssetUniqueKey
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from slmops.layout import ModelStore, RunLayout
from slmops.pipeline import locations
from slmops.pipeline.model_versions import version_name
from slmops_airflow.publish import MODELS_ALIAS, PublishModelOperator


def publish(run, roots, ctx, **kwargs):
    operator = PublishModelOperator(
        task_id="publish", run_dir=str(run), models_root=str(roots.models), **kwargs
    )
    return operator.execute(ctx)


def test_the_outlet_is_the_models_alias():
    operator = PublishModelOperator(task_id="publish", run_dir="r", models_root="m")
    assert operator.outlets == [AssetAlias(MODELS_ALIAS)] == [AssetAlias("slmops-models")]
    assert tuple(operator.template_fields) == ("run_dir", "models_root")


def test_a_passed_run_is_published_and_its_asset_event_added(finished_run, roots, context, run_id):
    run = finished_run()
    ctx = context()
    facts = publish(run, roots, ctx)

    version = ModelStore(roots.models).version("tones", version_name("slm_finetune", run_id))
    assert facts == {
        "version": version.name,
        "path": str(version),
        "targets": ["cpu-int4"],
        "dataset_fingerprint": "f" * 64,
        "primary_metric": "accuracy",
        "base": 0.05,
        "fine_tuned": 0.98,
    }
    manifest = json.loads(ModelStore.manifest(version).read_text())
    assert manifest["uri"] == "slmops://models/tones"
    # A copy, read-only: an edit in the run folder never reaches the published model.
    published = version / "onnx/cpu-int4/model.onnx"
    assert not os.path.samefile(published, RunLayout(run).onnx("cpu-int4") / "model.onnx")
    assert published.stat().st_mode & 0o222 == 0
    latest = json.loads(ModelStore(roots.models).latest("tones").read_text())
    assert latest["version"] == version.name
    assert latest["path"] == f"tones/versions/{version.name}"  # relative to the models root

    events = ctx["outlet_events"][AssetAlias(MODELS_ALIAS)].asset_alias_events
    assert len(events) == 1
    event = events[0]
    assert event.source_alias_name == "slmops-models"
    assert event.dest_asset_key == AssetUniqueKey.from_asset(
        Asset(uri="slmops://models/tones", name="slmops://models/tones")
    )
    assert event.extra == facts


def test_a_custom_alias_carries_the_event(finished_run, roots, context):
    ctx = context()
    operator = PublishModelOperator(
        task_id="publish",
        run_dir=str(finished_run()),
        models_root=str(roots.models),
        alias="team-models",
    )
    assert operator.outlets == [AssetAlias("team-models")]
    operator.execute(ctx)
    assert len(ctx["outlet_events"][AssetAlias("team-models")].asset_alias_events) == 1
    assert ctx["outlet_events"][AssetAlias(MODELS_ALIAS)].asset_alias_events == []


def test_a_run_that_did_not_pass_fails_and_publishes_nothing(finished_run, roots, context, run_id):
    run = finished_run(passed=False)
    ctx = context()
    with pytest.raises(AirflowFailException) as failed:
        publish(run, roots, ctx)
    assert str(failed.value).startswith(
        f"run {run_id} is not published: evaluation, optimize[cpu-int4] did not pass"
    )
    assert f"{run / 'report'}/report.html" in str(failed.value)
    assert not roots.models.exists()
    assert len(ctx["outlet_events"]) == 0


def test_a_kept_champion_skips_with_the_reason(finished_run, roots, context, run_id, json_file):
    run = finished_run()
    reason = (
        "on the same 12 eval rows (cpu-int4): challenger accuracy 0.9, champion v1 0.95; a "
        "gain of -0.05 is below the promotion margin 0.01, so the champion stays published"
    )
    json_file(
        RunLayout(run).decision,
        {"decision": "keep", "reason": reason, "margin": 0.01, "model_name": "tones"},
    )
    ctx = context()
    with pytest.raises(AirflowSkipException) as skipped:
        publish(run, roots, ctx)
    assert str(skipped.value) == f"run {run_id} is not published: {reason}"
    assert not ModelStore(roots.models).versions("tones").exists()  # only the lock file
    assert len(ctx["outlet_events"]) == 0


def test_a_promoted_challenger_is_published_with_the_decision(
    finished_run, roots, context, json_file
):
    run = finished_run()
    decision = {"decision": "promote", "reason": "no champion: nothing is published as tones"}
    json_file(RunLayout(run).decision, decision)
    facts = publish(run, roots, context())
    manifest = json.loads(ModelStore.manifest(facts["path"]).read_text())
    assert manifest["champion_challenger"] == decision


def test_publishing_again_replaces_the_same_version_and_adds_one_event(
    finished_run, roots, context
):
    run = finished_run()
    publish(run, roots, context())
    ctx = context()
    again = publish(run, roots, ctx)
    assert [p.name for p in ModelStore(roots.models).versions("tones").iterdir()] == [
        again["version"]
    ]
    assert len(ctx["outlet_events"][AssetAlias(MODELS_ALIAS)].asset_alias_events) == 1


def test_run_dir_and_models_root_are_templated(finished_run, roots, context):
    run = finished_run()
    operator = PublishModelOperator(
        task_id="publish", run_dir="{{ params.run }}", models_root="{{ params.models }}"
    )
    ctx = context(params={"run": str(run), "models": str(roots.models)})
    operator.render_template_fields(ctx)
    assert (operator.run_dir, operator.models_root) == (str(run), str(roots.models))
    assert operator.execute(ctx)["path"].startswith(str(roots.models))


def test_a_folder_without_a_plan_fails_clearly(roots, context, run_id):
    folder = locations.run_dir(roots.artifacts, "slm_finetune", run_id)
    folder.mkdir(parents=True)
    with pytest.raises(AirflowFailException, match="no plan; the prepare task writes it first"):
        publish(folder, roots, context())
    assert not roots.models.exists()
