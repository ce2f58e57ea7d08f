"""The Airflow UI in a real browser (see conftest.py), against a real api-server,
scheduler and dag-processor: sign in; the DAG list shows the slmops DAGs with their tags;
slm_finetune's docs open from its page; its trigger form has the form's sections, readable
labels, descriptions and defaults; LoRA rank 0 typed into the form is clamped to the
minimum, 1, so no run's conf ever holds a rank below it; a tiny configuration typed into
the form (with require_approval on) is triggered and runs; it stops at the approval step,
where the reviewer sees the scores and sample answers and approves, and the run publishes;
the Fine-tuning page lists it with its numbers and its report opens with its plots; a
second run is rejected in the UI and publish is skipped.

The tests run in order on one browser and one stack (module scope). Every step saves a
screenshot; see conftest.py for where.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest
from airflow_rest import ANSWER_AFTER_S
from browser_page import xpath_literal

from slmops.data.config import decode_escapes
from slmops.pipeline.locations import run_dir
from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
from slmops.testing import tiny_pipeline_params

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DAG_ID = "slm_finetune"
# The hand-written DAGs (dags/*.py) and their tags; the config-driven ones
# (dags/slm_pipelines.py) are taken from the REST API.
HAND_WRITTEN = {
    "slm_data_watch": ("slmops", "data"),
    "slm_finetune": ("slmops", "fine-tuning", "onnx"),
    "slm_finetune_on_data_change": ("slmops", "fine-tuning", "onnx", "champion-challenger"),
    "slm_hpo": ("slmops", "fine-tuning", "hpo"),
    "slm_multi_adapter": ("slmops", "fine-tuning", "onnx", "multi-adapter"),
}
RANK = "lora_r"
RANK_MINIMUM = PipelineParams.model_json_schema()["properties"][RANK]["minimum"]
FORM = '[data-testid="config-form"]'
RUNNING = {"running", "success"}
# Runs that later tests follow: name -> run id.
RUNS: dict[str, str] = {}


@pytest.fixture(scope="module")
def dag(airflow):
    """slm_finetune, parsed and unpaused."""
    return airflow.ready_dag(DAG_ID)


@pytest.fixture(scope="module")
def form_params(airflow, dag) -> dict:
    """slm_finetune's params as Airflow serialized them: what the form is drawn from."""
    return airflow.request("GET", f"/api/v2/dags/{dag}/details")["params"]


def signed_in(page, airflow) -> None:
    if not page.logged_in():
        with page.step("sign in"):
            page.login("admin", airflow.password)


# --- The trigger form ------------------------------------------------------------------


def open_trigger_form(page, dag_id: str = DAG_ID):
    with page.step("open the trigger form"):
        page.open(f"/dags/{dag_id}")
        page.click(
            page.wait_for(
                css='button[data-testid="trigger-dag-button"]',
                what=f"Trigger button on {dag_id}'s page",
                timeout=60,
            )
        )
        page.wait_for(
            xpath="//*[@role='dialog' and @data-state='open']"
            f"//*[contains(normalize-space(.), 'Trigger Dag - {dag_id}')]",
            what=f"'Trigger Dag - {dag_id}' dialog",
        )
        page.wait_for(css=FORM, what="form of params (data-testid=config-form)")


def section_button(page, title: str):
    return page.wait_for(
        xpath=f"//*[@data-testid='config-form']//button[@data-part='item-trigger']"
        f"[normalize-space()={xpath_literal(title)}]",
        what=f"form section {title!r}",
    )


def open_section(page, title: str) -> None:
    """Open one accordion section of the form (opening one closes the others)."""
    button = section_button(page, title)
    if button.get_attribute("aria-expanded") != "true":
        page.click(button)
    page.until(
        lambda: section_button(page, title).get_attribute("aria-expanded") == "true",
        what=f"section {title!r} opened",
    )


