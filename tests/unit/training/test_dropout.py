"""LaneDropout: torch's inverted dropout, masks drawn four lanes per random word."""

from __future__ import annotations

import pytest
import torch

from slmops.training.dropout import ENV, LaneDropout, use_lane_dropout

ELEMENTS = 1 << 20


def dropped_share(mask: torch.Tensor) -> float:
    return 1.0 - mask.float().mean().item()


def within_five_sigma(share: float, p: float, count: int) -> bool:
    return abs(share - p) <= 5 * (p * (1 - p) / count) ** 0.5


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_each_lane_of_a_word_drops_at_the_rate_asked(p):
    torch.manual_seed(0)
    mask = LaneDropout(p).keep_mask(torch.Size([ELEMENTS]))
    assert within_five_sigma(dropped_share(mask), p, ELEMENTS)
    for lane in range(4):  # every 16 bits of a 64-bit word, the sign bits included
        assert within_five_sigma(dropped_share(mask[lane::4]), p, ELEMENTS // 4), lane


def test_kept_values_are_scaled_so_the_expected_output_is_the_input():
    torch.manual_seed(1)
    layer = LaneDropout(0.05)
    x = torch.rand(64, 128, 96) + 0.5
    out = layer(x)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] * layer.scale)
    # The scale inverts the realised keep probability (p to 1/65536), not 1 - p.
    assert layer.scale == 65536 / (65536 - round(0.05 * 65536))
    assert layer.scale == pytest.approx(1 / 0.95, rel=1e-5)
    ones = LaneDropout(0.2)(torch.ones(ELEMENTS))
    assert ones.mean().item() == pytest.approx(1.0, abs=5 * (0.2 / 0.8 / ELEMENTS) ** 0.5)


def test_the_gradient_passes_through_kept_elements_only_with_the_same_scale():
    torch.manual_seed(2)
    layer = LaneDropout(0.3)
    x = (torch.rand(8, 50, 64) + 0.5).requires_grad_()
    weights = torch.randn(8, 50, 64)
    out = layer(x)
    (out * weights).sum().backward()
    kept = (out != 0).float()
    assert torch.allclose(x.grad, weights * kept * layer.scale)


def test_the_backward_pass_keeps_a_boolean_mask_not_a_float_copy():
    saved = []

    def pack(tensor):
        saved.append(tensor.dtype)
        return tensor

    x = torch.rand(4, 16, 32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        LaneDropout(0.1)(x)
    assert saved == [torch.bool]


def test_torch_seed_repeats_the_masks_and_another_seed_changes_them():
    layer = LaneDropout(0.1)
    x = torch.ones(4, 32, 64)
    torch.manual_seed(7)
    first = layer(x)
    torch.manual_seed(7)
    again = layer(x)
    torch.manual_seed(8)
    other = layer(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_eval_mode_and_zero_probability_return_the_input_itself():
    x = torch.rand(3, 5)
    layer = LaneDropout(0.5).eval()
    assert layer(x) is x
    assert LaneDropout(0.0)(x) is x


def test_bfloat16_input_keeps_its_dtype():
    torch.manual_seed(3)
    out = LaneDropout(0.1)(torch.ones(16, 64, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    values = out.unique().tolist()
    assert values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9, rel=1e-2) and len(values) == 2


def test_probabilities_outside_zero_to_one_are_refused():
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1.0"):
        LaneDropout(1.0)


def _lora_model(tiny_model_dir, dropout: float):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj"]
    )
    return get_peft_model(model, config)


def _dropout_types(model) -> set[type]:
    return {type(m.lora_dropout["default"]) for m in model.modules() if hasattr(m, "lora_dropout")}


def test_every_adapter_of_a_peft_model_gets_one(tiny_model_dir):
    model = _lora_model(tiny_model_dir, 0.05)
    assert use_lane_dropout(model) == 4  # two projections in each of the two layers
    assert _dropout_types(model) == {LaneDropout}
    model.train()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    model(input_ids=ids, labels=ids).loss.backward()  # trains through it


def test_switched_off_or_without_dropout_the_model_is_left_alone(tiny_model_dir, monkeypatch):
    monkeypatch.setenv(ENV, "0")
    model = _lora_model(tiny_model_dir, 0.05)
    assert use_lane_dropout(model) == 0
    assert _dropout_types(model) == {torch.nn.Dropout}
    monkeypatch.delenv(ENV)
    without = _lora_model(tiny_model_dir, 0.0)  # peft puts an Identity there
    assert use_lane_dropout(without) == 0
    assert _dropout_types(without) == {torch.nn.Identity}


def test_a_mask_takes_one_draw_from_torchs_generator():
    # the rest of the run's random stream (and a resumed run's) does not depend on mask sizes
    torch.manual_seed(5)
    LaneDropout(0.1).keep_mask(torch.Size([3, 1000]))
    after_mask = torch.rand(4)
    torch.manual_seed(5)
    torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64)
    assert torch.equal(after_mask, torch.rand(4))


def test_consecutive_masks_differ():
    torch.manual_seed(6)
    layer = LaneDropout(0.5)
    assert not torch.equal(layer.keep_mask(torch.Size([4096])), layer.keep_mask(torch.Size([4096])))
