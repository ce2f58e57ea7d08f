"""Target-module discovery, bitsandbytes gating, device placement and adapter merging."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from slmops.devices import place
from slmops.errors import ConfigError
from slmops.models import load_causal_lm
from slmops.training import adapters

LLAMA_PROJECTIONS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir))


def test_default_targets_are_every_attention_and_mlp_projection(tiny_model):
    assert adapters.linear_layer_names(tiny_model) == LLAMA_PROJECTIONS
    assert adapters.resolve_target_modules(tiny_model, None) == LLAMA_PROJECTIONS
    assert adapters.resolve_target_modules(tiny_model, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]


def test_a_target_module_the_model_lacks_lists_the_ones_it_has(tiny_model):
    with pytest.raises(ConfigError) as error:
        adapters.resolve_target_modules(tiny_model, ["q_proj", "c_attn"])
    message = str(error.value)
    assert "--target_modules: c_attn is not a linear layer of this model" in message
    assert "its linear layers are: " + ", ".join(LLAMA_PROJECTIONS) in message


def test_gpt2_style_conv1d_projections_are_found():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert adapters.linear_layer_names(model) == ["c_attn", "c_fc", "c_proj"]


def test_modules_to_save_must_exist(tiny_model):
    adapters.check_modules_to_save(tiny_model, ["lm_head"])
    with pytest.raises(ConfigError, match="no module named score.*output head is 'lm_head'"):
        adapters.check_modules_to_save(tiny_model, ["score"])


def test_qlora_without_bitsandbytes_says_how_to_fix_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"needs bitsandbytes.*pip install.*or use --method lora"):
        adapters.require_bitsandbytes()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only rules")
def test_cpu_placement_defaults_to_float32_and_refuses_float16():
    placement = place()
    assert (placement.device, placement.weights_dtype, placement.mixed_precision) == (
        "cpu",
        "float32",
        None,
    )
    assert place(torch_dtype="bfloat16", mixed_precision="bf16").mixed_precision == "bf16"
    with pytest.raises(ConfigError, match="--torch_dtype float16: float16 needs a GPU"):
        place(torch_dtype="float16")
    with pytest.raises(ConfigError, match="--device gpu: no CUDA device is visible"):
        place(device="gpu")


def test_merged_model_computes_what_the_adapter_model_computes(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from slmops.models import load_tokenizer, resolve

    resolved = resolve(str(tiny_model_dir))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        load_causal_lm(resolved),
        LoraConfig(r=4, lora_alpha=8, target_modules=LLAMA_PROJECTIONS, init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    out = adapters.merge_into_base(
        resolved, tmp_path / "adapter", tmp_path / "merged", load_tokenizer(resolved)
    )
    merged = load_causal_lm(str(out))
    assert not any("lora" in name for name, _ in merged.named_parameters())
    ids = torch.tensor([[3, 17, 42, 99, 7]])
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=ids).logits
        actual = merged(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    assert (out / "tokenizer.json").is_file()
    assert merged.dtype == torch.float32