def field_element(page, name: str, what: str):
    """The input of param ``name`` (for a drop-down, its hidden input)."""
    return page.wait_for(
        xpath=f"//*[@name='element_{name}' or @id='element_{name}']",
        what=f"field of param {name} ({what})",
    )


def field_root(page, name: str, what: str):
    from selenium.webdriver.common.by import By

    field_element(page, name, what)
    return page.driver.find_element(
        By.XPATH,
        f"(//*[@name='element_{name}' or @id='element_{name}'])[1]"
        "/ancestor::*[@data-scope='field' and @data-part='root'][1]",
    )


def widget(schema: dict) -> str:
    """How the form draws a param (Airflow's FlexibleForm): switch, select, multiselect,
    list (a textarea, one value a line), number or text."""
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "boolean" in types:
        return "switch"
    if "enum" in schema:
        return "select"
    if "array" in types:
        return "multiselect" if schema.get("examples") else "list"
    if types & {"integer", "number"}:
        return "number"
    return "text"


def shown_value(page, name: str, schema: dict):
    """What the form shows for param ``name``: a list, a bool, a float or text."""
    from selenium.webdriver.common.by import By

    kind = widget(schema)
    inputs = page.driver.find_elements(By.CSS_SELECTOR, f'[name="element_{name}"]')
    if not inputs:
        page.fail(f"field of param {name} ({kind}): no input or textarea named element_{name}")
    if kind == "switch":
        return inputs[0].is_selected()
    if kind == "multiselect":  # one hidden input a chosen value
        return [element.get_attribute("value") for element in inputs]
    if kind == "select":  # the chosen value's hidden input
        return inputs[0].get_attribute("value") or ""
    element = field_element(page, name, kind)
    value = element.get_attribute("value") or ""
    if kind == "list":
        return [line for line in value.splitlines() if line.strip()]
    if kind == "number":
        return float(value) if value else None
    return value


def as_shown(value, schema: dict):
    """A param's value as ``shown_value`` reads it."""
    kind = widget(schema)
    if kind == "switch":
        return bool(value)
    if kind in ("list", "multiselect"):
        return list(value or [])
    if kind == "number":
        return None if value is None else float(value)
    return "" if value is None else str(value)


