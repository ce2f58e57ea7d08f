"""The training folder of a fine-tuning run: who may write it, what it holds, where to resume.

    run.json                what is being learned (settings that matter + data fingerprint)
    checkpoints/            Trainer checkpoints
    adapter/  merged/       the results, each renamed into place when complete
    training_metrics.json   written last: its presence means the run finished

A second process training into the same folder is refused while the first holds its lock
(``slmops.training.lock``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from slmops.artifacts import atomic_write_json
from slmops.errors import ConfigError
from slmops.layout import (
    ADAPTER,
    CHECKPOINTS,
    MERGED,
    METRICS_NAME,
    RUN_RECORD,
    TENSORBOARD,
    TrainingLayout,
)
from slmops.models import recorded_path
from slmops.progress import Log
from slmops.training.config import FinetuneConfig

_RUN_ENTRIES = (RUN_RECORD, METRICS_NAME, CHECKPOINTS, ADAPTER, MERGED, TENSORBOARD)


@dataclass
class TrainingResult:
    training_dir: Path
    adapter_path: Path | None  # None for full fine-tuning
    merged_path: Path | None  # None when merge_adapter is off
    metrics: dict
    reused: bool = False  # the run was already complete; nothing was trained

    @property
    def metrics_path(self) -> Path:
        return TrainingLayout(self.training_dir).metrics

    def summary(self) -> dict:
        """Where the outputs are and the headline numbers (what the CLI prints)."""
        keys = ("global_step", "final_train_loss", "best_eval_loss", "tokens_per_second")
        return {
            "output_path": str(self.training_dir),
            "adapter": str(self.adapter_path) if self.adapter_path else None,
            "merged": str(self.merged_path) if self.merged_path else None,
            **{key: self.metrics[key] for key in keys},
            "reused": self.reused,
        }


def claim(config: FinetuneConfig, fingerprint: str, log: Log) -> bool:
    """Record this run in its folder; True when the same run already finished there."""
    training_dir = config.training_dir
    record_path = config.folder.run_record
    record = {"config": config.identity(), "dataset_fingerprint": fingerprint}
    present = [name for name in _RUN_ENTRIES if (training_dir / name).exists()]
    if present and config.overwrite:
        log(f"--overwrite: removing the previous run in {training_dir}")
        for name in present:
            path = training_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    # A record alone means an attempt that failed before training: its settings may change.
    elif set(present) - {RUN_RECORD}:
        if not record_path.is_file():
            raise ConfigError(
                f"{training_dir} holds {', '.join(present)} from an unknown run; choose another "
                "--output_path (or --task_name), or pass --overwrite to replace it"
            )
        previous = json.loads(record_path.read_text(encoding="utf-8"))
        changes = _differences(previous, record)
        if changes:
            raise ConfigError(
                f"{training_dir} holds a run with other settings ({'; '.join(changes)}); a rerun "
                "resumes only with the same settings and data. Choose another --output_path "
                "(or --task_name), or pass --overwrite to start over"
            )
        return config.folder.metrics.is_file()
    atomic_write_json(record_path, record)
    return False


def _differences(previous: dict, current: dict) -> list[str]:
    changes = [
        f"{name}: {previous['config'].get(name)!r} -> {value!r}"
        for name, value in current["config"].items()
        if previous.get("config", {}).get(name) != value
    ]
    if previous.get("dataset_fingerprint") != current["dataset_fingerprint"]:
        changes.append("the training data differ")
    return changes


def finished_result(config: FinetuneConfig) -> TrainingResult:
    metrics = json.loads(config.folder.metrics.read_text(encoding="utf-8"))
    return TrainingResult(
        config.training_dir,
        recorded_output(config.training_dir, metrics, ADAPTER),
        recorded_output(config.training_dir, metrics, MERGED),
        metrics,
        reused=True,
    )


def recorded_output(run_path: Path, history: dict | None, name: str) -> Path | None:
    """The run's ``name`` output (adapter/ or merged/) as its training_metrics.json records
    it, which must stay inside the run folder (metadata is data: it may be edited)."""
    relative = (history or {}).get("outputs", {}).get(name)
    if not relative:
        return None
    return recorded_path(Path(run_path), relative, str(TrainingLayout(Path(run_path)).metrics))


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint; one cut short by a crash (no trainer_state.json,
    which transformers writes last) is deleted so the previous one is used."""
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(path.name.rsplit("-", 1)[1]), path)
        for path in folder.glob("checkpoint-*")
        if path.is_dir() and path.name.rsplit("-", 1)[1].isdigit()
    )
    for _, path in reversed(steps):
        if (path / "trainer_state.json").is_file():
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def finished_training(checkpoint: Path):
    """The TrainerState of ``checkpoint`` if it is the run's last step, else None.

    transformers resumed from a final checkpoint trains one step too many, so such a run
    is completed from the checkpoint instead of resumed.
    """
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    return state if state.max_steps and state.global_step >= state.max_steps else None


def best_checkpoint(state, checkpoints: Path, fallback: Path) -> Path:
    """The best checkpoint named by ``state``, found in this run's folder even if moved."""
    if state.best_model_checkpoint:
        candidate = checkpoints / Path(state.best_model_checkpoint).name
        if candidate.is_dir():
            return candidate
    return fallback
