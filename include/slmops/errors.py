"""Exception types shared by every stage.

Each message names the file, parameter or model at fault and says what to do; the CLI
prints the message alone (no traceback) and exits non-zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slmops.evaluation.gates import GateRecord
    from slmops.validation.runner import ValidationReport


class SlmopsError(Exception):
    """Base class for errors a user can fix from the message alone."""


class ModelError(SlmopsError):
    """A model could not be found, reached, verified or loaded."""


class ConfigError(SlmopsError):
    """A setting is missing, malformed or out of range."""


class GateFailure(SlmopsError):
    """One or more gates failed; the model must not go further."""

    def __init__(self, failed: list[GateRecord]):
        self.failed = failed
        super().__init__(_gate_failure_message(failed))


def _gate_failure_message(failed: list[GateRecord]) -> str:
    lines = [f"{len(failed)} gate{'s' if len(failed) > 1 else ''} failed:"]
    for record in failed:
        lines.append(f"- {record.name}: {record.explanation}")
    remedies = list(dict.fromkeys(remedy for record in failed for remedy in record.remedies))
    if remedies:
        lines.append("What to try (reference guide):")
        lines.extend(f"  * {remedy}" for remedy in remedies)
    return "\n".join(lines)


class MetricError(SlmopsError):
    """A metric could not be loaded or computed."""


class EvaluationError(SlmopsError):
    """The models or data could not be evaluated."""


class AdapterMismatch(ModelError):
    """An adapter that does not fit the base model it is applied to."""


class NonFiniteLossError(SlmopsError):
    """The training loss became NaN or infinite."""

    def __init__(self, value: float, step: int):
        self.value = value
        self.step = step
        super().__init__(f"the training loss became {value} at step {step}")


class TrainingError(SlmopsError):
    """Training stopped before it produced a model."""


class TrainingGroupFailed(RuntimeError):
    """The processes of a multi-process training run died or ran out of time. Not a
    SlmopsError on purpose: a retry (Airflow's, or a rerun) resumes from the last
    checkpoint, so it is retried like a killed worker, not failed at once."""


class PublishError(SlmopsError):
    """The run is not fit to publish."""


class NotPromoted(PublishError):
    """The run passed, but the published champion beat it; the champion stays."""


class SearchError(SlmopsError):
    """The search ran, but left nothing to choose from."""


class BenchmarkError(SlmopsError):
    """A model could not be measured."""


class BuilderUnsupported(SlmopsError):
    """The builder does not know this model's architecture."""


class ExportError(SlmopsError):
    """A model could not be exported to ONNX."""


class GenerationError(SlmopsError):
    """A request the exported model cannot serve (empty or too long prompt, adapters)."""


class RuntimeLoadError(SlmopsError):
    """An exported model folder could not be loaded."""


class ValidationFailed(SlmopsError):
    """The data broke at least one check of the suite."""

    def __init__(self, report: ValidationReport):
        failed = [check for check in report.checks if not check.passed]
        lines = [f"validation suite {report.suite!r} failed {len(failed)} check(s):"]
        for check in failed:
            lines.append(f"  - {check.name}: {check.explanation}")
            lines.extend(f"      {row['location']}: {row['value']!r}" for row in check.rows)
        super().__init__("\n".join(lines))
        self.report = report


class FormatError(SlmopsError):
    """A row cannot be rendered with the chosen text format."""


class DataError(SlmopsError):
    """A dataset file is missing, unreadable or malformed."""


class TrainingFolderBusy(RuntimeError):
    """Another live process holds the training folder's lock (often an earlier attempt of
    the same task that Airflow lost track of). Not a SlmopsError on purpose: a retry, once
    that process has finished or died, reuses or resumes its work, so it is retried."""


class TransientError(RuntimeError):
    """A service slmops depends on (the Hugging Face hub) failed in a way that usually
    passes: a connection error, a timeout, HTTP 429 or 5xx. Not a SlmopsError on purpose:
    the operators fail a SlmopsError for good and retry anything else, and a retry is
    what this needs."""