def choose(page, name: str, value: str, *, clear: bool = False) -> None:
    """Pick ``value`` in the drop-down (react-select) of param ``name``; ``clear`` first
    removes what a multi-select holds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    container = f"#element_{name}"
    page.click(page.wait_for(css=container, what=f"drop-down of param {name}"))

    def box():  # react-select's typing box: in the DOM, not always "displayed"
        return page.driver.find_element(By.CSS_SELECTOR, f"{container} input[role=combobox]")

    if clear:
        for _ in range(10):
            if not shown_value(page, name, {"type": "array", "examples": [value]}):
                break
            box().send_keys(Keys.BACKSPACE)
    box().send_keys(value)
    option = page.wait_for(
        xpath=f"//*[contains(@id, '-option-')][normalize-space()={xpath_literal(value)}]",
        what=f"option {value!r} in the drop-down of param {name}",
    )
    page.click(option)


def set_param(page, name: str, value, schema: dict) -> None:
    """Set param ``name`` in the form the way a user does, and check the form holds it."""
    from selenium.webdriver.common.keys import Keys

    kind = widget(schema)
    what = f"param {name} ({kind})"
    if kind == "switch":
        if shown_value(page, name, schema) != bool(value):
            switch = page.wait_for(
                xpath=f"//label[@data-scope='switch'][.//input[@name='element_{name}']]",
                what=f"switch of {what}",
            )
            page.click(switch)
    elif kind == "select":
        choose(page, name, "null" if value is None else str(value))
    elif kind == "multiselect":
        for position, item in enumerate(value):
            choose(page, name, item, clear=position == 0)
    else:
        if value is None:
            text = ""
        elif kind == "list":
            text = "\n".join(value)
        elif kind == "number":
            text = format(value, "g")
        else:
            text = str(value)
        page.type_into(lambda: field_element(page, name, what), text, what=f"the field of {what}")
        if kind == "number":  # the number input settles (and clamps) on blur
            field_element(page, name, what).send_keys(Keys.TAB)
    page.until(
        lambda: shown_value(page, name, schema) == as_shown(value, schema),
        what=lambda: (
            f"{value!r} in the field of {what} after setting it "
            f"(it shows {shown_value(page, name, schema)!r})"
        ),
        timeout=10,
    )


def fill_form(page, form_params: dict, conf: dict) -> None:
    """Set, section by section, every param whose form default differs from ``conf``."""
    by_section: dict[str, list[str]] = {}
    for name, value in conf.items():
        param = form_params[name]
        if as_shown(param["value"], param["schema"]) != as_shown(value, param["schema"]):
            by_section.setdefault(param["schema"]["section"], []).append(name)
    for section, names in by_section.items():
        with page.step(f"fill section {section}"):
            open_section(page, section)
            for name in names:
                set_param(page, name, conf[name], form_params[name]["schema"])


def set_run_id(page, run_id: str) -> None:
    with page.step("set the run id"):
        open_section(page, "Advanced Options")
        page.type_into(
            lambda: page.wait_for(css="input[name=dagRunId]", what="Run ID field"),
            run_id,
            what="the Run ID field",
        )


def submit(page, run_id: str) -> None:
    with page.step("trigger"):
        button = page.wait_for(
            css='[data-testid="trigger-dag-submit"]', what="Trigger button of the form"
        )
        page.check(button.is_enabled(), "enabled Trigger button (it is disabled)")
        page.click(button)
        page.wait_for(text="Dag Run Triggered", what="'Dag Run Triggered' notice")
        page.until(
            lambda: urllib.parse.quote(run_id) in page.driver.current_url,
            what=f"redirect to the page of run {run_id}",
        )


def run_conf(airflow, dag: str, run_id: str) -> dict:
    path = f"/api/v2/dags/{dag}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    return airflow.request("GET", path)


# --- The tests -------------------------------------------------------------------------


def test_sign_in(page, airflow):
    with page.step("sign in"):
        page.login("admin", airflow.password)


def test_dag_list_shows_the_slmops_dags_with_their_tags(page, airflow, dag):
    signed_in(page, airflow)

    def parsed():
        query = {"tags": "slmops", "limit": 100}
        dags = airflow.request("GET", "/api/v2/dags", query=query)["dags"]
        found = {item["dag_id"]: sorted(tag["name"] for tag in item["tags"]) for item in dags}
        return found if set(HAND_WRITTEN) <= set(found) else None

    expected = airflow.wait(f"the dag-processor to parse {sorted(HAND_WRITTEN)}", parsed, 300)
    for dag_id, tags in HAND_WRITTEN.items():
        assert expected[dag_id] == sorted(tags), (dag_id, expected[dag_id])

    with page.step("the DAG list"):
        page.open("/dags")
        for dag_id, tags in sorted(expected.items()):
            card = page.wait_for(
                xpath=f"//*[@data-testid='dag-card'][.//a[@href='/dags/{dag_id}']]",
                what=f"card of DAG {dag_id}",
                timeout=60,
            )
            shown = [
                link.text.strip()
                for link in card.find_elements("css selector", "a[href*='tags=']")
                if link.text.strip()
            ]
            more = card.find_elements("css selector", "[data-testid=limited-items-expand-button]")
            hidden = int(re.sub(r"\D", "", more[0].text) or 0) if more else 0
            page.check(
                set(shown) <= set(tags) and len(shown) + hidden == len(tags),
                f"tags {tags} on the card of {dag_id} (it shows {shown}"
                + (f" and '+{hidden} more'" if hidden else "")
                + ")",
            )
            if len(tags) <= 3:  # all of them fit on the card
                page.check(sorted(shown) == tags, f"every tag {tags} on the card of {dag_id}")


def test_dag_docs_are_shown_on_its_page(page, airflow, dag):
    signed_in(page, airflow)
    doc_md = airflow.request("GET", f"/api/v2/dags/{dag}/details")["doc_md"]
    heading = doc_md.strip().splitlines()[0].lstrip("#").strip()
    stages = re.findall(r"\*\*(\w+)\*\*", doc_md)
    assert stages, f"no **stage** names in {dag}'s doc_md: {doc_md[:300]}"
    with page.step("the DAG's page"):
        page.open(f"/dags/{dag}")
        docs = page.wait_for(
            css='button[data-testid="markdown-button"]',
            what="'Dag Docs' button (data-testid=markdown-button)",
            timeout=60,
        )
    with page.step("the DAG's docs"):
        page.click(docs)
        dialog = "//*[@role='dialog' and @data-state='open']"
        page.wait_for(
            xpath=f"{dialog}//*[normalize-space()='Dag Documentation']",
            what="'Dag Documentation' dialog",
        )
        page.wait_for(
            xpath=f"{dialog}//h3[normalize-space()={xpath_literal(heading)}]",
            what=f"the docs' heading {heading!r} (doc_md rendered as markdown)",
        )
        bold = [element.text for element in page.find_all(xpath=f"{dialog}//strong")]
        page.check(
            set(stages) <= set(bold), f"the stages {stages} in bold in the docs (bold: {bold})"
        )


def test_trigger_form_sections_labels_descriptions_defaults(page, airflow, form_params):
    signed_in(page, airflow)
    sections = list(dict.fromkeys(param["schema"]["section"] for param in form_params.values()))
    assert sections == list(FORM_SECTIONS), (sections, list(FORM_SECTIONS))
    open_trigger_form(page)
    with page.step("the form's sections"):
        for section in [*sections, "Advanced Options"]:
            section_button(page, section)
    for section in sections:
        with page.step(f"section {section}"):
            open_section(page, section)
            for name, param in form_params.items():
                if param["schema"]["section"] != section:
                    continue
                schema, title = param["schema"], param["schema"]["title"]
                root = field_root(page, name, title)
                label = root.find_element("css selector", "[data-part=label]").text
                label = label.replace("*", "").strip()
                page.check(label == title, f"label {title!r} for param {name} (it is {label!r})")
                page.check(
                    label != name and "_" not in label,
                    f"a readable label for param {name}, not its name (it is {label!r})",
                )
                helper = root.find_elements("css selector", "[data-part=helper-text]")
                shown = " ".join(helper[0].text.split()) if helper else ""
                page.check(
                    shown == " ".join(param["description"].split()),
                    f"description of {name} {param['description']!r} (it shows {shown!r})",
                )
                value = shown_value(page, name, schema)
                page.check(
                    value == as_shown(param["value"], schema),
                    f"default {param['value']!r} of {name} (it shows {value!r})",
                )
    # The defaults the issue names, spelled out.
    assert form_params["model_name"]["value"] == "phrase-tones"
    assert form_params[RANK]["value"] == 16
    assert form_params["learning_rate"]["value"] == pytest.approx(3e-4)


def test_rank_zero_is_clamped_to_the_minimum(page, airflow, dag, form_params):
    """Airflow's number field (a Chakra/zag NumberInput with the param's minimum and
    maximum) clamps an out-of-range value when the field loses focus: 0 becomes 1, with
    no error message, and Trigger stays enabled. So the form submits 1, never 0."""
    signed_in(page, airflow)
    run_id = f"ui_rank_zero_{int(time.time())}"
    schema = form_params[RANK]["schema"]
    assert schema["minimum"] == RANK_MINIMUM == 1, schema
    open_trigger_form(page)
    # A cheap run of the tiny model: LoRA, a few steps.
    conf = tiny_pipeline_params("ui-rank-zero", method="lora", max_steps=4, eval_steps=2)
    fill_form(page, form_params, ui_conf(form_params, conf))
    set_run_id(page, run_id)
    what = "param lora_r (number)"

    with page.step("type LoRA rank 0"):
        open_section(page, "Training")
        page.type_into(lambda: field_element(page, RANK, what), "0", what="the LoRA rank field")
    with page.step("LoRA rank 0 is clamped on blur"):
        field_element(page, RANK, what).send_keys("\t")
        page.until(
            lambda: shown_value(page, RANK, schema) == RANK_MINIMUM,
            what=lambda: (
                f"LoRA rank clamped to its minimum {RANK_MINIMUM} after typing 0 "
                f"(it shows "
                f"{shown_value(page, RANK, schema)!r}; if the form now refuses 0 with an error "
                "instead, change this test to assert that error)"
            ),
        )
        root = field_root(page, RANK, what)
        page.check(
            root.get_attribute("data-invalid") is None,
            "no error on the LoRA rank field after the clamp",
        )
    with page.step("type LoRA rank 0 again, then Trigger at once"):
        page.type_into(lambda: field_element(page, RANK, what), "0", what="the LoRA rank field")
    submit(page, run_id)

    run = run_conf(airflow, dag, run_id)
    assert run["conf"][RANK] == RANK_MINIMUM, f"run {run_id} conf: {run['conf']}"
    runs = airflow.request("GET", f"/api/v2/dags/{dag}/dagRuns", query={"limit": 100})
    below = {
        item["dag_run_id"]: item["conf"].get(RANK)
        for item in runs["dag_runs"]
        if (item["conf"] or {}).get(RANK, RANK_MINIMUM) < RANK_MINIMUM
    }
    assert not below, f"runs whose conf holds a LoRA rank below {RANK_MINIMUM}: {below}"


def ui_conf(form_params: dict, conf: dict) -> dict:
    """``conf`` as typed into the form: the text template's newlines as the two
    characters \\n (a one-line field; the pipeline decodes them), and the demo's other
    fields (chat columns, system prompt) back to the params' defaults."""
    fields = PipelineParams.model_fields
    typed = {
        name: fields[name].default
        for name in form_params
        if name not in conf and name in fields and not fields[name].is_required()
    }
    typed = {
        name: value
        for name, value in typed.items()
        if as_shown(value, form_params[name]["schema"])
        != as_shown(form_params[name]["value"], form_params[name]["schema"])
    }
    typed.update(conf)
    if typed.get("text_template"):
        typed["text_template"] = typed["text_template"].replace("\n", "\\n")
    return typed


