"""The run's report: every stage's outcome and key numbers in one place.

It reads what the stages wrote into the run folder (validation.json,
training_metrics.json, evaluation.json, each target's export.json and benchmark.json,
the champion and approval decisions), so it also explains a run that stopped early:
stages without output say "no result".

Three files: summary.json (``collect``), report.md and report.html. report.html is the one
page a reviewer reads: it links every file it draws on (relative links, so they work from
the report folder), embeds the evaluation's plots (base64, so the page is self-contained
and works inside an iframe) and gives each section a stable id (``SECTION_IDS``) that
other pages can link to (report.html#evaluation). It is rendered with Jinja2 from the
templates in slmops/templates; a folder named by $SLMOPS_REPORT_TEMPLATES comes first, so
a template of the same name there replaces ours (and can extend ours as
"slmops/run_report.html.j2", overriding single blocks; style.css.j2 restyles the page).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from slmops.artifacts import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    read_json_if_any,
)
from slmops.errors import ConfigError
from slmops.layout import (
    BENCHMARK_NAME,
    EXPORT_RECORD,
    PARITY_NAME,
    PLAN_NAME,
    REPORT_HTML,
    REPORT_MD,
    SUMMARY_NAME,
    ModelStore,
    RunLayout,
)
from slmops.pipeline import approval
from slmops.pipeline.champion import read_decision
from slmops.pipeline.configs.search import trials_table
from slmops.pipeline.hpo import read_trials
from slmops.pipeline.model_versions import legacy_version_name, version_name
from slmops.pipeline.plan import read_plan
from slmops.report import Document, cell, prompt_tail, verdict
from slmops.tracking.runs import read_status as tracking_status

NO_RESULT = "no result"  # the stage did not run, or failed before writing one
TEMPLATES_ENV = "SLMOPS_REPORT_TEMPLATES"  # a folder of templates that replace ours
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"  # slmops/templates
RUN_REPORT_TEMPLATE = "run_report.html.j2"
# report.html's sections, in page order: each is <section id="...">, for links from elsewhere
SECTION_IDS = (
    "stages",
    "validation",
    "training",
    "evaluation",
    "targets",
    "champion",
    "approval",
    "search",
    "tracking",
)
# The plots the evaluation stage writes into its folder (slmops.evaluation.report).
LOSS_PLOT = "loss_curves.png"
CONFUSION_PLOTS = ("confusion_fine_tuned.png", "confusion_base.png")
SAMPLE_ROWS = 8  # evaluation answers shown on the page
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _published_version(plan: dict) -> Path | None:
    """The run's version folder in the model store, if it was published (under its DAG
    and run name, or the run-id-only name of older stores)."""
    store = ModelStore(plan["models_root"])
    for name in (version_name(plan["dag_id"], plan["run_id"]), legacy_version_name(plan["run_id"])):
        if store.version(plan["model_name"], name).is_dir():
            return store.version(plan["model_name"], name)
    return None


def collect(run_dir: Path) -> dict:
    """The run's outcome as a small dict (it is also the report's content)."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    plan = read_plan(run_dir)
    validation = read_json_if_any(layout.validation_report)
    training = read_json_if_any(layout.finetune.metrics)
    evaluation = read_json_if_any(layout.finetune.evaluation_report)
    targets = {
        name: _target(layout.onnx(name)) for name in plan["cpu_targets"] + plan["gpu_targets"]
    }
    published = _published_version(plan)
    stages = {
        "validation": _stage(validation),
        "finetune": NO_RESULT if training is None else "PASS",
        "evaluation": _stage(evaluation),
        **{f"optimize[{name}]": _stage(record) for name, record in targets.items()},
    }
    return {
        "dag_id": plan["dag_id"],
        "run_id": plan["run_id"],
        "model_name": plan["model_name"],
        "run_dir": str(run_dir),
        "passed": all(state == "PASS" for state in stages.values()),
        "stages": stages,
        "base_model": plan["finetune"]["model_name_or_path"],
        "dataset_fingerprint": (training or {}).get("dataset", {}).get("fingerprint")
        or (validation or {}).get("data", {}).get("fingerprint"),
        "validation": validation and _validation(validation),
        "training": training and _training(training),
        "evaluation": evaluation and _evaluation(evaluation),
        "targets": {name: record for name, record in targets.items() if record},
        "champion": read_decision(run_dir),
        "search": read_trials(run_dir),
        "published": str(published) if published else None,  # written whole or not
        "tracking": tracking_status(run_dir),
        "approval": approval.read(run_dir),
    }


