"""trigger_form: a pydantic model's fields as typed Airflow Params, limits, enums,
patterns, optional values and multi-selects included, in the order of their sections."""

from __future__ import annotations

from typing import Literal

import pytest
from airflow.sdk.exceptions import ParamValidationError
from pydantic import BaseModel, Field

from slmops_airflow import form
from slmops_airflow.form import trigger_form


class Settings(BaseModel):
    name: str = Field("tones", pattern=r"^[a-z]+$", description="published name")
    steps: int = Field(5, ge=1, le=10, description="optimizer steps")
    rate: float = Field(0.1, gt=0, lt=1, description="learning rate")
    kind: Literal["chat", "template"] = Field("chat", description="how rows become text")
    note: str | None = Field(None, description="an optional note")
    floor: float | None = Field(None, ge=0, description="an optional floor")
    picks: list[Literal["cpu", "gpu"]] = Field(["cpu"], min_length=1, description="targets")
    files: list[str] | None = Field(None, description="data files")
    mode: Literal["fast", "slow"] | None = Field(None, description="an optional choice")
    flag: bool = Field(True, description="a switch")


SECTIONS = {
    "Run": ("steps", "name"),
    "More": ("rate", "kind", "note", "floor", "picks", "files", "mode", "flag"),
}


@pytest.fixture
def params():
    """A fresh form per test: Airflow's Param keeps the last value it resolved."""
    return trigger_form(Settings, SECTIONS, defaults={"steps": 7}, omit=("flag",))


def test_params_follow_the_sections_and_leave_out_the_omitted(params):
    assert list(params) == [
        "steps",
        "name",
        "rate",
        "kind",
        "note",
        "floor",
        "picks",
        "files",
        "mode",
    ]
    assert [p.schema["section"] for p in params.values()] == ["Run"] * 2 + ["More"] * 7
    assert params["steps"].value == 7  # ``defaults`` replace the model's
    assert params["name"].value == "tones"


def test_each_param_keeps_type_limits_pattern_title_and_description(params):
    assert params["steps"].schema == {
        "title": "Steps",
        "section": "Run",
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }
    assert params["steps"].description == "optimizer steps"
    assert params["name"].schema["pattern"] == "^[a-z]+$"
    rate = params["rate"].schema
    assert (rate["type"], rate["exclusiveMinimum"], rate["exclusiveMaximum"]) == ("number", 0, 1)
    assert params["kind"].schema["enum"] == ["chat", "template"]


def test_optional_fields_accept_null_and_keep_their_limits(params):
    assert params["note"].schema["type"] == ["string", "null"]
    assert params["floor"].schema["type"] == ["number", "null"]
    assert params["floor"].schema["minimum"] == 0
    assert params["files"].schema["type"] == ["array", "null"]
    assert params["files"].schema["items"] == {"type": "string"}
    assert params["note"].resolve(None) is None
    with pytest.raises(ParamValidationError):
        params["floor"].resolve(-1.0)


def test_an_optional_drop_down_offers_empty_as_a_choice(params):
    schema = params["mode"].schema
    assert schema["type"] == ["string", "null"]
    assert schema["enum"] == ["fast", "slow", None]
    assert params["mode"].resolve(None) is None
    assert params["mode"].resolve("slow") == "slow"
    with pytest.raises(ParamValidationError):
        params["mode"].resolve("medium")


def test_a_list_of_enum_values_is_a_multi_select(params):
    schema = params["picks"].schema
    assert schema["type"] == "array"
    assert schema["examples"] == ["cpu", "gpu"]  # the form draws a multi-select from these
    assert schema["uniqueItems"] is True and schema["minItems"] == 1
    assert params["picks"].resolve(["gpu", "cpu"]) == ["gpu", "cpu"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("steps", 0),
        ("steps", 11),
        ("steps", "many"),
        ("name", "Has Spaces"),
        ("rate", 0),
        ("rate", 1.0),
        ("kind", "prefix"),
        ("picks", []),
        ("picks", ["tpu"]),
        ("picks", ["cpu", "cpu"]),
    ],
)
def test_the_form_refuses_what_the_model_refuses(params, name, value):
    with pytest.raises(ParamValidationError):
        params[name].resolve(value)


def test_a_required_field_has_no_default_and_must_be_filled():
    class Required(BaseModel):
        model_name: str = Field(pattern=r"^[a-z]+$", description="published name")

    param = trigger_form(Required, {"Run": ("model_name",)})["model_name"]
    assert param.value is None
    with pytest.raises(ParamValidationError):
        param.resolve(None)
    filled = trigger_form(Required, {"Run": ("model_name",)}, defaults={"model_name": "tones"})
    assert filled["model_name"].resolve() == "tones"


def test_the_pipeline_form_mirrors_pipeline_params():
    from airflow.sdk.definitions.param import ParamsDict

    from slmops.export.targets import TARGETS
    from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
    from slmops.training.config import Method

    defaults = {"model_name": "tones", "data_files": ["tones.jsonl"]}
    params = trigger_form(PipelineParams, FORM_SECTIONS, defaults=defaults, omit=("benchmark",))
    every = [name for names in FORM_SECTIONS.values() for name in names]
    assert list(params) == [name for name in every if name != "benchmark"]
    assert set(every) == set(PipelineParams.model_fields)  # no field left off the form

    steps = params["max_steps"].schema
    assert (steps["type"], steps["minimum"], steps["maximum"]) == ("integer", 1, 1_000_000)
    assert params["method"].schema["enum"] == list(Method.__args__)
    assert params["device"].schema["enum"] == ["auto", "cpu", "gpu"]
    assert params["model_name"].schema["pattern"] == r"^[a-z0-9][a-z0-9._-]{0,63}$"
    assert params["min_primary_metric"].schema["type"] == ["number", "null"]
    assert params["targets"].schema["examples"] == list(TARGETS)
    assert params["targets"].schema["section"] == "Export"
    assert params["targets"].schema["title"] == "ONNX targets"
    for name, param in params.items():
        assert param.description, f"{name} has no description"

    # The form's values, unchanged, are a valid run.
    values = ParamsDict(params).validate()
    assert values["model_name"] == "tones"
    checked = PipelineParams.model_validate(
        {**values, "text_template": "{phrase} => {tone}", "template_kind": "template"}
    )
    assert checked.max_steps == values["max_steps"]


def test_params_name_draft_07_and_validate_by_it(params):
    """The dialect keeps each validation cheap (benchmarks/dag_parse.py) and still checks
    every keyword the form uses: numeric exclusive limits, patterns, enums, nulls."""
    assert {p.schema["$schema"] for p in params.values()} == {form.SCHEMA_DIALECT}
    for name, bad in (("rate", 0), ("rate", 1), ("name", "Tones"), ("kind", "x"), ("steps", 11)):
        with pytest.raises(ParamValidationError):
            params[name].resolve(bad)
    assert params["note"].resolve(None) is None
    assert params["rate"].resolve(0.5) == 0.5