def test_tiny_configuration_is_triggered_from_the_form(page, airflow, dag, form_params):
    signed_in(page, airflow)
    run_id = f"ui_tiny_{int(time.time())}"
    conf = tiny_pipeline_params("ui-tiny", require_approval=True)
    typed = ui_conf(form_params, conf)
    open_trigger_form(page)
    fill_form(page, form_params, typed)
    set_run_id(page, run_id)
    submit(page, run_id)

    run = run_conf(airflow, dag, run_id)
    got = run["conf"]
    assert decode_escapes(got["text_template"]) == conf["text_template"], got
    wrong = {
        name: (got.get(name), value)
        for name, value in typed.items()
        if name != "text_template" and got.get(name) != value
    }
    assert not wrong, f"run {run_id} conf differs from what was typed (got, typed): {wrong}"

    def started():
        state = run_conf(airflow, dag, run_id)["state"]
        assert state != "failed", airflow.diagnose(dag, run_id)
        return state if state in RUNNING else None

    airflow.wait(f"run {run_id} to start running", started, timeout=180)
    RUNS["approved"] = run_id
    with page.step("the run's page"):
        page.open(f"/dags/{dag}/runs/{urllib.parse.quote(run_id)}")
        page.wait_for(text=run_id, what=f"run {run_id} on its page", timeout=60)
        page.wait_for(
            xpath="//*[normalize-space()='Running' or normalize-space()='Success']",
            what=f"the state of run {run_id} (Running or Success)",
            timeout=60,
        )


