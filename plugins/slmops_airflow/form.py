"""A pydantic model's JSON schema as Airflow Params: the DAG's typed trigger form.

Each field becomes a Param with its type, limits, enum, pattern, default and
description; optional fields accept null (an optional drop-down offers it as a choice);
a list of enum values becomes a multi-select. A required field without a default is
left empty, so the form asks for it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

# JSON-schema keywords the form and Airflow's validation understand.
_KEPT = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "items",
    "minItems",
    "uniqueItems",
)
# Airflow validates a Param against its schema whenever it resolves one, and it resolves
# every Param of every task each time a DAG is serialized (each parse, in the
# dag-processor); jsonschema first checks the schema itself against its meta-schema.
# Without "$schema" that is the 2020-12 meta-schema, about 3x the cost of draft-07's,
# which has every keyword the form uses (benchmarks/dag_parse.py).
SCHEMA_DIALECT: str | None = "http://json-schema.org/draft-07/schema#"


def trigger_form(
    model: type,
    sections: dict[str, tuple[str, ...]],
    *,
    defaults: dict[str, Any] | None = None,
    omit: tuple[str, ...] = (),
) -> dict[str, Param]:
    """Params for ``model``'s fields, in the order and sections of ``sections``;
    ``defaults`` replace the model's (a pipeline config's), ``omit`` leaves fields out of
    the form (they keep the model's default)."""
    properties = model.model_json_schema()["properties"]
    defaults = defaults or {}
    params = {}
    for section, names in sections.items():
        for name in names:
            if name in omit:
                continue
            prop = properties[name]
            if name in defaults:
                prop = {**prop, "default": defaults[name]}
            params[name] = _param(prop, section)
    return params


def _param(prop: dict[str, Any], section: str) -> Param:
    schema = _without_null(prop)
    kwargs = {key: schema[key] for key in _KEPT if key in schema}
    if prop is not schema:  # Optional[...]: the form may leave it empty
        kwargs["type"] = [kwargs.get("type", "string"), "null"]
        if "enum" in kwargs:  # a drop-down: empty is one of its choices
            kwargs["enum"] = [*kwargs["enum"], None]
    if SCHEMA_DIALECT:
        kwargs["$schema"] = SCHEMA_DIALECT
    choices = schema.get("items", {}).get("enum")
    if choices:  # the form draws a multi-select from "examples"
        kwargs["examples"] = choices
        kwargs["uniqueItems"] = True
    return Param(
        prop.get("default"),
        description=prop.get("description"),
        title=prop.get("title"),
        section=section,
        **kwargs,
    )


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of ``anyOf: [X, {type: null}]``, else ``prop`` itself."""
    options = [option for option in prop.get("anyOf", ()) if option.get("type") != "null"]
    return options[0] if len(options) == 1 and len(prop["anyOf"]) == 2 else prop
