"""A reviewer's decision on publishing a run (RUN_DIR/approval/decision.json).

Runs that require approval ask a person before publish (in Airflow: the approve task, a
human-in-the-loop step). This module writes what the reviewer is shown (``request``),
records the answer (``record``) and tells publish whether it may go ahead (``refusal``).
A run without a decision file was not asked: nothing here stops it.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.layout import RunLayout
from slmops.pipeline.champion import read_decision as read_champion
from slmops.report import cell, prompt_tail, verdict

APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed_out"  # nobody answered in time: counts as a rejection
DECISIONS = (APPROVED, REJECTED, TIMED_OUT)
SAMPLE_ROWS = 8  # answers shown side by side in the request


def record(
    run_dir: Path,
    decision: str,
    *,
    by: str | None = None,
    reason: str = "",
    at: str | None = None,
) -> dict:
    """Write the reviewer's decision; returns it."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r}: expected one of {', '.join(DECISIONS)}")
    entry = {
        "decision": decision,
        "approved": decision == APPROVED,
        "by": by,
        "reason": reason.strip(),
        "at": at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(RunLayout(run_dir).approval, entry)
    return entry


def read(run_dir: Path) -> dict | None:
    """The recorded decision, or None when the run was not (yet) reviewed."""
    return read_json_if_any(RunLayout(run_dir).approval)


def refusal(run_dir: Path) -> str | None:
    """Why publish must not go ahead, or None (approved, or no review asked for)."""
    entry = read(run_dir)
    if entry is None or entry["approved"]:
        return None
    if entry["decision"] == TIMED_OUT:
        return f"nobody approved publishing before the timeout ({entry['at']})"
    who = entry["by"] or "a reviewer"
    because = f": {entry['reason']}" if entry["reason"] else " (no reason given)"
    return f"{who} rejected publishing at {entry['at']}{because}"


def request(run_dir: Path, *, report_url: str | None = None) -> tuple[str, str]:
    """The approval request: a subject line and a Markdown body with the gates, the base,
    fine-tuned and champion scores, sample answers side by side and the report link."""
    layout = RunLayout(run_dir)
    evaluation = read_json_if_any(layout.finetune.evaluation_report)
    plan = read_json_if_any(layout.plan) or {}
    name = plan.get("model_name", Path(run_dir).name)
    if evaluation is None:
        return f"Publish {name}?", "The run has no evaluation: nothing to review."
    primary = evaluation["primary_metric"]
    models = evaluation["models"]
    base = models.get("base", {}).get("metrics", {}).get(primary)
    tuned = models["fine_tuned"]["metrics"].get(primary)
    subject = f"Publish {name}? {primary} {cell(base)} -> {cell(tuned)}"
    lines = [f"**{name}**, run `{plan.get('run_id', '?')}` of `{plan.get('dag_id', '?')}`."]
    if report_url:
        lines.append(f"\n[Open the run report]({report_url})")
    lines += ["", "| model | " + primary + " |", "|---|---|"]
    lines += [f"| base | {cell(base)} |", f"| fine-tuned | {cell(tuned)} |"]
    champion = read_champion(run_dir)
    published = (champion or {}).get("champion") or {}
    if "metric" in published:
        lines.append(f"| champion {published['version']} | {cell(published['metric'])} |")
    if champion:  # a decision made without scores (fail-closed keep) still says why
        lines.append(f"\nChampion/challenger: {champion['decision']}: {champion['reason']}.")
    lines += ["", "| gate | verdict | why |", "|---|---|---|"]
    lines += [
        f"| {gate['name']} | {verdict(gate['passed'])} | {_md(gate['explanation'])} |"
        for gate in evaluation["gates"]
    ]
    samples = [row for row in evaluation.get("samples", []) if "fine_tuned_answer" in row]
    if samples:
        lines += ["", "| prompt (end) | reference | base | fine-tuned |", "|---|---|---|---|"]
        lines += [
            f"| {_md(prompt_tail(row['prompt'], 80))} | {_md(row['reference'])} | "
            f"{_md(row.get('base_answer', ''))} | {_md(row['fine_tuned_answer'])} |"
            for row in samples[:SAMPLE_ROWS]
        ]
    lines += ["", "Reject (with a reason) to keep this model out; a timeout counts as reject."]
    return subject, "\n".join(lines)


def _md(text: object) -> str:
    """A Markdown table cell: no pipes or line breaks; empty shows as a dash."""
    value = " ".join(str(text).split()).replace("|", "\\|")
    return value or "–"
