"""The run report (RUN_DIR/report/report.html): working links, inline plots, section ids,
parity and speed per target, the champion and approval decisions, user templates."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from run_folder import RUN_ID, finished_run, write_json

from slmops import plots
from slmops.errors import ConfigError
from slmops.pipeline import approval
from slmops.pipeline.summary import (
    SECTION_IDS,
    TEMPLATES_DIR,
    TEMPLATES_ENV,
    key_numbers,
    write,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert('x')</script>"


def update_json(path: Path, changes: dict) -> None:
    write_json(path, {**json.loads(path.read_text()), **changes})


@pytest.fixture(scope="module")
def plot_files(tmp_path_factory) -> Path:
    """The evaluation stage's plots, drawn once by the same functions it uses."""
    folder = tmp_path_factory.mktemp("plots")
    train = [{"step": step, "loss": 3.0 / step} for step in range(1, 21)]
    evaluations = [{"step": step, "eval_loss": 3.2 / step} for step in (5, 10, 15, 20)]
    plots.loss_curves(train, evaluations, folder / "loss_curves.png", best_step=20)
    for name in ("fine_tuned", "base"):
        plots.confusion_matrix(
            [[5, 1], [0, 6]],
            ["positive", "negative"],
            ["positive", "negative"],
            folder / f"confusion_{name}.png",
            title=f"{name} model",
        )
    return folder


@pytest.fixture
def run_dir(tmp_path, plot_files, monkeypatch):
    """run_folder.finished_run plus what else the report draws on: training numbers, the
    plots, a sample answer with markup in it, token agreement, the PyTorch timing, the
    stages' own reports and a champion decision (approval is up to each test)."""
    monkeypatch.delenv(TEMPLATES_ENV, raising=False)
    run = finished_run(tmp_path)
    update_json(
        run / "finetune/training_metrics.json",
        {"final_train_loss": 0.1234567, "best_eval_loss": 0.2, "tokens_per_second": 5123.4},
    )
    evaluation = run / "finetune/evaluation"
    sample = {
        "prompt": f"<|user|>Classify: {SCRIPT} great!<|assistant|>",
        "reference": "positive",
        "base_answer": "maybe",
        "fine_tuned_answer": "positive",
    }
    update_json(evaluation / "evaluation.json", {"samples": [sample]})
    (evaluation / "report.html").write_text("<!DOCTYPE html><p>evaluation</p>")
    for png in plot_files.iterdir():
        shutil.copy(png, evaluation / png.name)
    target = run / "finetune/onnx/cpu-int4"
    agreement = {"prompts": 20, "mean_prefix_agreement": 0.9375, "identical_answers": 0.85}
    update_json(target / "parity.json", {"agreement": agreement})
    write_json(
        target / "benchmark.json",
        [
            {"kind": "pytorch", "decode_tokens_per_s": 27.9, "decode_speedup": 1.0},
            {"kind": "onnx", "decode_tokens_per_s": 170.0, "decode_speedup": 6.1},
        ],
    )
    (target / "report.html").write_text("<!DOCTYPE html><p>cpu-int4</p>")
    write_json(
        run / "champion/decision.json",
        {
            "decision": "promote",
            "reason": "the challenger beats the champion by 0.03",
            "run_id": RUN_ID,
            "primary_metric": "accuracy",
            "target": "cpu-int4",
            "challenger": {"metric": 0.97},
            "champion": {"version": "manual__2026-11-01", "metric": 0.94},
        },
    )
    return run


class Page(HTMLParser):
    """The parts of report.html the tests look at: links, images and element ids."""

    def __init__(self, text: str):
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[dict] = []
        self.ids: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "a" and attributes.get("href"):
            self.hrefs.append(attributes["href"])
        if tag == "img":
            self.images.append(attributes)


def report(run: Path) -> tuple[dict, str]:
    summary = write(run, run / "report")
    return summary, (run / "report/report.html").read_text(encoding="utf-8")


def section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}">')
    return html[start : html.index("</section>", start)]