# --- Approval, the Fine-tuning page, the report ------------------------------------------


def awaiting_approval(airflow, dag: str, run_id: str) -> None:
    def asking():
        states = airflow.task_instances(dag, run_id)
        assert "failed" not in states.values(), airflow.diagnose(dag, run_id)
        return states.get("approve") == "awaiting_input"

    airflow.wait(f"run {run_id} to ask for approval", asking, timeout=900)
    # As a person would, and as AirflowRest.answer_approval does: an answer that lands
    # before the scheduler has handled the report of the process that parked the task is
    # taken by Airflow 3.3 for a lost task, retried, and asked again (seen in CI here).
    time.sleep(ANSWER_AFTER_S)


def answer_in_the_ui(page, dag: str, run_id: str, option: str, reason: str) -> None:
    """Open the approve task's Required Actions, check what the reviewer is shown, type
    the reason and press ``option``."""
    from selenium.webdriver.common.by import By

    with page.step(f"the approval request of {run_id}"):
        page.open(f"/dags/{dag}/runs/{urllib.parse.quote(run_id)}/tasks/approve/required_actions")
        page.wait_for(text="Publish ui-", what="the approval request's subject (Publish NAME?)")
        page.wait_for(xpath="//td[normalize-space()='fine-tuned']", what="the scores table")
        page.wait_for(xpath="//td[normalize-space()='loss_gap']", what="the gates table")
        samples = page.until(
            lambda: page.driver.find_elements(
                By.XPATH, "//table[.//th[contains(., 'prompt (end)')]]//tbody/tr"
            ),
            what="the sample answers table (prompt, reference, base, fine-tuned)",
        )
        page.check(len(samples) >= 5, f"at least 5 sample answers (it shows {len(samples)})")
        page.wait_for(
            xpath="//a[contains(@href, '/slmops/runs/')]", what="the link to the run report"
        )
    with page.step(f"{option} {run_id}"):
        page.type_into(
            lambda: page.wait_for(css="[name=element_reason]", what="the Reason field"),
            reason,
            what="the Reason field",
        )
        button = page.wait_for(css=f'[data-testid="hitl-option-{option}"]', what=option)
        page.check(button.is_enabled(), f"an enabled {option} button (it is disabled)")
        fields = page.driver.find_elements("css selector", "[name^=element_]")
        names = sorted(field.get_attribute("name") for field in fields)
        page.check(names == ["element_reason"], f"the reason as the only field: {names}")
        page.click(button)
        page.until(
            lambda: (
                not page.wait_for(
                    css=f'[data-testid="hitl-option-{option}"]', what=option
                ).is_enabled()
            ),
            what=f"the request answered ({option} no longer offered)",
        )


