"""LoRA dropout on CPU with masks drawn four elements per random word.

peft puts a ``torch.nn.Dropout`` before every adapter: seven per layer of a Llama whose
projections are all adapted. On CPU torch draws a dropout mask one element at a time, a
64-bit Mersenne Twister word and a comparison each, on one thread while the other cores
wait (pytorch/pytorch#138199): about a fifth of a LoRA step on the bundled model's
200-token rows (py-spy), 9 ms for a 1M-element mask against about 1.2 ms here.

``LaneDropout`` takes the same kind of mask, four elements per 64-bit word: each 16-bit
lane is kept when it is at least ``round(p * 65536)`` (so the drop probability is p to
1/65536), and kept values are scaled by the inverse of that realised keep probability, so
the expected output is the input exactly. The mask is kept for the backward pass as
booleans, not torch's float noise: a quarter of the memory. Each mask's words come from a
generator seeded by one draw from torch's default generator (``random_words``), which the
Trainer seeds (``--seed``) and saves in every checkpoint, so runs and resumed runs repeat.
They are not torch's own stream: a run's masks differ as they would under another seed
(tests/unit/training/test_loss_equality.py says by how much on its fixed run). On a GPU
torch's fused dropout is kept; SLMOPS_FAST_DROPOUT=0 keeps torch's dropout on CPU too.
"""

from __future__ import annotations

import numpy as np
import torch

from slmops.config import switched_off

ENV = "SLMOPS_FAST_DROPOUT"
_LANES = 1 << 16
_INT16_MIN = -(1 << 15)


def random_words(count: int) -> torch.Tensor:
    """``count`` random 64-bit words (int64). The seed is one draw from torch's default
    generator; the words come from numpy's SFC64 (a small, fast generator that passes
    BigCrush and PractRand) at about a third of the time torch's Mersenne Twister takes
    to draw them one 64-bit integer at a time on one thread."""
    seed = int(torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64))
    return torch.from_numpy(np.random.SFC64(seed).random_raw(count).view(np.int64))


class _KeepAndScale(torch.autograd.Function):
    """``x * keep * scale`` that saves the boolean mask, not a float copy of it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


class LaneDropout(torch.nn.Module):
    """Inverted dropout with drop probability ``p`` (to 1/65536); identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.dropped_lanes = round(p * _LANES)
        self.scale = _LANES / (_LANES - self.dropped_lanes)

    def keep_mask(self, shape: torch.Size) -> torch.Tensor:
        count = shape.numel()
        lanes = random_words((count + 3) // 4).view(torch.int16)[:count].view(shape)
        return lanes >= _INT16_MIN + self.dropped_lanes

    def mask_and_scale(self, shape: torch.Size) -> tuple[torch.Tensor | None, float]:
        """The mask and scale for an input of ``shape``; ``(None, 1.0)`` where this layer
        leaves its input as it is (eval mode, p = 0)."""
        if not self.training or self.dropped_lanes == 0:
            return None, 1.0
        return self.keep_mask(shape), self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, scale = self.mask_and_scale(x.shape)
        return x if keep is None else _KeepAndScale.apply(x, keep, scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lane_dropout(model) -> int:
    """Swap the ``torch.nn.Dropout`` before each adapter of a peft model on CPU for a
    ``LaneDropout`` of the same p; the number swapped (0 when SLMOPS_FAST_DROPOUT=0)."""
    if switched_off(ENV):
        return 0
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for adapter, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout:
                dropouts[adapter] = LaneDropout(dropout.p)
                swapped += 1
    return swapped


def keep_mask_for(dropout: torch.nn.Module, shape: torch.Size):
    """The mask and scale ``dropout`` would apply to an input of ``shape``, for code that
    applies them itself: ``(keep, scale)``, ``(None, 1.0)`` when it would leave the input as
    it is, None for a module this does not know. A torch Dropout's mask is drawn as torch
    draws it (``bernoulli_(1 - p)`` on the default generator), so the stream is the same."""
    if isinstance(dropout, torch.nn.Identity):
        return None, 1.0
    if isinstance(dropout, LaneDropout):
        return dropout.mask_and_scale(shape)
    if type(dropout) is torch.nn.Dropout and dropout.p < 1:
        if not dropout.training or dropout.p == 0:
            return None, 1.0
        keep = torch.empty(shape).bernoulli_(1 - dropout.p).bool()
        return keep, 1 / (1 - dropout.p)
    return None