def test_every_link_resolves_to_a_file_beside_the_report(run_dir):
    approval.record(run_dir, approval.APPROVED, by="ada", at="2026-12-01T10:00:00+00:00")
    _, html = report(run_dir)
    page = Page(html)
    files = [href for href in page.hrefs if not href.startswith("#")]
    for href in files:
        assert not href.startswith(("/", "file:")), href  # relative: works wherever it is
        assert (run_dir / "report" / href).resolve().is_file(), href
    expected = {
        "../plan.json",
        "../validation/validation.json",
        "../finetune/training_metrics.json",
        "../finetune/evaluation/report.html",
        "../finetune/evaluation/evaluation.json",
        "../finetune/onnx/cpu-int4/report.html",
        "../finetune/onnx/cpu-int4/export.json",
        "../finetune/onnx/cpu-int4/parity.json",
        "../finetune/onnx/cpu-int4/benchmark.json",
        "../champion/decision.json",
        "../approval/decision.json",
    }
    assert expected <= set(files)
    assert {f"#{name}" for name in SECTION_IDS} <= set(page.hrefs)  # the section index
    markdown = (run_dir / "report/report.md").read_text()
    assert "Details: [validation.json](../validation/validation.json)" in markdown
    assert "Full report: [report.html](../finetune/evaluation/report.html)" in markdown


def test_links_follow_the_report_folder_wherever_it_is(run_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere/r1"
    write(run_dir, elsewhere)
    page = Page((elsewhere / "report.html").read_text())
    files = [href for href in page.hrefs if not href.startswith("#")]
    assert any(href.endswith("validation/validation.json") for href in files)
    assert all((elsewhere / href).resolve().is_file() for href in files)


def test_the_plots_are_inline_pngs(run_dir):
    _, html = report(run_dir)
    images = {image["alt"]: image["src"] for image in Page(html).images}
    assert set(images) == {
        "train and eval loss",
        "confusion matrix, fine_tuned",
        "confusion matrix, base",
    }
    for src in images.values():
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src.removeprefix(prefix)).startswith(PNG_SIGNATURE)
    loss = (run_dir / "finetune/evaluation/loss_curves.png").read_bytes()
    assert base64.b64decode(images["train and eval loss"].split(",", 1)[1]) == loss
    assert '<section id="training">' in html and "train and eval loss" in section(html, "training")
    assert "confusion matrix, base" in section(html, "evaluation")
    assert sorted(p.name for p in (run_dir / "report").iterdir()) == [
        "report.html",
        "report.md",
        "summary.json",
    ]  # nothing but the page: the plots live inside it


def test_a_missing_plot_is_left_out(run_dir):
    (run_dir / "finetune/evaluation/loss_curves.png").unlink()
    (run_dir / "finetune/evaluation/confusion_base.png").write_text("not a png")
    _, html = report(run_dir)
    assert [image["alt"] for image in Page(html).images] == ["confusion matrix, fine_tuned"]


def test_every_section_has_its_id_in_page_order(run_dir):
    _, html = report(run_dir)
    ids = [name for name in Page(html).ids if name in SECTION_IDS]
    assert ids == list(SECTION_IDS)
    assert html.startswith("<!DOCTYPE html>")


def test_a_run_stopped_early_still_has_every_section(run_dir):
    shutil.rmtree(run_dir / "finetune")
    shutil.rmtree(run_dir / "champion")
    summary, html = report(run_dir)
    assert summary["targets"] == {} and summary["evaluation"] is None
    assert [name for name in Page(html).ids if name in SECTION_IDS] == list(SECTION_IDS)
    assert "no result" in section(html, "evaluation")
    assert Page(html).images == []
    assert "training_metrics.json (missing)" in section(html, "training")


def test_the_target_table_shows_parity_and_speed(run_dir):
    _, html = report(run_dir)
    targets = section(html, "targets")
    row = targets[targets.index("<td>cpu-int4</td>") :]
    row = row[: row.index("</tr>")]
    cells = [cell.split(">", 1)[1] for cell in row.split("</td>")[:-1]]
    assert cells[:8] == [
        "cpu-int4",
        "PASS",
        "0.97",
        "0.98",
        "0.9375 (0.85 identical)",
        "170",
        "6.1x",
        "84.5",
    ]
    assert "max_export_degradation[cpu-int4]" in targets
    markdown = (run_dir / "report/report.md").read_text()
    assert "| cpu-int4 | PASS | 84.5 | 0.97 | 170 | 6.1 | 0.98 | 0.9375 |" in markdown