def write(run_dir: Path, output_dir: Path) -> dict:
    """Write report.md, report.html and summary.json into ``output_dir``; return the summary.
    Raises ConfigError for a report template that does not render (naming file and line)."""
    summary = collect(run_dir)
    page = render_html(page_context(summary, Path(run_dir), Path(output_dir)))
    write_report(summary, _document(summary, Path(output_dir)), output_dir, html=page)
    return summary


def write_report(
    summary: dict, document: Document, output_dir: Path, *, html: str | None = None
) -> None:
    """summary.json, report.md and report.html, written whole into ``output_dir``;
    ``html`` replaces the document's own HTML rendering."""
    with atomic_directory(Path(output_dir)) as folder:
        atomic_write_json(folder / SUMMARY_NAME, summary)
        if html is None:
            document.write(folder)
        else:
            atomic_write_text(folder / REPORT_MD, document.to_markdown())
            atomic_write_text(folder / REPORT_HTML, html)


def latest_run(artifacts_root: Path) -> Path:
    """The most recently planned run folder (ROOT/runs/DAG_ID/RUN_ID) under ``artifacts_root``."""
    planned = {}
    for folder in Path(artifacts_root).glob("runs/*/*"):
        layout = RunLayout(folder)
        for plan in (layout.plan, layout.multi_plan):
            if plan.is_file():
                planned[folder] = plan.stat().st_mtime
                break
    if not planned:
        raise ConfigError(f"{artifacts_root}: no pipeline runs yet (no runs/*/*/{PLAN_NAME})")
    return max(planned, key=planned.get)


def key_numbers(summary: dict) -> list[str]:
    """A run's outcome in a few lines, for a terminal."""
    lines = [f"run {summary['run_id']}: {verdict(summary['passed'])}"]
    lines += [f"  {stage:<22} {state}" for stage, state in summary["stages"].items()]
    if summary.get("approval"):
        lines.append(f"approval: {approval_text(summary['approval'])}")
    if "adapters" in summary:  # a multi-adapter run
        for name, entry in summary["adapters"].items():
            lines.append(
                f"adapter {name}: {entry['primary_metric']} base {cell(entry['base'])}, "
                f"fine-tuned {cell(entry['fine_tuned'])}, through the shared base "
                f"{cell(entry['shared_base'])}"
            )
        return lines
    evaluation = summary["evaluation"]
    if evaluation:
        lines.append(
            f"{evaluation['primary_metric']}: base {cell(evaluation['base'])} -> fine-tuned "
            f"{cell(evaluation['fine_tuned'])} on {evaluation['eval_rows']} held-out rows"
        )
        lines += [f"  gate {g['name']}: {verdict(g['passed'])}" for g in evaluation["gates"]]
    if summary.get("search"):
        record = summary["search"]
        lines.append(
            f"search: {len(record['results'])} trials, best trial {record['best_index']} "
            f"{record['best_params']}"
        )
    if summary.get("champion"):
        decision = summary["champion"]
        lines.append(f"champion/challenger: {decision['decision']}: {decision['reason']}")
    for name, record in summary["targets"].items():
        lines.append(
            f"{name}: {verdict(record['passed'])}, {cell(record['size_mb'])} MB, "
            f"{cell(record['metric'])} (PyTorch {cell(record['pytorch_metric'])}), "
            f"{cell(record['decode_tokens_per_s'])} tokens/s, "
            f"{cell(record['decode_speedup'])}x PyTorch"
        )
    tracking = summary.get("tracking")
    if tracking and tracking["enabled"]:
        lines.append(f"tracked: MLflow run {tracking['run_id']} at {tracking['uri']}")
    elif tracking:
        lines.append(f"not tracked: {tracking['reason']}")
    return lines


def _stage(record: dict | None) -> str:
    return NO_RESULT if record is None else verdict(bool(record.get("passed")))


def _validation(report: dict) -> dict:
    return {
        "passed": report["passed"],
        "train_rows": report["data"]["train_rows"],
        "eval_rows": report["data"]["eval_rows"],
        "failed_checks": [check["name"] for check in report["checks"] if not check["passed"]],
    }


def _training(metrics: dict) -> dict:
    keys = ("method", "global_step", "final_train_loss", "best_eval_loss", "tokens_per_second")
    return {key: metrics.get(key) for key in (*keys, "train_runtime_s", "stopped_early")}


