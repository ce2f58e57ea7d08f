"""The LM head and the cross-entropy as one step, a slice of tokens at a time, on CPU.

With the labeled logits (slmops.training.trainer) the head runs only where the next token
is a target, but on instruction rows that is most of the tokens: 1,176 of 1,752 in a batch
of the long rows, so the head still writes a 1176 x 49152 float32 matrix (231 MB), the
log-softmax another and the backward a third, each too big for any cache, and its product
ran at 56-127 GFLOP/s, against 157-188 for the projections' products. Here the loss is
computed ``CHUNK_TOKENS`` rows at a time: the chunk's logits (in cache), their
log-sum-exp and the target's logit, then at once the logits' gradient (softmax minus
one-hot, in place) and its product with the head's weight, the hidden states' gradient.
Backward only scales what the forward kept. The same float32 arithmetic as
``cross_entropy(hidden @ W^T, targets, reduction="sum")``; sums in
another order (about 1e-7 relative; tests/unit/training/test_head_loss.py).

Taken for a plain float32 ``nn.Linear`` head without bias on CPU, whose logits the model
uses as they are (LOGIT_TRANSFORMS), with no autocast, while
training (``return_outputs`` asks for logits, which evaluation keeps getting the earlier
way). SLMOPS_FUSED_HEAD=0 keeps the labeled logits and torch's cross-entropy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from slmops.config import switched_off
from slmops.training import cpu_gemm

ENV = "SLMOPS_FUSED_HEAD"
# Models that change the logits after the head (Gemma's soft-capping, Cohere's and
# Granite's scaling) keep the logits path: the loss must see the model's own logits.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# 256 x 49152 float32 logits = 50 MB a chunk. Side by side on the bundled model's head
# (1176 target tokens, AMD EPYC): chunks of 64, 128, 256 and 512 took 1085, 1029, 947 and
# 1114 ms against 1340 ms for the whole matrix; smaller chunks read the 113 MB weight more
# often, larger ones leave the cache.
CHUNK_TOKENS = 256


class _HeadCrossEntropy(torch.autograd.Function):
    """``sum_i cross_entropy(hidden_i W^T, target_i)``; gradients computed in the forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, gemm, chunk_tokens, grad_enabled):
        # needs_input_grad stays True under no_grad: the caller says whether grad is on.
        needs_hidden, needs_weight = (grad_enabled and needs for needs in ctx.needs_input_grad[:2])
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        grad_weight = torch.zeros_like(weight) if needs_weight else None
        total = hidden.new_zeros(())
        for start in range(0, hidden.shape[0], chunk_tokens):
            rows = hidden[start : start + chunk_tokens]
            chunk_targets = targets[start : start + chunk_tokens, None]
            logits = gemm.linear(rows, weight, None)
            picked = logits.gather(1, chunk_targets)
            peak = logits.amax(1, keepdim=True)
            sums = logits.sub_(peak).exp_().sum(1, keepdim=True)
            total += (peak + sums.log() - picked).sum()
            if not (needs_hidden or needs_weight):
                continue
            probabilities = logits.div_(sums)
            probabilities.scatter_add_(1, chunk_targets, probabilities.new_full(picked.shape, -1))
            if grad_hidden is not None:
                grad_hidden[start : start + chunk_tokens] = gemm.grad_input(probabilities, weight)
            if grad_weight is not None:
                grad_weight.addmm_(probabilities.t(), rows)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            None if grad_hidden is None else grad_hidden * grad_total,
            None if grad_weight is None else grad_weight * grad_total,
            None,
            None,
            None,
            None,
        )


def head_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    gemm: cpu_gemm.Gemm,
    chunk_tokens: int = CHUNK_TOKENS,
) -> torch.Tensor:
    """The summed cross-entropy of ``hidden @ weight^T`` (tokens x vocabulary) against
    ``targets`` (one index per row, none ignored), without the whole logits matrix."""
    return _HeadCrossEntropy.apply(
        hidden.contiguous(),
        weight,
        targets.contiguous(),
        gemm,
        chunk_tokens,
        torch.is_grad_enabled(),
    )


@dataclass
class FusedHead:
    """A model's LM head, computed with the loss instead of on its own."""

    head: torch.nn.Linear
    gemm: cpu_gemm.Gemm
    passing: bool = False  # inside passing_hidden_states()

    @contextmanager
    def passing_hidden_states(self) -> Iterator[None]:
        """While inside, the head returns its input: the model's ``logits`` are the hidden
        states at the positions it was asked for (``logits_to_keep``)."""
        self.head.forward = _unchanged
        self.passing = True
        try:
            yield
        finally:
            del self.head.forward
            self.passing = False

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return head_cross_entropy(hidden, self.head.weight, targets, self.gemm)


def _unchanged(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


def fused_head_for(model, gemm: cpu_gemm.Gemm | None = None) -> FusedHead | None:
    """The model's head to compute with the loss, or None: SLMOPS_FUSED_HEAD=0, no plain
        float32 CPU ``nn.Linear`` head without bias, autocast on, or logits the model changes
    after its head (LOGIT_TRANSFORMS). ``gemm``: the GEMM library
        already chosen for the model's projections (timed here on a head-wide slice if None)."""
    if switched_off(ENV):
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    plain = (
        type(head) is torch.nn.Linear
        and head.bias is None
        and head.weight.dtype == torch.float32
        and head.weight.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
    )
    config = getattr(model, "config", None)
    if not plain or any(getattr(config, name, None) not in (None, 1) for name in LOGIT_TRANSFORMS):
        return None
    if gemm is None:  # the probe's cost grows with its width: 4 x hidden is a projection's
        gemm = cpu_gemm.choose(head.in_features, min(head.out_features, 4 * head.in_features))
    return FusedHead(head, gemm)