def test_the_champion_decision_is_on_the_page(run_dir):
    _, html = report(run_dir)
    champion = section(html, "champion")
    assert "the challenger is published" in champion
    assert "the challenger beats the champion by 0.03" in champion
    assert "<td>manual__2026-11-01</td>" in champion and ">0.94<" in champion


def test_a_first_run_without_a_champion_to_beat(run_dir):
    write_json(
        run_dir / "champion/decision.json",
        {"decision": "promote", "reason": "no champion yet", "run_id": RUN_ID, "margin": 0.01},
    )
    _, html = report(run_dir)
    champion = section(html, "champion")
    assert "the challenger is published. no champion yet." in champion
    assert "<table>" not in champion


@pytest.mark.parametrize(
    ("decision", "by", "reason", "shown", "css"),
    [
        (approval.APPROVED, "ada", "", "approved by ada at 2026-12-01T10:00:00+00:00", "pass"),
        (
            approval.REJECTED,
            "bob",
            "answers too terse",
            "rejected by bob at 2026-12-01T10:00:00+00:00: answers too terse",
            "fail",
        ),
        (
            approval.TIMED_OUT,
            None,
            "",
            "timed out at 2026-12-01T10:00:00+00:00 (counts as reject)",
            "fail",
        ),
    ],
)
def test_the_approval_says_who_decided_when_and_why(run_dir, decision, by, reason, shown, css):
    entry = approval.record(run_dir, decision, by=by, reason=reason, at="2026-12-01T10:00:00+00:00")
    summary, html = report(run_dir)
    assert summary["approval"] == entry
    saved = json.loads((run_dir / "report/summary.json").read_text())
    assert saved["approval"] == entry
    assert f'<span class="{css}">{shown}</span>' in section(html, "approval")
    refused = approval.refusal(run_dir)
    if refused:
        assert f"Publish will not go ahead: {refused}." in section(html, "approval")
    assert f"Publishing: {shown}." in (run_dir / "report/report.md").read_text()
    assert f"approval: {shown}" in key_numbers(summary)


def test_a_run_without_a_review_says_not_required(run_dir):
    summary, html = report(run_dir)
    assert summary["approval"] is None
    assert 'Publishing: <span class="skip">not required</span>.' in section(html, "approval")
    assert not any(line.startswith("approval:") for line in key_numbers(summary))


def test_summary_json_keeps_its_keys_and_adds_the_approval(run_dir):
    summary, _ = report(run_dir)
    assert list(summary) == [
        "dag_id",
        "run_id",
        "model_name",
        "run_dir",
        "passed",
        "stages",
        "base_model",
        "dataset_fingerprint",
        "validation",
        "training",
        "evaluation",
        "targets",
        "champion",
        "search",
        "published",
        "tracking",
        "approval",
    ]
    assert json.loads((run_dir / "report/summary.json").read_text()) == summary


def test_data_is_escaped(run_dir):
    approval.record(run_dir, approval.REJECTED, by="eve", reason=SCRIPT, at="t")
    _, html = report(run_dir)
    assert "<script>" not in html
    assert "&lt;script&gt;" in section(html, "evaluation")  # the sample prompt
    assert "&lt;script&gt;" in section(html, "approval")  # the reviewer's reason


def test_a_user_template_replaces_ours(run_dir, tmp_path, monkeypatch):
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "run_report.html.j2").write_text(
        "<!DOCTYPE html><h1>{{ title }}</h1>"
        '<a id="approval" href="{{ links.validation }}">{{ approval.text }}</a>'
    )
    monkeypatch.setenv(TEMPLATES_ENV, str(mine))
    approval.record(run_dir, approval.APPROVED, by="ada", at="t")
    _, html = report(run_dir)
    assert html == (
        f"<!DOCTYPE html><h1>slm_finetune tones: run {RUN_ID}</h1>"
        '<a id="approval" href="../validation/validation.json">approved by ada at t</a>'
    )


