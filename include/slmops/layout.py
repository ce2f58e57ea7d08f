"""Where things live on disk: a pipeline run's folder, a training folder and the store of
published models, each name spelled once.

This module imports only the standard library and slmops.artifacts (itself standard
library only), so DAG files, the CLI and every stage can use it without pulling in torch.
Nothing else in slmops spells these names.

A pipeline run (``RunLayout``, ARTIFACTS/runs/DAG_ID/RUN_ID)::

    plan.json                      what prepare decided; every stage reads its slice
    validation/validation.json     the Great Expectations report
    finetune/                      the training folder (``TrainingLayout``)
    champion/decision.json         champion / challenger (data-change runs)
    approval/decision.json         a reviewer's approve / reject (runs that require one)
    alerts.jsonl                   gate, parity and task failures the run notified
    hpo/trials.json, trials/NN/    hyperparameter search (slm_hpo): the record, each trial
    adapters/NAME/                 one pipeline per adapter (slm_multi_adapter)
    multi_adapter/                 its plan, shared ONNX base and scores
    report/                        report.md, report.html, summary.json
    tracking.json                  the run's MLflow run ids, or why it is not tracked

A training folder (``TrainingLayout``, also what ``slmops finetune -o`` writes)::

    run.json, training_metrics.json, checkpoints/, adapter/ or merged/, tensorboard/
    evaluation/evaluation.json, evaluation/gates.json
    evaluation/eval_set.json, evaluation/fine_tuned_answers.json   (read by parity, champion)
    onnx/TARGET/export.json, parity.json, benchmark.json

The published models (``ModelStore``, ARTIFACTS/models)::

    NAME/latest.json               the live version: VERSION, its path relative to the
                                   models root, its sequence number (only moves forward)
    NAME/.publish.lock             held while a version is challenged and published
    NAME/versions/VERSION/         the files (read-only copies), the report and
                                   manifest.json (with every file's sha256)

(``slmops.model_store`` is another store: the base models slmops provisions.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmops.artifacts import read_json_if_any

# -- a pipeline run's folder
PLAN_NAME = "plan.json"
VALIDATION_DIR = "validation"
VALIDATION_REPORT = "validation.json"  # also what `slmops validate -o DIR` writes into DIR
FINETUNE_DIR = "finetune"
CHAMPION_DIR = "champion"
DECISION_NAME = "decision.json"
APPROVAL_DIR = "approval"
ALERTS_NAME = "alerts.jsonl"
HPO_DIR = "hpo"
TRIALS_DIR = "trials"
TRIALS_NAME = "trials.json"
TRIAL_NAME = "trial.json"
ADAPTERS_DIR = "adapters"
MULTI_DIR = "multi_adapter"
SCORES_NAME = "scores.json"
REPORT_DIR = "report"
SUMMARY_NAME = "summary.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = (REPORT_MD, REPORT_HTML, SUMMARY_NAME)
TRACKING_NAME = "tracking.json"  # where the run is tracked (MLflow run ids), or why not

# -- a training folder
RUN_RECORD = "run.json"
METRICS_NAME = "training_metrics.json"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MERGED = "merged"
TENSORBOARD = "tensorboard"
LOCK_NAME = ".slmops.lock"
GROUP_SETTINGS = "group.json"  # a multi-process run's settings, for its processes
GROUP_ERROR = "group-error.json"
EVALUATION_FOLDER = "evaluation"  # RUN_PATH/evaluation when no --output_path is given
EVALUATION_NAME = "evaluation.json"
GATES_NAME = "gates.json"
EVAL_SET_NAME = "eval_set.json"  # the eval set evaluate scored, with its fingerprint
ANSWERS_NAME = "fine_tuned_answers.json"  # the fine-tuned model's greedy answers on it
ONNX_FOLDER = "onnx"  # RUN_PATH/onnx/<target> when no --output_path is given
EXPORT_RECORD = "export.json"
PARITY_NAME = "parity.json"
BENCHMARK_NAME = "benchmark.json"

# -- the published models
VERSIONS_DIR = "versions"
MANIFEST_NAME = "manifest.json"
LATEST_NAME = "latest.json"
PUBLISH_LOCK_NAME = ".publish.lock"


@dataclass(frozen=True)
class TrainingLayout:
    """A training folder: what the finetune stage writes, and where evaluation and the
    ONNX exports of that training go by default."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_record(self) -> Path:
        return self.root / RUN_RECORD

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def adapter(self) -> Path:
        return self.root / ADAPTER

    @property
    def merged(self) -> Path:
        return self.root / MERGED

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def lock(self) -> Path:
        """Held while a run writes the folder (one writer at a time)."""
        return self.root / LOCK_NAME

    @property
    def group_settings(self) -> Path:
        """What the processes of a multi-process run train (present while they run)."""
        return self.root / GROUP_SETTINGS

    @property
    def group_error(self) -> Path:
        """The refusal a process of a multi-process run ended with, for its launcher."""
        return self.root / GROUP_ERROR

    @property
    def evaluation(self) -> Path:
        return self.root / EVALUATION_FOLDER

    @property
    def evaluation_report(self) -> Path:
        return self.evaluation / EVALUATION_NAME

    @property
    def eval_set(self) -> Path:
        """The eval set evaluate scored; parity and champion read it when it matches."""
        return self.evaluation / EVAL_SET_NAME

    @property
    def fine_tuned_answers(self) -> Path:
        """The fine-tuned model's greedy token ids on that eval set, for parity."""
        return self.evaluation / ANSWERS_NAME

    def onnx(self, target: str | None = None) -> Path:
        """onnx/, or one target's export folder onnx/TARGET."""
        folder = self.root / ONNX_FOLDER
        return folder / target if target else folder


