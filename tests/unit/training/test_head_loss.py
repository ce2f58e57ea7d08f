"""head_loss: the LM head and the cross-entropy computed a chunk of tokens at a time give
torch's loss and gradients, and the trainer takes that path only where it may."""

from __future__ import annotations

import types

import pytest
import torch

from slmops.training import cpu_gemm
from slmops.training.head_loss import ENV, FusedHead, fused_head_for, head_cross_entropy

TOLERANCE = 1e-5  # rounding only: the same products and sums, in another order
BACKENDS = [cpu_gemm.MKL, cpu_gemm.ONEDNN] if cpu_gemm.onednn_available() else [cpu_gemm.MKL]


def head_inputs(tokens=37, hidden=24, vocabulary=301):
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(tokens, hidden, generator=generator)
    weight = torch.randn(vocabulary, hidden, generator=generator) * 0.3
    targets = torch.randint(0, vocabulary, (tokens,), generator=generator)
    return states, weight, targets


def loss_and_gradients(loss_of, states, weight, targets, upstream=0.7):
    states = states.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    loss = loss_of(states, weight, targets)
    (loss * upstream).backward()  # the Trainer divides the sum by the target count
    return loss.detach(), states.grad, weight.grad


def torch_loss(states, weight, targets):
    return torch.nn.functional.cross_entropy(states @ weight.t(), targets, reduction="sum")


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = expected.abs().max().clamp(min=1e-12)
    assert ((actual - expected).abs().max() / scale).item() <= TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [1, 8, 37, 256])  # 37 rows: chunks that do not divide it
def test_the_chunked_loss_and_its_gradients_are_torchs(backend, chunk):
    inputs = head_inputs()

    def fused(states, weight, targets):
        return head_cross_entropy(states, weight, targets, cpu_gemm.Gemm(backend), chunk)

    for actual, expected in zip(
        loss_and_gradients(fused, *inputs), loss_and_gradients(torch_loss, *inputs), strict=True
    ):
        assert_close(actual, expected)


def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_theirs():
    states, weight, targets = head_inputs()
    states = states.clone().requires_grad_()
    loss = head_cross_entropy(states, weight, targets, cpu_gemm.Gemm(cpu_gemm.MKL), 8)
    loss.backward()
    expected = loss_and_gradients(torch_loss, *head_inputs(), upstream=1.0)
    assert_close(states.grad, expected[1])
    assert not weight.requires_grad and weight.grad is None


def test_without_grad_only_the_loss_is_computed():
    states, weight, targets = head_inputs()
    states.requires_grad_()
    with torch.no_grad():
        loss = head_cross_entropy(states, weight, targets, cpu_gemm.Gemm(cpu_gemm.MKL), 8)
    assert not loss.requires_grad
    assert_close(loss, torch_loss(states.detach(), weight, targets))


def test_large_logits_do_not_overflow():
    states, weight, targets = head_inputs()
    states = states * 400  # logits in the thousands: exp() of them overflows float32
    loss, grad_states, _ = loss_and_gradients(
        lambda s, w, t: head_cross_entropy(s, w, t, cpu_gemm.Gemm(cpu_gemm.MKL), 8),
        states,
        weight,
        targets,
    )
    assert torch.isfinite(loss) and torch.isfinite(grad_states).all()
    assert_close(loss, torch_loss(states, weight, targets))


def test_the_head_passes_hidden_states_only_inside_the_block():
    head = torch.nn.Linear(4, 9, bias=False)
    fused = FusedHead(head, cpu_gemm.Gemm(cpu_gemm.MKL))
    x = torch.randn(3, 4)
    with fused.passing_hidden_states():
        assert head(x) is x and fused.passing
    assert head(x).shape == (3, 9) and not fused.passing
    with pytest.raises(RuntimeError), fused.passing_hidden_states():
        raise RuntimeError("a failed step")
    assert head(x).shape == (3, 9) and not fused.passing  # restored after an error too


class TinyCausalLM(torch.nn.Module):
    def __init__(self, head: torch.nn.Module, **config):
        super().__init__()
        self.head = head
        self.config = types.SimpleNamespace(**config)

    def get_output_embeddings(self):
        return self.head


def test_only_a_plain_float32_head_without_bias_is_taken(monkeypatch):
    gemm = cpu_gemm.Gemm(cpu_gemm.MKL)
    assert fused_head_for(TinyCausalLM(torch.nn.Linear(4, 9, bias=False)), gemm) is not None
    assert fused_head_for(TinyCausalLM(torch.nn.Linear(4, 9, bias=True)), gemm) is None
    half = torch.nn.Linear(4, 9, bias=False).to(torch.bfloat16)
    assert fused_head_for(TinyCausalLM(half), gemm) is None
    assert fused_head_for(TinyCausalLM(torch.nn.Identity()), gemm) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fused_head_for(TinyCausalLM(torch.nn.Linear(4, 9, bias=False)), gemm) is None
    plain = torch.nn.Linear(4, 9, bias=False)
    assert fused_head_for(TinyCausalLM(plain, final_logit_softcapping=None), gemm) is not None
    assert fused_head_for(TinyCausalLM(plain, logit_scale=1.0), gemm) is not None
    # The loss must see the logits a model changes after its head.
    assert fused_head_for(TinyCausalLM(plain, final_logit_softcapping=30.0), gemm) is None
    assert fused_head_for(TinyCausalLM(plain, logit_scale=0.0625), gemm) is None
    assert fused_head_for(TinyCausalLM(plain, logits_scaling=8.0), gemm) is None
    monkeypatch.setenv(ENV, "0")
    assert fused_head_for(TinyCausalLM(torch.nn.Linear(4, 9, bias=False)), gemm) is None


def test_without_a_chosen_gemm_one_is_timed_on_a_slice_of_the_head(monkeypatch):
    asked = []
    monkeypatch.setattr(
        cpu_gemm, "choose", lambda i, o: asked.append((i, o)) or cpu_gemm.Gemm(cpu_gemm.MKL)
    )
    fused = fused_head_for(TinyCausalLM(torch.nn.Linear(4, 900, bias=False)))
    assert fused.gemm.backend == cpu_gemm.MKL
    assert asked == [(4, 16)]


def test_a_lora_run_trains_with_the_fused_head_and_says_so(finetune_config, tmp_path):
    from slmops.training.run import run

    result = run(finetune_config(method="lora", output_path=tmp_path / "run"))
    assert result.metrics["cpu_kernels"]["fused_head_loss"] is True
