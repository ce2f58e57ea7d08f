"""SlmopsAlertNotifier: the default (log + alerts.jsonl) and SMTP through a real local
server (aiosmtpd on 127.0.0.1), with the failure contexts Airflow hands its callbacks."""

from __future__ import annotations

import email
import logging
import socket
import sys
from dataclasses import dataclass, field
from email.message import Message

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.errors import GateFailure
from slmops.evaluation.gates import GateRecord
from slmops.layout import RunLayout
from slmops.pipeline import alerts, locations
from slmops_airflow._stage import failing_clearly
from slmops_airflow.alerts import (
    EMAIL_FROM_ENV,
    EMAIL_TO_ENV,
    SLACK_CONN_ENV,
    SMTP_CONN_ENV,
    SlmopsAlertNotifier,
    alert_callbacks,
    run_failure_alert,
    task_failure_alert,
)

LOGGER = "slmops_airflow.alerts"
CONN_ID = "slmops_alerts_smtp"


@dataclass
class TaskInstance:
    """What the notifier reads of Airflow's RuntimeTaskInstance."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    xcoms: dict = field(default_factory=dict)

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        return self.xcoms.get((task_ids, key))


@dataclass
class DagRun:
    dag_id: str
    run_id: str


def failure(gate_names: list[str], explanation: str = "") -> AirflowFailException:
    """The exception a stage task fails with: failing_clearly() around a GateFailure."""
    records = [
        GateRecord(name, 0.2, 0.5, False, explanation or f"{name}: 0.2 is below 0.5")
        for name in gate_names
    ]
    with pytest.raises(AirflowFailException) as raised, failing_clearly():
        raise GateFailure(records)
    return raised.value


@pytest.fixture
def failed_run(finished_run):
    """The run folder of a run that stopped at evaluate, as prepare and the stages left it."""
    return finished_run(passed=False)


@pytest.fixture
def task_context(failed_run, run_id):
    """A task's failure context: ``task_context(task_id, exception, map_index=...)``."""

    def make(task_id: str, exception: BaseException | None, *, map_index: int = -1, **more):
        ti = TaskInstance(
            "slm_finetune",
            run_id,
            task_id,
            map_index,
            xcoms={("prepare", "run_dir"): str(failed_run)},
        )
        return {
            "dag_run": DagRun("slm_finetune", run_id),
            "ti": ti,
            "task_instance": ti,
            "run_id": run_id,
            "exception": exception,
            **more,
        }

    return make


@pytest.fixture(autouse=True)
def _no_channels(monkeypatch):
    """The default: no alert channel configured, whatever the machine's environment."""
    for name in (SMTP_CONN_ENV, EMAIL_TO_ENV, EMAIL_FROM_ENV, SLACK_CONN_ENV):
        monkeypatch.delenv(name, raising=False)


def test_the_default_logs_a_gate_failure_and_records_it(task_context, failed_run, run_id, caplog):
    context = task_context("evaluate", failure(["min_metric[accuracy]"]))
    with caplog.at_level(logging.WARNING, LOGGER):
        task_failure_alert(context)  # as Airflow calls an on_failure_callback
    headline = f"slm_finetune run {run_id}: evaluate failed a gate: 1 gate failed:"
    warned = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert warned and warned[0].startswith(headline)
    assert "- min_metric[accuracy]: min_metric[accuracy]: 0.2 is below 0.5" in warned[0]
    [alert] = alerts.read(failed_run)
    assert alert["kind"] == "gate_failed"
    assert alert["message"] == warned[0]
    assert (alert["dag_id"], alert["run_id"], alert["task_id"]) == (
        "slm_finetune",
        run_id,
        "evaluate",
    )
    assert alert["sent_to"] == ["log"] and alert["failed_channels"] == []


def test_a_mapped_optimize_that_fails_parity(task_context, failed_run, run_id):
    exception = failure(["max_export_degradation[cpu-int4]"])
    alert = SlmopsAlertNotifier().send(task_context("optimize", exception, map_index=1))
    assert alert["kind"] == "parity_failed"
    assert alert["message"].startswith(
        f"slm_finetune run {run_id}: optimize[1] failed the parity gate: 1 gate failed:\n"
        "- max_export_degradation[cpu-int4]:"
    )
    assert [entry["kind"] for entry in alerts.read(failed_run)] == ["parity_failed"]