def finished(airflow, dag: str, run_id: str) -> tuple[dict, dict]:
    run = airflow.wait_for_run(dag, run_id, timeout=600)
    assert run["state"] == "success", airflow.diagnose(dag, run_id)
    summary = run_dir(airflow.artifacts, dag, run_id) / "report" / "summary.json"
    return airflow.task_instances(dag, run_id), json.loads(summary.read_text(encoding="utf-8"))


def test_the_reviewer_sees_the_samples_and_approves_in_the_ui(page, airflow, dag):
    run_id = RUNS.get("approved")
    assert run_id, "the run triggered from the form (test_tiny_configuration...) is missing"
    signed_in(page, airflow)
    awaiting_approval(airflow, dag, run_id)
    answer_in_the_ui(page, dag, run_id, "Approve", "scores hold up")

    states, summary = finished(airflow, dag, run_id)
    assert states["approve"] == states["publish"] == "success", states
    assert summary["approval"]["decision"] == "approved", summary["approval"]
    assert (
        summary["approval"]["by"] == "admin" and summary["approval"]["reason"] == "scores hold up"
    )
    assert (airflow.artifacts / "models" / "ui-tiny" / "latest.json").is_file()


def open_fine_tuning_page(page) -> None:
    """The Fine-tuning entry of the UI's navigation: the slmops page in the UI's frame."""
    page.open("/")
    link = page.wait_for(
        xpath="//*[@data-testid='nav-sidebar']//a[contains(@href, 'plugin/fine-tuning')]",
        what="'Fine-tuning' in the navigation",
    )
    page.click(link)
    frame = page.wait_for(css="iframe", what="the Fine-tuning page's frame", timeout=60)
    page.driver.switch_to.frame(frame)
    page.wait_for(css="table#runs", what="the table of runs on the Fine-tuning page")


