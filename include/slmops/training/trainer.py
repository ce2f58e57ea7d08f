"""transformers' Trainer with what slmops adds: a count of real tokens per step, a stop at
the first NaN/inf loss (before it reaches the weights), and pluggable loss functions."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable

from slmops.data.batching import IGNORE_INDEX, TOKEN_COUNT
from slmops.errors import ConfigError, NonFiniteLossError


def load_loss_hook(spec: str) -> Callable:
    """``module.path:callable`` -> the callable; a class is instantiated with no arguments
    (an ``nn.Module`` loss such as the reference guide's contrastive loss)."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"--loss {spec}: cannot import {module_name!r} ({exc}); the module must be on "
            "PYTHONPATH (or installed) where training runs"
        ) from None
    hook = getattr(module, attribute, None)
    if hook is None:
        raise ConfigError(f"--loss {spec}: module {module_name!r} has no {attribute!r}")
    if inspect.isclass(hook):
        hook = hook()
    if not callable(hook):
        raise ConfigError(f"--loss {spec}: {attribute!r} is not callable")
    return hook


def shifted_cross_entropy(logits, labels, num_items_in_batch=None):
    """Next-token cross-entropy over labelled positions: the default causal-LM loss, for
    custom losses to build on (labels arrive aligned with the inputs, not shifted)."""
    import torch

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:].to(logits.device)
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = (
        num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    )
    return total / count


def build_trainer(*, loss_hook: Callable | None = None, **kwargs):
    """A ``SlmopsTrainer``; built here so transformers is imported only when training."""
    from transformers import Trainer

    class SlmopsTrainer(Trainer):
        def __init__(self, **trainer_kwargs):
            super().__init__(compute_loss_func=loss_hook, **trainer_kwargs)
            self.train_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            tokens = inputs.pop(TOKEN_COUNT, 0)
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            if model.training:
                self.train_tokens += int(tokens)
                loss = result[0] if return_outputs else result
                value = float(loss.detach().float().mean())
                if not math.isfinite(value):
                    # Raised before backward(): the weights and checkpoints stay finite.
                    raise NonFiniteLossError(value, self.state.global_step + 1)
            return result

    return SlmopsTrainer(**kwargs)
