"""Fine-tuning: LoRA, QLoRA, DoRA or full, with transformers' Trainer and peft.

``run.run(FinetuneConfig) -> TrainingResult`` trains into a training folder
(``slmops.layout.TrainingLayout``), resumes from its last checkpoint, and reuses a finished
run with the same settings. ``adapters`` applies and merges adapters for later stages.
"""

from slmops import lazy_exports

_ENTRY_POINTS = {
    "FinetuneConfig": "slmops.training.config",
    "TrainingResult": "slmops.training.folder",
    "apply_adapter": "slmops.training.adapters",
    "merge_into_base": "slmops.training.adapters",
    "check_adapter_folder": "slmops.training.adapters",
}
__all__ = sorted(_ENTRY_POINTS)
__getattr__ = lazy_exports(__name__, _ENTRY_POINTS)
