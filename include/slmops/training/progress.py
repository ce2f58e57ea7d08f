"""Progress lines during training: step/total, loss, eval loss, learning rate, tokens/s, ETA."""

from __future__ import annotations

import time
from collections.abc import Callable

from slmops.progress import Log


def format_duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def progress_callback(log: Log, tokens_seen: Callable[[], int]):
    """A TrainerCallback writing one line per ``logging_steps`` and per evaluation.

    Rates count from the first step of this process, so a resumed run's ETA is honest.
    """
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self):
            self.started = 0.0
            self.first_step = 0
            self.first_tokens = 0
            self.eval_loss: float | None = None
            self.best: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.first_step = state.global_step
            self.first_tokens = tokens_seen()
            if state.global_step:
                log(f"resumed at step {state.global_step}/{state.max_steps}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "eval_loss" in logs:
                self.eval_loss = logs["eval_loss"]
                self.best = self.eval_loss if self.best is None else min(self.best, self.eval_loss)
                log(
                    f"eval  step {state.global_step}/{state.max_steps}  eval_loss "
                    f"{self.eval_loss:.4f}  best {self.best:.4f}"
                )
            if "loss" in logs:
                log(self._line(state, logs))

        def _line(self, state, logs) -> str:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            done = state.global_step - self.first_step
            tokens_per_s = (tokens_seen() - self.first_tokens) / elapsed
            eta = elapsed / done * (state.max_steps - state.global_step) if done else 0.0
            parts = [
                f"step {state.global_step}/{state.max_steps}",
                f"loss {logs['loss']:.4f}",
            ]
            if self.eval_loss is not None:
                parts.append(f"eval_loss {self.eval_loss:.4f}")
            if "learning_rate" in logs:
                parts.append(f"lr {logs['learning_rate']:.2e}")
            parts += [f"{tokens_per_s:,.0f} tok/s", f"ETA {format_duration(eta)}"]
            return "  ".join(parts)

    return ProgressCallback()


def final_step_callback():
    """A TrainerCallback that logs, evaluates and checkpoints the last step too, so steps
    after the last ``eval_steps`` multiple count when the best checkpoint is chosen."""
    from transformers import TrainerCallback

    class FinalStepCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
                control.should_evaluate = True
                control.should_save = True
            return control

    return FinalStepCallback()