def _evaluation(summary: dict) -> dict:
    primary = summary["primary_metric"]
    models = summary["models"]
    return {
        "passed": summary["passed"],
        "primary_metric": primary,
        "base": models.get("base", {}).get("metrics", {}).get(primary),
        "fine_tuned": models["fine_tuned"]["metrics"].get(primary),
        "eval_rows": summary["eval_rows"],
        "gates": summary["gates"],
    }


def _target(folder: Path) -> dict | None:
    record = read_json_if_any(folder / EXPORT_RECORD)
    if record is None:
        return None
    parity = read_json_if_any(folder / PARITY_NAME) or {}
    timings = {row["kind"]: row for row in read_json_if_any(folder / BENCHMARK_NAME) or []}
    onnx = timings.get("onnx", {})
    return {
        "passed": record["passed"],
        "path": str(folder),
        "size_mb": record["size_mb"],
        "exporter": record["exporter"],
        "metric": parity.get("exported", {}).get("metrics", {}).get(parity.get("primary_metric")),
        "pytorch_metric": parity.get("pytorch", {})
        .get("metrics", {})
        .get(parity.get("primary_metric")),
        "decode_tokens_per_s": onnx.get("decode_tokens_per_s"),
        "decode_speedup": onnx.get("decode_speedup"),
        "gates": record["gates"],
    }


def _document(summary: dict, output_dir: Path) -> Document:
    """report.md's content (report.html is rendered from the templates)."""
    layout = RunLayout(summary["run_dir"])

    def link(path: Path) -> str:
        href = _href(path, output_dir)
        return f"[{path.name}]({href})" if href else "–"

    doc = Document(f"{summary['dag_id']} {summary['model_name']}: run {summary['run_id']}")
    doc.paragraph(
        f"Outcome: {verdict(summary['passed'])}. Base model {summary['base_model']}, dataset "
        f"fingerprint {(summary['dataset_fingerprint'] or '–')[:16]}."
    )
    doc.table(["stage", "outcome"], list(summary["stages"].items()))
    if summary["validation"]:
        check = summary["validation"]
        failed = ", ".join(check["failed_checks"]) or "none"
        doc.heading("Data validation")
        doc.paragraph(
            f"{check['train_rows']} training rows, {check['eval_rows']} evaluation rows; "
            f"failed checks: {failed}. Details: {link(layout.validation_report)}"
        )
    if summary["training"]:
        doc.heading("Training")
        doc.table(list(summary["training"]), [list(summary["training"].values())])
        doc.paragraph(f"Details: {link(layout.finetune.metrics)}")
    if summary["evaluation"]:
        evaluation = summary["evaluation"]
        doc.heading("Evaluation")
        doc.paragraph(
            f"{evaluation['primary_metric']} on {evaluation['eval_rows']} held-out rows: base "
            f"{cell(evaluation['base'])}, fine-tuned {cell(evaluation['fine_tuned'])}. "
            f"Full report: {link(layout.finetune.evaluation / REPORT_HTML)}"
        )
        _gates(doc, evaluation["gates"])
    if summary["targets"]:
        doc.heading("ONNX targets")
        rows = []
        for name, record in summary["targets"].items():
            agreement = _agreement(Path(record["path"]))
            rows.append(
                [
                    name,
                    verdict(record["passed"]),
                    record["size_mb"],
                    record["metric"],
                    record["decode_tokens_per_s"],
                    record["decode_speedup"],
                    record["pytorch_metric"],
                    agreement and agreement.get("mean_prefix_agreement"),
                ]
            )
        headers = ["target", "parity", "MB", "metric", "decode tok/s", "vs PyTorch"]
        doc.table([*headers, "PyTorch metric", "token agreement"], rows)
        _gates(doc, [gate for record in summary["targets"].values() for gate in record["gates"]])
    if summary.get("champion"):
        _champion(doc, summary["champion"])
    doc.heading("Approval")
    doc.paragraph(f"Publishing: {_approval_line(summary)}.")
    if summary.get("search"):
        _search(doc, summary["search"])
    if summary.get("tracking"):
        _tracking(doc, summary["tracking"])
    return doc


def _tracking(doc: Document, status: dict) -> None:
    doc.heading("Tracking")
    if status["enabled"]:
        doc.paragraph(
            f"Tracked in MLflow at {status['uri']}: experiment {status['experiment_id']}, "
            f"run {status['run_id']} with a nested run per stage."
        )
    else:
        doc.paragraph(f"Tracking was off for this run: {status['reason']}.")