def test_any_other_failed_task_names_the_exception(task_context, failed_run, run_id):
    alert = SlmopsAlertNotifier().send(task_context("finetune", MemoryError("CUDA out of memory")))
    assert alert["kind"] == "task_failed"
    assert alert["message"] == (
        f"slm_finetune run {run_id}: finetune failed: MemoryError: CUDA out of memory"
    )


def test_a_failed_run_without_the_xcom_finds_the_folder_from_the_roots(
    failed_run, run_id, roots, caplog
):
    """The DAG's callback: a reason and the last task; the folder from $SLMOPS_ARTIFACTS_ROOT."""
    assert locations.run_dir(roots.artifacts, "slm_finetune", run_id) == failed_run
    ti = TaskInstance("slm_finetune", run_id, "evaluate")  # no XCom to pull
    context = {"dag_run": DagRun("slm_finetune", run_id), "ti": ti, "reason": "task_failure"}
    with caplog.at_level(logging.WARNING, LOGGER):
        run_failure_alert(context)
    [alert] = alerts.read(failed_run)
    assert alert["kind"] == "run_failed"
    assert alert["message"] == (
        f"slm_finetune run {run_id}: the run failed (reason: task_failure; last task: evaluate)"
    )
    assert alert["message"] in caplog.text


def test_a_run_without_a_folder_is_logged_not_recorded(roots, caplog):
    """prepare refused the params: there is no run folder, and none is made."""
    ti = TaskInstance("slm_finetune", "manual__nofolder", "prepare")
    with caplog.at_level(logging.WARNING, LOGGER):
        task_failure_alert({"ti": ti, "run_id": "manual__nofolder", "exception": ValueError("x")})
    assert "slm_finetune run manual__nofolder: prepare failed: ValueError: x" in caplog.text
    assert not (roots.artifacts / "runs").exists()


def test_a_broken_context_never_raises(caplog):
    with caplog.at_level(logging.WARNING, LOGGER):
        task_failure_alert({"ti": object(), "exception": "not an exception"})
        run_failure_alert({})
    assert "the run failed" in caplog.text


def test_alert_callbacks_gives_the_task_and_run_notifiers():
    callbacks = alert_callbacks()
    assert callbacks == {"task": task_failure_alert, "run": run_failure_alert}
    assert callbacks["task"].scope == "task" and callbacks["run"].scope == "run"


# -- SMTP against a real server on 127.0.0.1