def test_a_user_template_can_restyle_or_extend_ours(run_dir, tmp_path, monkeypatch):
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "style.css.j2").write_text("body { background: #123456; }")
    (mine / "run_report.html.j2").write_text(
        '{% extends "slmops/run_report.html.j2" %}'
        '{% block champion %}<section id="champion">ours</section>{% endblock %}'
    )
    monkeypatch.setenv(TEMPLATES_ENV, str(mine))
    _, html = report(run_dir)
    assert "background: #123456" in html and "#1f2328" not in html
    assert section(html, "champion") == '<section id="champion">ours'
    assert "6.1x" in section(html, "targets")  # the rest is ours


def test_a_broken_user_template_names_its_file_and_line(run_dir, tmp_path, monkeypatch):
    mine = tmp_path / "templates"
    mine.mkdir()
    broken = mine / "run_report.html.j2"
    broken.write_text("<!DOCTYPE html>\n<p>ok</p>\n<p>{{ summary.passed | }}</p>\n<p>more</p>\n")
    monkeypatch.setenv(TEMPLATES_ENV, str(mine))
    (run_dir / "report").mkdir()
    (run_dir / "report/report.html").write_text("the previous report")
    with pytest.raises(ConfigError) as error:
        write(run_dir, run_dir / "report")
    message = str(error.value)
    assert message.startswith(f"report template {broken}, line 3: "), message
    assert f"unset {TEMPLATES_ENV}" in message
    assert (run_dir / "report/report.html").read_text() == "the previous report"


def test_a_user_template_that_fails_while_rendering_names_its_file_and_line(
    run_dir, tmp_path, monkeypatch
):
    mine = tmp_path / "templates"
    mine.mkdir()
    broken = mine / "run_report.html.j2"
    broken.write_text("<!DOCTYPE html>\n<p>{{ summary.no_such.key }}</p>\n")
    monkeypatch.setenv(TEMPLATES_ENV, str(mine))
    with pytest.raises(ConfigError, match=f"{broken}, line 2: UndefinedError"):
        write(run_dir, run_dir / "report")


def test_a_missing_template_folder_is_refused(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(TEMPLATES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="no such folder of report templates"):
        write(run_dir, run_dir / "report")


def test_the_templates_ship_with_the_package():
    from importlib.resources import files

    shipped = files("slmops") / "templates"
    names = {entry.name for entry in shipped.iterdir()}
    assert {"base.html.j2", "run_report.html.j2", "style.css.j2"} <= names
    assert Path(str(shipped)).resolve() == TEMPLATES_DIR


def test_a_run_that_required_approval_but_has_no_decision_says_so(run_dir):
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["params"]["require_approval"] = True
    write_json(run_dir / "plan.json", plan)
    _, html = report(run_dir)
    assert "required, but no decision was recorded" in section(html, "approval")


def test_the_search_and_tracking_sections(run_dir):
    results = [
        {"index": index, "status": "ok", "params": {"learning_rate": rate}, "metric": score}
        | {"eval_loss": 1.0 - score, "metric_name": "accuracy"}
        for index, (rate, score) in enumerate([(1e-5, 0.4), (3e-3, 0.9)])
    ]
    write_json(
        run_dir / "hpo/trials.json",
        {
            "metric": "accuracy",
            "lower_is_better": False,
            "trial_max_steps": 30,
            "search": {},
            "results": results,
            "best_index": 1,
            "best_params": {"learning_rate": 3e-3},
        },
    )
    write_json(
        run_dir / "tracking.json",
        {"enabled": False, "uri": "http://127.0.0.1:9", "reason": "http://127.0.0.1:9 is down"},
    )
    summary, html = report(run_dir)
    search = section(html, "search")
    assert "2 trials of 30 steps each, scored by accuracy" in search
    assert "<th>learning_rate</th>" in search and "<td>0.9000</td>" in search
    assert 'href="../hpo/trials.json"' in search
    tracking = section(html, "tracking")
    assert "Tracking was off for this run: http://127.0.0.1:9 is down." in tracking
    assert 'href="../tracking.json"' in tracking
    markdown = (run_dir / "report/report.md").read_text()
    assert "## Hyperparameter search" in markdown and "## Tracking" in markdown
