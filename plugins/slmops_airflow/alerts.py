"""Failure alerts through Airflow's notifier interface.

``SlmopsAlertNotifier`` is an on-failure callback. On a task (``task_failure_alert``,
through default_args) it announces a failed gate (evaluate), a failed parity gate
(optimize) or any other failed task, after its last try; on the DAG
(``run_failure_alert``) it announces the failed run.

Every alert is logged at WARNING and appended to RUN_DIR/alerts.jsonl (when the run has
a folder), which is all the default does: it needs no service. A user adds channels with
Airflow connections, named in the environment of the workers and the DAG processor:

    SLMOPS_ALERT_SMTP_CONN_ID   an SMTP connection (apache-airflow-providers-smtp)
    SLMOPS_ALERT_EMAIL_TO       its recipients, separated by commas
    SLMOPS_ALERT_EMAIL_FROM     the sender (else the connection's from_email extra)
    SLMOPS_ALERT_SLACK_CONN_ID  a Slack API connection (apache-airflow-providers-slack)
    SLMOPS_ALERT_SLACK_CHANNEL  the channel (else the connection's default)

The providers' own notifiers send (SmtpNotifier, SlackNotifier), so connections behave as
everywhere in Airflow. A channel that fails (a server down, a provider not installed) is
a WARNING naming the connection and the error, and a "failed_channels" entry in the
alert line: the callback itself never raises.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

SMTP_CONN_ENV = "SLMOPS_ALERT_SMTP_CONN_ID"
EMAIL_TO_ENV = "SLMOPS_ALERT_EMAIL_TO"
EMAIL_FROM_ENV = "SLMOPS_ALERT_EMAIL_FROM"
SLACK_CONN_ENV = "SLMOPS_ALERT_SLACK_CONN_ID"
SLACK_CHANNEL_ENV = "SLMOPS_ALERT_SLACK_CHANNEL"
LOG_CHANNEL = "log"
TASK_SCOPE = "task"
RUN_SCOPE = "run"
_SUBJECT_PREFIX = "[slmops]"

log = logging.getLogger(__name__)


class ChannelUnavailable(Exception):
    """A channel that is configured but cannot be used (no recipients, no provider)."""


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


class SlmopsAlertNotifier(BaseNotifier):
    """Announce a failed task (``scope="task"``) or a failed run (``scope="run"``).

    Connection ids and recipients given here win over the SLMOPS_ALERT_* environment,
    which is read when the alert is sent (so a deployment can change it without
    touching the DAGs)."""

    def __init__(
        self,
        *,
        scope: str = TASK_SCOPE,
        smtp_conn_id: str | None = None,
        email_to: str | list[str] | None = None,
        email_from: str | None = None,
        slack_conn_id: str | None = None,
        slack_channel: str | None = None,
    ) -> None:
        if scope not in (TASK_SCOPE, RUN_SCOPE):
            raise ValueError(f"scope {scope!r}: expected {TASK_SCOPE!r} or {RUN_SCOPE!r}")
        super().__init__()
        self.scope = scope
        self.smtp_conn_id = smtp_conn_id
        self.email_to = email_to
        self.email_from = email_from
        self.slack_conn_id = slack_conn_id
        self.slack_channel = slack_channel

    def notify(self, context: Any) -> None:
        try:
            self.send(context)
        except Exception:  # an alert must never turn into a second failure
            log.warning("slmops alert: could not announce the failure", exc_info=True)

    def send(self, context: Any) -> dict:
        """Log the alert, send it to the configured channels, record it; returns it."""
        alert = describe(context, self.scope)
        log.warning("%s", alert["message"])
        sent_to, failed = [LOG_CHANNEL], []
        for channel, deliver in self.channels():
            try:
                deliver(alert, context)
            except Exception as exc:
                error = _error_text(exc)
                log.warning("slmops alert not sent through %s: %s", channel, error)
                failed.append({"channel": channel, "error": error})
            else:
                sent_to.append(channel)
        alert["sent_to"], alert["failed_channels"] = sent_to, failed
        folder = run_folder(context, alert["dag_id"], alert["run_id"])
        if folder is not None and folder.is_dir():
            from slmops.pipeline import alerts

            alerts.record(
                folder,
                kind=alert["kind"],
                dag_id=alert["dag_id"],
                run_id=alert["run_id"],
                task_id=alert["task_id"],
                message=alert["message"],
                sent_to=sent_to,
                failed_channels=failed,
            )
            alert["recorded_in"] = str(folder)
        else:
            log.info("slmops alert not recorded: the run has no folder (%s)", folder)
        return alert

    def channels(self) -> list[tuple[str, Callable[[dict, Any], None]]]:
        """(name, deliver) for each channel configured: "smtp:CONN_ID", "slack:CONN_ID"."""
        found = []
        smtp_conn_id = self.smtp_conn_id or _env(SMTP_CONN_ENV)
        if smtp_conn_id:
            found.append((f"smtp:{smtp_conn_id}", self._smtp_sender(smtp_conn_id)))
        slack_conn_id = self.slack_conn_id or _env(SLACK_CONN_ENV)
        if slack_conn_id:
            found.append((f"slack:{slack_conn_id}", self._slack_sender(slack_conn_id)))
        return found

    def _smtp_sender(self, conn_id: str) -> Callable[[dict, Any], None]:
        def deliver(alert: dict, context: Any) -> None:
            recipients = self.email_to or _env(EMAIL_TO_ENV) or ""
            if isinstance(recipients, str):
                recipients = [part.strip() for part in recipients.split(",") if part.strip()]
            if not recipients:
                raise ChannelUnavailable(f"${EMAIL_TO_ENV} is not set: no one to send it to")
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            notifier = SmtpNotifier(
                to=recipients,
                from_email=self.email_from or _env(EMAIL_FROM_ENV),
                subject=alert["subject"],
                html_content=_html(alert["message"]),
                smtp_conn_id=conn_id,
            )
            # notify(), not the notifier's __call__: the text is sent as written, never
            # rendered as a Jinja template (a gate explanation may hold braces).
            notifier.notify(context)

        return deliver

    def _slack_sender(self, conn_id: str) -> Callable[[dict, Any], None]:
        def deliver(alert: dict, context: Any) -> None:
            try:
                from airflow.providers.slack.notifications.slack import SlackNotifier
            except ImportError as exc:
                raise ChannelUnavailable(
                    "the Slack provider is not installed (pip install "
                    "apache-airflow-providers-slack), so Slack alerts cannot be sent"
                ) from exc
            settings: dict[str, Any] = {"slack_conn_id": conn_id, "text": alert["message"]}
            channel = self.slack_channel or _env(SLACK_CHANNEL_ENV)
            if channel:
                settings["channel"] = channel
            SlackNotifier(**settings).notify(context)

        return deliver


def describe(context: Any, scope: str = TASK_SCOPE) -> dict:
    """{kind, dag_id, run_id, task_id, subject, message} of the failure ``context`` is about."""
    from slmops.pipeline import alerts

    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = _first(ti, dag_run, dag, attribute="dag_id") or "?"
    run_id = context.get("run_id") or _first(ti, dag_run, attribute="run_id") or "?"
    task = _task_name(ti)
    run = f"{dag_id} run {run_id}"
    if scope == RUN_SCOPE:
        kind = alerts.RUN_FAILED
        headline = "the run failed"
        details = []
        if context.get("reason"):
            details.append(f"reason: {context['reason']}")
        if task:
            details.append(f"last task: {task}")
        message = f"{run}: {headline}" + (f" ({'; '.join(details)})" if details else "")
    else:
        exception = context.get("exception")
        kind = (
            alerts.classify(exception)
            if isinstance(exception, BaseException)
            else (alerts.TASK_FAILED)
        )
        name = task or "a task"
        headline = {
            alerts.GATE_FAILED: f"{name} failed a gate",
            alerts.PARITY_FAILED: f"{name} failed the parity gate",
        }.get(kind, f"{name} failed")
        explanation = _explanation(exception)
        message = f"{run}: {headline}" + (f": {explanation}" if explanation else "")
    return {
        "kind": kind,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": getattr(ti, "task_id", None),
        "subject": f"{_SUBJECT_PREFIX} {run}: {headline}",
        "message": message,
    }


def run_folder(context: Any, dag_id: str, run_id: str) -> Path | None:
    """The run's folder: where prepare puts it (slmops.pipeline.locations.run_dir under
    the configured artifacts root). Never an XCom: it could name any folder to write in."""
    from slmops.pipeline import locations

    if dag_id == "?" or run_id == "?":
        return None
    return locations.run_dir(_artifacts_root(), dag_id, run_id)


def _artifacts_root() -> Path:
    """The deployment's artifacts root, narrowed by the slmops_artifacts_root Variable when
    it can be read here and lies inside it (an alert never fails on a bad Variable)."""
    from slmops.errors import ConfigError
    from slmops.pipeline import locations
    from slmops_airflow.roots import ARTIFACTS_VARIABLE

    try:
        from airflow.sdk import Variable

        value = Variable.get(ARTIFACTS_VARIABLE, default=None)
    except Exception as exc:
        log.debug("slmops alert: Variable %s not readable: %s", ARTIFACTS_VARIABLE, exc)
        value = None
    try:
        return locations.narrowed_artifacts_root(value, f"Airflow Variable {ARTIFACTS_VARIABLE}")
    except ConfigError as exc:
        log.warning("slmops alert: %s; using the deployment's artifacts root", exc)
        return locations.artifacts_root()


def _first(*sources: Any, attribute: str) -> str | None:
    for source in sources:
        value = getattr(source, attribute, None)
        if value:
            return str(value)
    return None


def _task_name(ti: Any) -> str | None:
    """task_id, or task_id[i] for one mapped task (its rendered name when it has one)."""
    task_id = getattr(ti, "task_id", None)
    if not task_id:
        return None
    map_index = getattr(ti, "map_index", -1)
    if not isinstance(map_index, int) or map_index < 0:
        return task_id
    rendered = getattr(ti, "rendered_map_index", None)
    return f"{task_id}[{rendered if rendered else map_index}]"


def _explanation(exception: Any) -> str:
    """What the task failed with: a refusal's own message (a gate's explanation and
    remedies), or the exception's type and text."""
    if exception is None:
        return ""
    if not isinstance(exception, BaseException):
        return str(exception)
    from slmops.errors import SlmopsError
    from slmops.pipeline.alerts import causes

    text = str(exception).strip()
    if any(isinstance(cause, SlmopsError) for cause in causes(exception)) and text:
        return text
    return f"{type(exception).__name__}: {text}" if text else type(exception).__name__


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _html(message: str) -> str:
    return f"<pre>{html.escape(message)}</pre>"


def alert_callbacks() -> dict[str, SlmopsAlertNotifier]:
    """{"task": the on_failure_callback for default_args, "run": the DAG's own}."""
    return {TASK_SCOPE: task_failure_alert, RUN_SCOPE: run_failure_alert}


task_failure_alert = SlmopsAlertNotifier(scope=TASK_SCOPE)
run_failure_alert = SlmopsAlertNotifier(scope=RUN_SCOPE)