def run_row(page, run_id: str):
    return page.wait_for(
        css=f'tr.run[data-run-id="{run_id}"]', what=f"run {run_id} in the Fine-tuning list"
    )


def test_the_fine_tuning_page_lists_the_run_and_its_report_shows_the_plots(page, airflow, dag):
    run_id = RUNS.get("approved")
    assert run_id, "the approved run is missing"
    signed_in(page, airflow)
    try:
        with page.step("the Fine-tuning page"):
            open_fine_tuning_page(page)
            row = run_row(page, run_id).text
            for shown in ("ui-tiny", "passed", "approved by admin", "cpu-fp32", "MB", "tok/s"):
                page.check(shown in row, f"{shown!r} in the row of run {run_id}: {row!r}")
            page.check(
                re.search(r"accuracy\s+\S+ → \S+", row), f"the metric base → fine-tuned: {row!r}"
            )
            page.check("v " in row and "latest" in row, f"published, latest: {row!r}")
        with page.step("the run report inside the UI"):
            page.click(run_row(page, run_id).find_element("css selector", "a.report-link"))
            for section in ("stages", "training", "evaluation", "targets", "approval"):
                page.wait_for(css=f"#{section}", what=f"the report's section #{section}")
            page.wait_for(text="approved by admin", what="the approval in the report")
            images = page.until(
                lambda: page.driver.find_elements("css selector", "img"),
                what="plots in the report",
            )
            loaded = page.driver.execute_script(
                "return Array.from(document.images).map(i => [i.alt, i.complete && "
                "i.naturalWidth > 0])"
            )
            page.check(len(images) >= 2, f"the loss curves and a confusion matrix: {loaded}")
            page.check(all(ok for _, ok in loaded), f"every plot loaded: {loaded}")
        with page.step("a link of the report opens the run's file"):
            page.click(
                page.wait_for(
                    xpath="//a[normalize-space()='validation.json']",
                    what="the validation.json link",
                )
            )
            page.wait_for(text='"passed"', what="validation.json's content")
    finally:
        page.driver.switch_to.default_content()


def test_a_second_run_is_rejected_in_the_ui_and_publish_is_skipped(page, airflow, dag):
    signed_in(page, airflow)
    conf = tiny_pipeline_params("ui-rejected", require_approval=True)
    run_id = airflow.trigger(dag, conf)
    awaiting_approval(airflow, dag, run_id)
    answer_in_the_ui(page, dag, run_id, "Reject", "needs more rows per tone")

    states, summary = finished(airflow, dag, run_id)
    assert states["approve"] == "success" and states["publish"] == "skipped", states
    assert summary["approval"]["decision"] == "rejected", summary["approval"]
    assert summary["approval"]["reason"] == "needs more rows per tone"
    assert not (airflow.artifacts / "models" / "ui-rejected").exists()
    try:
        with page.step("the rejected run on the Fine-tuning page"):
            open_fine_tuning_page(page)
            row = run_row(page, run_id).text
            page.check("rejected by admin" in row, f"'rejected by admin' in its row: {row!r}")
            page.check("latest" not in row, f"not published: {row!r}")
    finally:
        page.driver.switch_to.default_content()
