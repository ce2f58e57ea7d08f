"""A LoRA projection's forward and backward in fewer passes over memory, on CPU.

peft computes an adapted projection as ``base(x) + lora_B(lora_A(dropout(x))) * scaling``:
besides the products, the dropout, the ``* scaling`` and the ``+`` each read and write a
whole activation, and autograd adds as many passes backward (the dropout's mask applied
again, the scaling's gradient, the two input gradients summed). Here one autograd function
does the same arithmetic with the passes folded into the products: the masked input is
taken once (``where``), the two scales become one number applied to the rank-r product,
the LoRA term is added by the GEMM that writes it (``addmm_``, beta 1), and the input's
gradient is accumulated the same way. The frozen base weight's products run on the faster
CPU GEMM here (slmops.training.cpu_gemm). Same masks, drawn from the same dropout module
and generator; the results differ from peft's in rounding only
(tests/unit/training/test_fused_lora.py, test_loss_equality.py).

Only the plain case is taken: training or evaluating one active LoRA adapter in float32 on
CPU, a torch Linear base whose weight is frozen, no lora bias, no DoRA or other variant, no
autocast, no per-row adapter names. Anything else goes to peft's own forward.
SLMOPS_FUSED_LORA=0 leaves peft's forward everywhere.
"""

from __future__ import annotations

import types

import torch

from slmops.config import switched_off
from slmops.training import cpu_gemm
from slmops.training.dropout import keep_mask_for

ENV = "SLMOPS_FUSED_LORA"


class _LoraProjection(torch.autograd.Function):
    """``x W^T + b + scale * ((x * keep) A^T) B^T`` for 2-D ``x``; W and b frozen."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, keep, scale, gemm):
        out = gemm.linear(x, weight, bias)
        masked = x if keep is None else torch.where(keep, x, 0)
        down = masked @ lora_a.t()
        out.addmm_(down, lora_b.t(), alpha=scale)
        ctx.save_for_backward(masked, keep, down, weight, lora_a, lora_b)
        ctx.scale, ctx.gemm = scale, gemm
        return out

    @staticmethod
    def backward(ctx, grad):
        masked, keep, down, weight, lora_a, lora_b = ctx.saved_tensors
        grad = grad.contiguous()
        needs_x, _, _, needs_a, needs_b = ctx.needs_input_grad[:5]
        grad_b = (grad.t() @ down).mul_(ctx.scale) if needs_b else None
        grad_down = (grad @ lora_b).mul_(ctx.scale)
        grad_a = grad_down.t() @ masked if needs_a else None
        grad_x = None
        if needs_x:
            lora_part = grad_down @ lora_a
            if keep is not None:
                lora_part = torch.where(keep, lora_part, 0)
            grad_x = ctx.gemm.grad_input(grad, weight, add_to=lora_part)
        return grad_x, None, None, grad_a, grad_b, None, None, None


def _plain_adapter(layer, x: torch.Tensor, args, kwargs) -> str | None:
    """The one adapter this layer would apply to ``x`` the plain way, else None."""
    if args or kwargs or layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1 or active[0] in getattr(layer, "lora_variant", {}):
        return None
    adapter = active[0]
    base, lora_a, lora_b = layer.base_layer, layer.lora_A[adapter], layer.lora_B[adapter]
    plain = (
        type(base) is torch.nn.Linear
        and x.device.type == "cpu"
        and x.dtype == base.weight.dtype == lora_a.weight.dtype == torch.float32
        and not base.weight.requires_grad
        and (base.bias is None or not base.bias.requires_grad)
        and lora_b.bias is None
        and not torch.is_autocast_enabled("cpu")
    )
    return adapter if plain else None


def _forward(layer, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapter = _plain_adapter(layer, x, args, kwargs)
    mask = keep_mask_for(layer.lora_dropout[adapter], x.shape) if adapter else None
    if mask is None:
        return layer._peft_forward(x, *args, **kwargs)
    keep, dropout_scale = mask
    base = layer.base_layer
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = _LoraProjection.apply(
        flat,
        base.weight,
        base.bias,
        layer.lora_A[adapter].weight,
        layer.lora_B[adapter].weight,
        None if keep is None else keep.view(flat.shape),
        layer.scaling[adapter] * dropout_scale,
        layer._slmops_gemm,
    )
    return out.view(*x.shape[:-1], out.shape[-1])


def use_fused_lora(model) -> tuple[int, cpu_gemm.Gemm | None]:
    """Give every plain peft LoRA Linear of ``model`` the fused forward (peft's stays for the
    cases it does not take): how many, and the GEMM chosen for the largest projection's
    shape (0, None when SLMOPS_FUSED_LORA=0 or there are none)."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if switched_off(ENV):
        return 0, None
    layers = [m for m in model.modules() if type(m) is LoraLinear]
    if not layers:
        return 0, None
    largest = max(layers, key=lambda m: m.in_features * m.out_features)
    gemm = cpu_gemm.choose(largest.in_features, largest.out_features)
    for layer in layers:
        if "_peft_forward" not in vars(layer):
            layer._peft_forward = layer.forward
            layer.forward = types.MethodType(_forward, layer)
        layer._slmops_gemm = gemm
    return len(layers), gemm