@dataclass(frozen=True)
class RunLayout:
    """One pipeline run's folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def plan(self) -> Path:
        return self.root / PLAN_NAME

    @property
    def validation(self) -> Path:
        return self.root / VALIDATION_DIR

    @property
    def validation_report(self) -> Path:
        return self.validation / VALIDATION_REPORT

    @property
    def finetune(self) -> TrainingLayout:
        return TrainingLayout(self.root / FINETUNE_DIR)

    def onnx(self, target: str | None = None) -> Path:
        return self.finetune.onnx(target)

    @property
    def decision(self) -> Path:
        return self.root / CHAMPION_DIR / DECISION_NAME

    @property
    def approval(self) -> Path:
        """approval/decision.json: who approved or rejected publishing, when and why."""
        return self.root / APPROVAL_DIR / DECISION_NAME

    @property
    def alerts(self) -> Path:
        """alerts.jsonl: one line per notice the run sent (gate, parity, task failures)."""
        return self.root / ALERTS_NAME

    @property
    def hpo(self) -> Path:
        return self.root / HPO_DIR

    @property
    def hpo_plan(self) -> Path:
        return self.hpo / PLAN_NAME

    @property
    def trials(self) -> Path:
        """hpo/trials.json: every trial's settings and outcome."""
        return self.hpo / TRIALS_NAME

    def trial(self, index: int) -> RunLayout:
        """One HPO trial's own pipeline folder, trials/NN."""
        return RunLayout(self.root / TRIALS_DIR / f"{index:02d}")

    def adapter(self, name: str) -> RunLayout:
        """One adapter's own pipeline folder in a multi-adapter run."""
        return RunLayout(self.root / ADAPTERS_DIR / name)

    @property
    def multi(self) -> Path:
        """multi_adapter/: the multi-adapter run's plan, shared base and scores."""
        return self.root / MULTI_DIR

    @property
    def multi_plan(self) -> Path:
        return self.multi / PLAN_NAME

    @property
    def multi_scores(self) -> Path:
        return self.multi / SCORES_NAME

    @property
    def is_multi_adapter(self) -> bool:
        return self.multi_plan.is_file()

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def tracking(self) -> Path:
        return self.root / TRACKING_NAME

    @property
    def summary(self) -> Path:
        return self.report / SUMMARY_NAME

    @property
    def report_html(self) -> Path:
        return self.report_html_in(self.report)

    @staticmethod
    def report_html_in(report_dir: Path) -> Path:
        """The page of a report written into ``report_dir`` (the run's own, or elsewhere)."""
        return Path(report_dir) / REPORT_HTML


@dataclass(frozen=True)
class ModelStore:
    """The published models under one root: NAME/versions/VERSION/ and NAME/latest.json."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def versions(self, name: str) -> Path:
        return self.root / name / VERSIONS_DIR

    def version(self, name: str, version: str) -> Path:
        return self.versions(name) / version

    def latest(self, name: str) -> Path:
        """NAME/latest.json."""
        return self.root / name / LATEST_NAME

    @staticmethod
    def manifest(version_dir: Path) -> Path:
        return Path(version_dir) / MANIFEST_NAME

    @staticmethod
    def onnx(version_dir: Path, target: str) -> Path:
        """A published ONNX target: VERSION/onnx/TARGET (the run folder's own layout)."""
        return Path(version_dir) / ONNX_FOLDER / target

    @staticmethod
    def latest_of(version_dir: Path) -> Path:
        """The latest.json of the model that ``version_dir`` is a version of."""
        return Path(version_dir).parent.parent / LATEST_NAME

    def lock(self, name: str) -> Path:
        """NAME/.publish.lock: held (flock) while a version of NAME is challenged and
        written and latest.json moves."""
        return self.root / name / PUBLISH_LOCK_NAME

    def relative(self, version_dir: Path) -> str:
        """A version folder as latest.json records it: relative to the models root, so
        the store can move (NAME/versions/VERSION)."""
        return Path(version_dir).relative_to(self.root).as_posix()

    def latest_record(self, name: str) -> dict | None:
        """NAME/latest.json as written (None when nothing is published or it is unreadable)."""
        try:
            latest = read_json_if_any(self.latest(name))
        except ValueError:
            return None
        return latest if isinstance(latest, dict) else None

    def latest_named(self, name: str) -> Path | None:
        """The version folder latest.json names, whether or not it is there: a relative
        path (under the models root), an absolute one (older stores; its version name
        under this root when the store moved), or a bare version name."""
        latest = self.latest_record(name)
        if not latest:
            return None
        path = latest.get("path")
        if path and not Path(path).is_absolute():
            return self.root / path
        if path and (self.manifest(path).is_file() or not latest.get("version")):
            return Path(path)
        version = latest.get("version") or Path(path).name
        return self.version(name, version) if version else None

    def latest_version(self, name: str) -> Path | None:
        """The version folder NAME/latest.json points at, if it is there whole."""
        version = self.latest_named(name)
        return version if version is not None and self.manifest(version).is_file() else None