class Inbox:
    """An aiosmtpd handler that keeps what it is sent."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    """(inbox, port): a local SMTP server, stopped after the test."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), ready_timeout=5)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _smtp_connection(monkeypatch, port: int) -> None:
    """An Airflow connection in the environment: plain SMTP, no SSL, no STARTTLS, no login."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&timeout=5&retry_limit=0",
    )
    monkeypatch.setenv(SMTP_CONN_ENV, CONN_ID)
    monkeypatch.setenv(EMAIL_TO_ENV, "ml-team@example.com, on-call@example.com")
    monkeypatch.setenv(EMAIL_FROM_ENV, "slmops@example.com")


def _body(message: Message) -> str:
    [part] = [part for part in message.walk() if part.get_content_type() == "text/html"]
    return part.get_payload(decode=True).decode(part.get_content_charset())


def test_smtp_sends_the_alert_to_the_recipients(
    smtp_server, monkeypatch, task_context, failed_run, run_id
):
    inbox, port = smtp_server
    _smtp_connection(monkeypatch, port)
    # Braces and markup in an explanation are sent as written: no Jinja, escaped HTML.
    exception = failure(["min_metric[accuracy]"], "accuracy {{ 0.2 }} < 0.5 <b>")
    task_failure_alert(task_context("evaluate", exception))

    [envelope] = inbox.envelopes
    assert envelope.mail_from == "slmops@example.com"
    assert envelope.rcpt_tos == ["ml-team@example.com", "on-call@example.com"]
    message = email.message_from_bytes(envelope.original_content)
    assert message["Subject"] == f"[slmops] slm_finetune run {run_id}: evaluate failed a gate"
    assert message["To"] == "ml-team@example.com, on-call@example.com"
    body = _body(message)
    assert f"slm_finetune run {run_id}: evaluate failed a gate: 1 gate failed:" in body
    assert "- min_metric[accuracy]: accuracy {{ 0.2 }} &lt; 0.5 &lt;b&gt;" in body
    [alert] = alerts.read(failed_run)
    assert alert["sent_to"] == ["log", f"smtp:{CONN_ID}"] and alert["failed_channels"] == []


def test_smtp_down_is_a_warning_and_a_failed_channel(monkeypatch, task_context, failed_run, caplog):
    with socket.socket() as bound_not_listening:  # connecting to it is refused at once
        bound_not_listening.bind(("127.0.0.1", 0))
        _smtp_connection(monkeypatch, bound_not_listening.getsockname()[1])
        with caplog.at_level(logging.WARNING, LOGGER):
            task_failure_alert(task_context("evaluate", failure(["loss_gap"])))
    assert f"slmops alert not sent through smtp:{CONN_ID}: ConnectionRefusedError" in caplog.text
    [alert] = alerts.read(failed_run)
    assert alert["kind"] == "gate_failed" and alert["sent_to"] == ["log"]
    [failed] = alert["failed_channels"]
    assert failed["channel"] == f"smtp:{CONN_ID}"
    assert failed["error"].startswith("ConnectionRefusedError")


def test_smtp_without_recipients_says_so(monkeypatch, task_context, failed_run, smtp_server):
    inbox, port = smtp_server
    _smtp_connection(monkeypatch, port)
    monkeypatch.delenv(EMAIL_TO_ENV)
    task_failure_alert(task_context("evaluate", failure(["loss_gap"])))
    assert inbox.envelopes == []
    [failed] = alerts.read(failed_run)[0]["failed_channels"]
    assert failed["error"] == (
        f"ChannelUnavailable: ${EMAIL_TO_ENV} is not set: no one to send it to"
    )


def test_slack_without_its_provider_is_a_clear_warning(
    monkeypatch, task_context, failed_run, caplog
):
    # Not installed here; None in sys.modules makes the import fail even where it is.
    monkeypatch.setitem(sys.modules, "airflow.providers.slack.notifications.slack", None)
    monkeypatch.setenv(SLACK_CONN_ENV, "slack_alerts")
    with caplog.at_level(logging.WARNING, LOGGER):
        task_failure_alert(task_context("evaluate", failure(["loss_gap"])))
    assert (
        "slmops alert not sent through slack:slack_alerts: ChannelUnavailable: the Slack "
        "provider is not installed (pip install apache-airflow-providers-slack)"
    ) in caplog.text
    [alert] = alerts.read(failed_run)
    assert alert["sent_to"] == ["log"]
    assert alert["failed_channels"][0]["channel"] == "slack:slack_alerts"
    assert "not installed" in alert["failed_channels"][0]["error"]
    assert RunLayout(failed_run).alerts.is_file()


def test_a_forged_run_dir_xcom_does_not_move_where_the_alert_is_written(
    task_context, failed_run, tmp_path
):
    """An XCom can be written through the REST API: the alert goes to the run's own folder
    (from the artifacts root, the DAG id and the run id), never where an XCom points."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    context = task_context("finetune", MemoryError("CUDA out of memory"))
    context["ti"].xcoms[("prepare", "run_dir")] = str(elsewhere)
    SlmopsAlertNotifier().send(context)
    assert [entry["task_id"] for entry in alerts.read(failed_run)] == ["finetune"]
    assert list(elsewhere.iterdir()) == []


def test_a_variable_outside_the_deployments_root_is_not_followed(
    task_context, failed_run, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_ARTIFACTS_ROOT", str(tmp_path / "outside"))
    with caplog.at_level(logging.WARNING, LOGGER):
        SlmopsAlertNotifier().send(task_context("finetune", MemoryError("CUDA out of memory")))
    assert [entry["task_id"] for entry in alerts.read(failed_run)] == ["finetune"]
    assert "using the deployment's artifacts root" in caplog.text
    assert not (tmp_path / "outside").exists()