def _search(doc: Document, record: dict) -> None:
    doc.heading("Hyperparameter search")
    best = record["best_index"]
    doc.paragraph(
        f"{len(record['results'])} trials of {record['trial_max_steps']} steps each, scored "
        f"by {record['metric']} on the held-out rows; trial {best} won and this run trained "
        f"with its settings: {record['best_params']}."
    )
    headers, rows = trials_table(
        record["results"], record["metric"], lower_is_better=record["lower_is_better"]
    )
    doc.table(headers, rows)


def _champion(doc: Document, decision: dict) -> None:
    doc.heading("Champion / challenger")
    verdicts = {"promote": "PROMOTED: the challenger is published", "keep": "KEPT the champion"}
    doc.paragraph(f"{verdicts[decision['decision']]}. {decision['reason']}.")
    champion = decision.get("champion") or {}
    if "metric" in champion:
        doc.table(
            ["model", "version", f"{decision['primary_metric']} ({decision['target']})"],
            [
                ["challenger", decision["run_id"], decision["challenger"]["metric"]],
                ["champion", champion["version"], champion["metric"]],
            ],
        )


def _gates(doc: Document, records: list[dict]) -> None:
    rows = [[r["name"], verdict(r["passed"]), r["explanation"]] for r in records]
    doc.table(["gate", "verdict", "why"], rows)


# -- the approval


def approval_text(entry: dict | None, *, required: bool = False) -> str:
    """A reviewer's decision in a few words: "approved by X at T", "rejected by X at T:
    reason", "timed out at T (counts as reject)"; "not required" for a run not reviewed."""
    if entry is None:
        return "required, but no decision was recorded" if required else "not required"
    who = entry.get("by") or "a reviewer"
    if entry["decision"] == approval.APPROVED:
        return f"approved by {who} at {entry['at']}"
    if entry["decision"] == approval.TIMED_OUT:
        return f"timed out at {entry['at']} (counts as reject)"
    because = f": {entry['reason']}" if entry.get("reason") else " (no reason given)"
    return f"rejected by {who} at {entry['at']}{because}"


def _approval_line(summary: dict) -> str:
    return approval_text(summary.get("approval"), required=_approval_required(summary))


def _approval_required(summary: dict) -> bool:
    plan = read_json_if_any(RunLayout(summary["run_dir"]).plan) or {}
    return bool(plan.get("params", {}).get("require_approval"))


# -- report.html


def page_context(summary: dict, run_dir: Path, output_dir: Path) -> dict:
    """What the run report's templates get: the summary as is, plus relative links to the
    files it was made from (None where a file is missing), the evaluation's plots as
    data: URIs, a few sample answers, each target's parity and files, and the approval."""
    layout = RunLayout(run_dir)
    evaluation_dir = layout.finetune.evaluation
    evaluation = read_json_if_any(layout.finetune.evaluation_report) or {}

    def href(path: Path) -> str | None:
        return _href(path, output_dir)

    links = {
        "plan": href(layout.plan),
        "validation": href(layout.validation_report),
        "training_metrics": href(layout.finetune.metrics),
        "evaluation_report": href(evaluation_dir / REPORT_HTML),
        "evaluation": href(layout.finetune.evaluation_report),
        "champion": href(layout.decision),
        "approval": href(layout.approval),
        "search": href(layout.trials),
        "tracking": href(layout.tracking),
        "published": summary.get("published") and href(Path(summary["published"])),
    }
    targets = []
    for name, record in summary["targets"].items():
        folder = Path(record["path"])
        files = [
            {"name": file, "href": href(folder / file)}
            for file in (REPORT_HTML, EXPORT_RECORD, PARITY_NAME, BENCHMARK_NAME)
        ]
        targets.append(
            {
                "name": name,
                "record": record,
                "agreement": _agreement(folder),
                "files": [file for file in files if file["href"]],
            }
        )
    plots = {
        "loss": _data_uri(evaluation_dir / LOSS_PLOT),
        "confusion": [
            {"name": Path(name).stem.removeprefix("confusion_"), "src": uri}
            for name in CONFUSION_PLOTS
            if (uri := _data_uri(evaluation_dir / name))
        ],
    }
    entry = summary.get("approval")
    search = None
    if summary.get("search"):
        record = summary["search"]
        headers, rows = trials_table(
            record["results"], record["metric"], lower_is_better=record["lower_is_better"]
        )
        search = {
            "record": record,
            "trials": len(record["results"]),
            "headers": headers,
            "rows": rows,
        }
    return {
        "title": f"{summary['dag_id']} {summary['model_name']}: run {summary['run_id']}",
        "summary": summary,
        "section_ids": SECTION_IDS,
        "links": links,
        "plots": plots,
        "samples": _samples(evaluation.get("samples") or []),
        "targets": targets,
        "search": search,
        "approval": {
            "entry": entry,
            "text": approval_text(entry, required=_approval_required(summary)),
            "refusal": approval.refusal(run_dir),
        },
    }


