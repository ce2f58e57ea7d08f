"""The slm_finetune plan: params checked, files confined to the data roots, stage settings."""

from __future__ import annotations

import json

import pytest

from slmops.errors import ConfigError
from slmops.pipeline import locations
from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
from slmops.pipeline.plan import evaluate_config, prepare, read_plan

RUN_ID = "manual__2026-11-29T10:00:00+00:00"


@pytest.fixture
def roots(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "tones.jsonl").write_text('{"phrase": "hi", "tone": "joyful"}\n')
    (data / "sub" / "more.jsonl").write_text('{"phrase": "oh", "tone": "sad"}\n')
    (tmp_path / "secret.jsonl").write_text("{}\n")
    return [data]


def make_plan(tmp_path, roots, **conf):
    return prepare(
        {"data_files": ["tones.jsonl"], **conf},
        dag_id="slm_finetune",
        run_id=RUN_ID,
        artifacts_root=tmp_path / "artifacts",
        data_roots=roots,
    )


def test_plan_lays_out_the_run_folder_and_each_stage(tmp_path, roots):
    plan = make_plan(tmp_path, roots, targets=["cpu-int4", "gpu-fp16", "cpu-int8"])
    run_dir = locations.run_dir(tmp_path / "artifacts", "slm_finetune", RUN_ID)
    assert run_dir.parent == tmp_path / "artifacts" / "runs" / "slm_finetune"
    assert run_dir.name.startswith("manual__2026-11-29T10_00_00+00_00-")
    assert plan["run_dir"] == str(run_dir)
    assert read_plan(run_dir) == json.loads(json.dumps(plan))
    assert plan["cpu_targets"] == ["cpu-int4", "cpu-int8"]
    assert plan["gpu_targets"] == ["gpu-fp16"]
    assert plan["train_on_gpu"] is False
    assert plan["finetune"]["data_files"] == [str(roots[0] / "tones.jsonl")]
    assert plan["finetune"]["output_path"] == str(run_dir / "finetune")
    assert plan["finetune"]["use_chat_template"] is True
    assert plan["validation"]["suite"] == "phrase_tones"
    assert plan["evaluate"]["run_path"] == plan["optimize"]["run_path"]
    assert plan["models_root"] == str(tmp_path / "artifacts" / "models")


def test_gpu_device_routes_training_to_the_gpu_queue(tmp_path, roots):
    assert make_plan(tmp_path, roots, device="gpu")["train_on_gpu"] is True


@pytest.mark.parametrize(
    "value, message",
    [
        ("/etc/passwd", "outside the data roots"),
        ("../secret.jsonl", "outside the data roots"),
        ("../../../../etc/passwd", "outside the data roots"),
        ("missing.jsonl", "does not exist"),
    ],
)
def test_data_files_outside_the_roots_are_refused_before_anything_is_written(
    tmp_path, roots, value, message
):
    with pytest.raises(ConfigError, match=rf"param data_files: .*{message}"):
        make_plan(tmp_path, roots, data_files=[value])
    assert not (tmp_path / "artifacts").exists()


def test_a_symlink_out_of_the_roots_is_refused(tmp_path, roots):
    (roots[0] / "escape.jsonl").symlink_to(tmp_path / "secret.jsonl")
    with pytest.raises(ConfigError, match="outside the data roots"):
        make_plan(tmp_path, roots, data_files=["escape.jsonl"])


def test_paths_inside_the_roots_resolve(tmp_path, roots):
    inside = str(roots[0] / "sub" / "more.jsonl")
    plan = make_plan(tmp_path, roots, data_files=["sub/more.jsonl", inside])
    assert plan["finetune"]["data_files"] == [inside, inside]


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"model_name_or_path": "/etc"}, "param model_name_or_path: /etc is outside"),
        ({"model_name_or_path": "../.."}, "param model_name_or_path"),
        ({"suite": "/etc/passwd.yaml"}, "param suite: /etc/passwd.yaml is outside"),
        ({"data_files": None, "data_name": "/etc"}, "param data_name: /etc is outside"),
        ({"data_files": None, "data_name": "../../x"}, "param data_name: ../../x is outside"),
        ({"suite": "nope"}, "param suite: suite 'nope': no such suite"),
        ({"lora_r": 0}, "lora_r: Input should be greater than or equal to 1"),
        ({"targets": ["cpu-int3"]}, "targets.0: Input should be 'cpu-int4'"),
        ({"model_name": "Bad Name"}, "model_name: String should match pattern"),
        ({"template_kind": "template"}, "template_kind template needs text_template"),
        ({"data_name": "org/set"}, "give data_files .* or data_name"),
        ({"unknown": 1}, "unknown: Extra inputs are not permitted"),
    ],
)
def test_invalid_params_are_named(tmp_path, roots, conf, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(tmp_path, roots, **conf)


def test_hub_ids_and_bundled_names_pass_through(tmp_path, roots):
    plan = make_plan(tmp_path, roots, model_name_or_path="HuggingFaceTB/SmolLM2-135M")
    assert plan["finetune"]["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M"
    plan = make_plan(tmp_path, roots, data_files=None, data_name="org/tones")
    assert plan["finetune"]["data_name"] == "org/tones"
    assert make_plan(tmp_path, roots)["finetune"]["model_name_or_path"] == "smollm2-135m-instruct"


def test_targets_are_deduplicated_and_comma_lists_accepted(tmp_path, roots):
    plan = make_plan(tmp_path, roots, targets="cpu-int4, cpu-int4,cpu-fp32")
    assert plan["cpu_targets"] == ["cpu-int4", "cpu-fp32"]


def test_template_kind_picks_one_format(tmp_path, roots):
    plan = make_plan(
        tmp_path, roots, template_kind="template", text_template="Q: {phrase}\\nA: {tone}"
    )
    data = plan["validation"]["data"]
    assert data["text_template"] == "Q: {phrase}\nA: {tone}"
    assert data["use_chat_template"] is False and "system_prompt" not in data


def test_run_folders_are_one_per_run_and_safe(tmp_path):
    root = tmp_path / "artifacts"
    first = locations.run_dir(root, "slm_finetune", "manual__2026-11-29T10:00:00+00:00")
    second = locations.run_dir(root, "slm_finetune", "manual__2026-11-29T10:00:01+00:00")
    assert first != second and first.parent == second.parent
    escaping = locations.run_dir(root, "d", "../../etc")
    assert escaping.parent == root / "runs" / "d" and ".." not in escaping.parts
    # Names that differ only in characters a folder name cannot hold stay apart.
    assert locations.run_dir(root, "d", "a:b") != locations.run_dir(root, "d", "a_b")
    assert locations.run_dir(root, "d", "a_b").name == "a_b"


def test_roots_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(locations.DATA_ROOTS_ENV, f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv(locations.ARTIFACTS_ENV, str(tmp_path / "art"))
    assert locations.data_roots() == [tmp_path / "a", tmp_path / "b"]
    assert locations.artifacts_root() == tmp_path / "art"
    assert locations.artifacts_root(str(tmp_path / "var")) == tmp_path / "var"


def test_form_sections_cover_every_param_once():
    named = [name for names in FORM_SECTIONS.values() for name in names]
    assert sorted(named) == sorted(PipelineParams.model_fields)


def test_min_primary_metric_becomes_the_primary_metric_floor(tone_run):
    config = evaluate_config({"run_path": str(tone_run), "min_primary_metric": 0.9})
    assert config.min_metric == {"accuracy": 0.9}
    assert evaluate_config({"run_path": str(tone_run)}).min_metric is None
