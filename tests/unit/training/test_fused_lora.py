"""fused_lora: a LoRA projection in one autograd function computes what peft's does."""

from __future__ import annotations

import copy

import pytest
import torch

from slmops.training import cpu_gemm, fused_lora
from slmops.training.dropout import LaneDropout, use_lane_dropout
from slmops.training.fused_lora import ENV, use_fused_lora

TOLERANCE = 1e-5  # rounding only: the same products, summed in another order
BACKENDS = [cpu_gemm.MKL, cpu_gemm.ONEDNN] if cpu_gemm.onednn_available() else [cpu_gemm.MKL]


class TwoProjections(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(24, 40, bias=True)
        self.down = torch.nn.Linear(40, 24, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def lora_model(dropout: float = 0.1, **settings):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["up", "down"], **settings
    )
    model = get_peft_model(TwoProjections(), config)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; a trained adapter is not
            torch.nn.init.normal_(parameter, std=0.2)
    return model


def outputs_and_gradients(model, x: torch.Tensor, seed: int = 5) -> list[torch.Tensor]:
    model.zero_grad()
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)
    y = model(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return [y.detach(), x.grad, *grads, torch.rand(2)]  # the last: the stream after it


def assert_same(fused: list[torch.Tensor], peft: list[torch.Tensor], tolerance=TOLERANCE):
    assert len(fused) == len(peft)
    for a, b in zip(fused, peft, strict=True):
        scale = b.abs().max().clamp(min=1e-12)
        assert ((a - b).abs().max() / scale).item() <= tolerance


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dropout_kind", ["lane", "torch", "none"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_outputs_gradients_and_masks_equal_peft_s(monkeypatch, backend, dropout_kind, mode):
    monkeypatch.setenv(cpu_gemm.ENV, backend)
    peft = lora_model(dropout=0.0 if dropout_kind == "none" else 0.1)  # 0: an Identity
    if dropout_kind == "lane":
        use_lane_dropout(peft)
    fused = copy.deepcopy(peft)
    count, gemm = use_fused_lora(fused)
    assert (count, gemm.backend) == (2, backend)
    getattr(peft, mode)()
    getattr(fused, mode)()
    x = torch.randn(3, 7, 24)
    assert_same(outputs_and_gradients(fused, x), outputs_and_gradients(peft, x))
    assert_same(outputs_and_gradients(fused, x[0]), outputs_and_gradients(peft, x[0]))  # 2-D


def count_fused_calls(monkeypatch) -> list:
    calls = []
    apply = fused_lora._LoraProjection.apply

    def counting(*args):
        calls.append(1)
        return apply(*args)

    monkeypatch.setattr(fused_lora._LoraProjection, "apply", counting)
    return calls


def test_the_fused_path_runs_in_training(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    model = lora_model()
    use_fused_lora(model)
    model.train()
    model(torch.randn(2, 24)).sum().backward()
    assert len(calls) == 2


@pytest.mark.parametrize(
    "case",
    ["autocast", "dora", "disabled adapters", "merged", "two active adapters", "trained base"],
)
def test_cases_it_does_not_take_go_to_peft_s_forward(monkeypatch, case):
    calls = count_fused_calls(monkeypatch)
    peft = lora_model(use_dora=case == "dora")
    if case == "two active adapters":
        from peft import LoraConfig

        peft.add_adapter("second", LoraConfig(r=2, target_modules=["up", "down"]))
        peft.base_model.set_adapter(["default", "second"])
    if case == "trained base":
        for layer in (peft.base_model.model.up, peft.base_model.model.down):
            layer.base_layer.weight.requires_grad_(True)
    fused = copy.deepcopy(peft)
    use_fused_lora(fused)
    x = torch.randn(4, 24)
    for model in (peft, fused):
        model.eval()
        if case == "merged":
            model.base_model.merge_adapter()
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected, actual = peft(x), fused(x)
    elif case == "disabled adapters":
        with peft.disable_adapter():
            expected = peft(x)
        with fused.disable_adapter():
            actual = fused(x)
    else:
        expected, actual = peft(x), fused(x)
    assert torch.equal(actual, expected)
    assert calls == []


def test_per_row_adapter_names_go_to_peft(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    peft = lora_model().eval()
    fused = copy.deepcopy(peft)
    use_fused_lora(fused)
    x = torch.randn(2, 24)
    names = ["default", "__base__"]
    assert torch.equal(fused(x, adapter_names=names), peft(x, adapter_names=names))
    assert calls == []


def test_the_backward_pass_keeps_the_masked_input_a_boolean_mask_and_the_rank_r_product():
    saved = []

    def pack(tensor):
        saved.append((tensor.dtype, tuple(tensor.shape)))
        return tensor

    model = lora_model()
    use_lane_dropout(model)
    use_fused_lora(model)
    model.train()
    layer = model.base_model.model.up
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(torch.randn(5, 24, requires_grad=True))
    assert sorted(saved, key=str) == sorted(
        [
            (torch.float32, (5, 24)),  # the masked input, for lora_A's gradient
            (torch.bool, (5, 24)),  # the mask, for the input's gradient
            (torch.float32, (5, 4)),  # x A^T, for lora_B's gradient
            (torch.float32, (40, 24)),  # the frozen weight and the two LoRA weights:
            (torch.float32, (4, 24)),  # parameters, not copies
            (torch.float32, (40, 4)),
        ],
        key=str,
    )


def test_switched_off_or_called_twice(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    model = lora_model()
    assert use_fused_lora(model) == (0, None)
    assert "forward" not in vars(model.base_model.model.up)
    monkeypatch.delenv(ENV)
    first = use_fused_lora(model)
    layer = model.base_model.model.up
    peft_forward = layer._peft_forward
    assert use_fused_lora(model)[0] == first[0] == 2
    assert layer._peft_forward is peft_forward  # not wrapped around itself


def test_a_llama_trains_through_it_with_lane_dropout(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=targets)
    peft = get_peft_model(model, config)
    use_lane_dropout(peft)
    fused = copy.deepcopy(peft)
    assert use_fused_lora(fused)[0] == 14  # seven projections in each of two layers
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    results = []
    for model in (peft, fused):
        model.train()
        torch.manual_seed(9)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        results.append([loss.detach(), *grads])
    assert isinstance(
        fused.base_model.model.model.layers[0].mlp.up_proj.lora_dropout["default"], LaneDropout
    )
    assert_same(results[1], results[0])
