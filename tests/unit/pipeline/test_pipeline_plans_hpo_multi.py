"""Planning HPO trials and multi-adapter runs: everything is checked before any training."""

from __future__ import annotations

import json

import pytest

from slmops.errors import ConfigError
from slmops.pipeline.hpo import plan_trials
from slmops.pipeline.multi_adapter import plan_adapters
from slmops.testing import TONE_TEMPLATE, tiny_pipeline_data, tiny_pipeline_params


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, tiny_model_dir):
    return tiny_pipeline_data(tmp_path_factory.mktemp("plans") / "data", tiny_model_dir)


def where(tmp_path, data_root, dag_id):
    return {
        "dag_id": dag_id,
        "run_id": "r1",
        "artifacts_root": tmp_path / "artifacts",
        "data_roots": [data_root],
    }


def test_trials_are_planned_with_their_settings_and_short(tmp_path, data_root):
    search = {
        "search_strategy": {"type": "random", "num_trials": 3, "seed": 7},
        "search_space": {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "batch_size": {"type": "choice", "values": [2, 4]},
        },
    }
    conf = {**tiny_pipeline_params("hpo"), "search": search, "trial_max_steps": 12}
    plan = plan_trials(conf, **where(tmp_path, data_root, "slm_hpo"))
    assert len(plan["trials"]) == 3
    for index, trial in enumerate(plan["trials"]):
        assert trial["run_dir"].endswith(f"trials/{index:02d}")
        settings = trial["finetune"]
        assert settings["max_steps"] == 12 and settings["merge_adapter"] is False
        assert settings["learning_rate"] == trial["params"]["learning_rate"]
        assert settings["per_device_train_batch_size"] in (2, 4)
        assert trial["evaluate"]["compare_base"] is False
        assert trial["evaluate"]["validation_path"] == plan["validation"]["output_path"]
    assert plan["params"]["max_steps"] == 60  # the full run keeps the form's steps
    written = json.loads((tmp_path / "artifacts/runs/slm_hpo/r1/hpo/plan.json").read_text())
    assert written["trials"] == plan["trials"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": {"search_space": {}}}, "search_strategy"),
        ({"search_file": "/etc/passwd"}, "param search_file: /etc/passwd is outside"),
        ({"trial_max_steps": 0}, "trial_max_steps: Input should be greater than or equal to 1"),
        (
            {
                "search": {
                    "search_strategy": {"type": "grid"},
                    "search_space": {"lora_r": {"type": "int", "low": 0, "high": 4}},
                }
            },
            "search_space.lora_r.low",
        ),
    ],
)
def test_bad_searches_are_refused_before_any_trial(tmp_path, data_root, change, message):
    conf = {**tiny_pipeline_params("hpo"), **change}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        plan_trials(conf, **where(tmp_path, data_root, "slm_hpo"))
    assert not (tmp_path / "artifacts").exists()


def adapters(**second):
    shared = {"template_kind": "template", "text_template": TONE_TEMPLATE, "suite": "default"}
    return [
        {"name": "label", "data_files": ["tones.jsonl"], "label_field": "tone", **shared},
        {"name": "echo", "data_files": ["tones.jsonl"], **shared, **second},
    ]


def test_each_adapter_gets_its_own_plan_and_shares_training(tmp_path, data_root):
    conf = {
        **tiny_pipeline_params("multi", method="lora", lora_r=4),
        "adapters": adapters(),
        "multi_target": "cpu-fp32",
    }
    plan = plan_adapters(conf, **where(tmp_path, data_root, "slm_multi_adapter"))
    assert [a["name"] for a in plan["adapters"]] == ["label", "echo"]
    assert [c["label_field"] for c in plan["finetune"]] == ["tone", None]
    assert {c["lora_r"] for c in plan["finetune"]} == {4}
    assert all(
        c["output_path"].endswith(f"adapters/{n}/finetune")
        for c, n in zip(plan["finetune"], ["label", "echo"], strict=True)
    )
    assert plan["target"] == "cpu-fp32" and len(plan["validation"]) == len(plan["evaluate"]) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "dora"}, "param method: dora cannot share a base"),
        ({"adapters": adapters(name="label")}, "names repeat"),
        (
            {"adapters": adapters(data_files=["/etc/passwd"])},
            "/etc/passwd is outside the data roots",
        ),
        (
            {"adapters": adapters(colour="red")},
            "adapters.1: colour: Extra inputs are not permitted",
        ),
        ({"adapters": adapters()[:1]}, "adapters: List should have at least 2 items"),
        ({"multi_target": "gpu-int9"}, "multi_target"),
    ],
)
def test_bad_multi_adapter_params_are_refused(tmp_path, data_root, change, message):
    conf = {**tiny_pipeline_params("multi", method="lora"), "adapters": adapters(), **change}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        plan_adapters(conf, **where(tmp_path, data_root, "slm_multi_adapter"))
    assert not (tmp_path / "artifacts").exists()


def test_adapters_may_bring_the_templates_the_shared_params_do_not_name(tmp_path, data_root):
    """Neutral defaults: the shared form names no columns or template, each adapter its own."""
    shared = {
        key: value
        for key, value in tiny_pipeline_params("multi", method="lora").items()
        if key not in ("template_kind", "text_template", "label_field", "data_files")
    }
    own = [
        {"name": "label", "data_files": ["tones.jsonl"], "text_template": TONE_TEMPLATE},
        {"name": "echo", "data_files": ["tones.jsonl"], "text_template": "{phrase} -> {phrase}"},
    ]
    conf = {**shared, "adapters": own, "multi_target": "cpu-fp32"}
    plan = plan_adapters(conf, **where(tmp_path, data_root, "slm_multi_adapter"))
    templates = [c["text_template"] for c in plan["finetune"]]
    assert templates == [TONE_TEMPLATE, "{phrase} -> {phrase}"]
    assert all(c["use_chat_template"] is False for c in plan["finetune"])
