"""Pipeline configs (include/configs/pipelines) and the trigger-form builder's options."""

from __future__ import annotations

import pytest

from slmops.errors import ConfigError
from slmops.pipeline.configs.pipelines import load_pipeline, load_pipelines

# The least a pipeline config names: its published name, its data and how rows read.
MINIMAL = "{model_name: mine, data_files: [tones.jsonl], text_template: '{phrase} -> {tone}'}"


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_gives_dag_id_schedule_and_defaults(tmp_path):
    path = write(
        tmp_path,
        "my-task.yaml",
        "schedule: '0 4 * * 1'\ntags: [x]\nparams: {model_name: mine, lora_r: 8, "
        "data_files: [tones.jsonl], text_template: '{phrase} -> {tone}'}\n",
    )
    spec = load_pipeline(path)
    assert spec.resolved_dag_id(path) == "slm_my-task"
    assert spec.schedule == "0 4 * * 1" and not spec.on_data_change
    defaults = spec.param_defaults()
    assert defaults["lora_r"] == 8 and defaults["model_name"] == "mine"
    assert defaults["targets"] == ["cpu-int4"]  # the rest are the form's defaults
    assert defaults["template_kind"] == "template"  # chosen by the text_template
    assert defaults["suite"] == "default" and defaults["input_field"] is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: {lora_r: 0}\n", "params.lora_r: Input should be greater than or equal to 1"),
        ("params: {}\nschedul: daily\n", "schedul: Extra inputs are not permitted"),
        ("schedule: every day\nparams: {}\n", "schedule: 'every day' is not a valid 5-field cron"),
        # Five fields of cron characters, but no minute 99 or month 13.
        ("schedule: '99 3 * * 1'\nparams: {}\n", "'99 3 * * 1' is not a valid 5-field"),
        ("schedule: '0 3 1 13 *'\nparams: {}\n", "'0 3 1 13 *' is not a valid 5-field"),
        ("schedule: '@fortnightly'\nparams: {}\n", "'@fortnightly' is not a cron preset"),
        ("params: {targets: [cpu-int9]}\n", "params.targets.0: Input should be 'cpu-int4'"),
        ("dag_id: 'has space'\nparams: {}\n", "dag_id: String should match pattern"),
        ("- a list\n", "expected a mapping of settings at the top level"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_two_configs_with_one_dag_id_are_refused(tmp_path):
    write(tmp_path, "a.yaml", f"dag_id: same\nparams: {MINIMAL}\n")
    write(tmp_path, "b.yaml", f"dag_id: same\nparams: {MINIMAL}\n")
    with pytest.raises(ConfigError, match="dag_id same is also"):
        load_pipelines(tmp_path)


def test_the_form_takes_config_defaults_and_leaves_out_omitted_fields():
    from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
    from slmops_airflow.form import trigger_form

    params = trigger_form(
        PipelineParams,
        FORM_SECTIONS,
        defaults={"lora_r": 4, "targets": ["cpu-int8"]},
        omit=("promotion_margin",),
    )
    assert params["lora_r"].value == 4 and params["targets"].value == ["cpu-int8"]
    assert "promotion_margin" not in params
    assert params["lora_r"].schema["minimum"] == 1  # the limits stay


def test_a_form_without_defaults_asks_for_a_name_and_assumes_no_columns():
    from airflow.sdk.exceptions import ParamValidationError

    from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
    from slmops_airflow.form import trigger_form

    params = trigger_form(PipelineParams, FORM_SECTIONS)
    name = params["model_name"]
    assert name.value is None and name.schema["type"] == "string"  # required: no default
    with pytest.raises(ParamValidationError):
        name.resolve()
    assert name.resolve("intents") == "intents"
    kind = params["template_kind"]  # empty: chosen from text_template / text_field
    assert kind.schema["enum"] == ["chat", "template", "text", None]
    assert kind.resolve() is None and kind.resolve("text") == "text"
    with pytest.raises(ParamValidationError):
        kind.resolve("markdown")
    assert params["suite"].value == "default"
    for column in ("input_field", "output_field", "label_field", "system_prompt", "data_files"):
        assert params[column].value is None, column