def render_html(context: dict, template: str = RUN_REPORT_TEMPLATE) -> str:
    """The page from ``template`` (user templates first, see the module's docstring).
    Raises ConfigError naming the template file and line when one does not render."""
    import jinja2

    environment = _environment()
    try:
        return environment.get_template(template).render(context)
    except jinja2.TemplateSyntaxError as error:
        filename, line, message = error.filename or error.name, error.lineno, error.message
        cause: Exception = error
    except Exception as error:  # raised while rendering: name the template line it came from
        filename, line = _template_frame(error)
        if filename is None and not isinstance(error, jinja2.TemplateError):
            raise  # not the template's doing
        message, cause = f"{type(error).__name__}: {error}", error
    where = f"{filename or template}, line {line}" if line else (filename or template)
    raise ConfigError(
        f"report template {where}: {str(message).rstrip('.')}. {_what_to_do(filename)}"
    ) from cause


def _environment():
    import jinja2

    ours = jinja2.FileSystemLoader(TEMPLATES_DIR)
    loaders = [ours, jinja2.PrefixLoader({"slmops": ours})]
    folder = os.environ.get(TEMPLATES_ENV)
    if folder:
        if not Path(folder).is_dir():
            raise ConfigError(
                f"{TEMPLATES_ENV}={folder}: no such folder of report templates; create it "
                f"(templates named as in {TEMPLATES_DIR}) or unset {TEMPLATES_ENV}"
            )
        loaders.insert(0, jinja2.FileSystemLoader(folder))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every value is data (prompts, answers, a reviewer's reason)
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(cell=cell, verdict=verdict, verdict_class=_verdict_class)
    return environment


def _what_to_do(filename: str | None) -> str:
    folder = os.environ.get(TEMPLATES_ENV)
    if folder and filename and Path(filename).resolve().is_relative_to(Path(folder).resolve()):
        return f"Fix it, or unset {TEMPLATES_ENV} ({folder}) to use slmops' own templates"
    return f"Check the templates in {TEMPLATES_DIR} and any in ${TEMPLATES_ENV}"


def _template_frame(error: BaseException) -> tuple[str | None, int | None]:
    """The file and line of the innermost template frame in ``error``'s traceback (Jinja2
    rewrites its frames to point at the template), or (None, None)."""
    found: tuple[str | None, int | None] = (None, None)
    trace = error.__traceback__
    while trace is not None:
        filename = trace.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, trace.tb_lineno)
        trace = trace.tb_next
    return found


def _verdict_class(value: object) -> str:
    text = value if isinstance(value, str) else verdict(value)  # type: ignore[arg-type]
    return {"PASS": "pass", "FAIL": "fail", "skipped": "skip"}.get(text, "skip")


def _href(path: Path, output_dir: Path) -> str | None:
    """A link from the report folder to ``path`` (relative, '/'-separated), None if missing."""
    path = Path(path)
    if not path.exists():
        return None
    return Path(os.path.relpath(path.resolve(), Path(output_dir).resolve())).as_posix()


def _data_uri(path: Path) -> str | None:
    """A PNG as a data: URI (the page stays one file); None when missing or not a PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(_PNG_SIGNATURE):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _agreement(folder: Path) -> dict | None:
    """Greedy-token agreement of an export with PyTorch (parity.json), if it was measured."""
    parity = read_json_if_any(folder / PARITY_NAME) or {}
    return parity.get("agreement") or None


def _samples(rows: list[dict]) -> list[dict]:
    return [
        {
            "prompt": prompt_tail(str(row.get("prompt", ""))),
            "reference": row.get("reference"),
            "base": row.get("base_answer"),
            "fine_tuned": row.get("fine_tuned_answer"),
        }
        for row in rows[:SAMPLE_ROWS]
    ]
