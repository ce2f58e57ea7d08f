"""``slmops generate-adapter``: one ONNX base, an .onnx_adapter per LoRA, switched per request."""

from __future__ import annotations

import json
import shutil

import pytest

from slmops.cli import main
from slmops.errors import AdapterMismatch, ConfigError
from slmops.export.multi_adapter import generate_adapters, open_multi_adapter
from slmops.export.runners import encode_prompts, greedy_answers
from slmops.inference import decode_answers, greedy_token_ids
from slmops.models import load_causal_lm, load_padding_tokenizer
from slmops.testing import TONE_TEMPLATE, build_tiny_llama, tone_rows
from slmops.training.adapters import apply_adapter

ROWS = tone_rows(48)[:4]
PROMPTS = [TONE_TEMPLATE.split("{tone}")[0].format(phrase=row["phrase"]) for row in ROWS]


def _pytorch_answers(base_dir, adapter, new_tokens):
    tokenizer = load_padding_tokenizer(str(base_dir))
    model = apply_adapter(load_causal_lm(str(base_dir)), adapter, "base")
    return greedy_token_ids(model, tokenizer, PROMPTS, max_new_tokens=new_tokens)


@pytest.fixture(scope="module")
def fp32_multi(two_adapters, peaked_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "fp32"
    adapters = list(two_adapters.values())
    return generate_adapters(
        peaked_model_dir, adapters, out, target="cpu-fp32", adapter_names=list(two_adapters)
    )


def test_each_adapter_answers_as_its_pytorch_model(fp32_multi, two_adapters, peaked_model_dir):
    folder = fp32_multi.output_path
    assert sorted(p.name for p in folder.glob("*.onnx_adapter")) == [
        "explain.onnx_adapter",
        "label.onnx_adapter",
    ]
    manifest = json.loads((folder / "adapters.json").read_text())
    assert manifest["adapters"]["label"]["rank"] == 16
    assert len(manifest["lora_inputs"]) == 2 * 2 * 7  # 2 layers x 7 modules x (A, B)
    assert all("lora_r" in shape for shape in manifest["lora_inputs"].values())
    assert manifest["lora_branches"] == 2 * 7  # float bases are not packed

    runner = open_multi_adapter(folder)
    tokenizer = load_padding_tokenizer(str(peaked_model_dir))
    prompt_ids = encode_prompts(tokenizer, PROMPTS)
    answers = {}
    for name, adapter in two_adapters.items():
        expected = _pytorch_answers(peaked_model_dir, adapter, 8)
        answers[name] = greedy_answers(runner, prompt_ids, 8, adapter=name)
        assert answers[name] == expected, name
    label_text = decode_answers(tokenizer, answers["label"])
    explain_text = decode_answers(tokenizer, answers["explain"])
    # The adapters learned different jobs: a label, and a sentence naming it.
    for row, label, sentence in zip(ROWS, label_text, explain_text, strict=True):
        assert label.startswith(row["tone"])
        assert sentence.startswith(f"It sounds {row['tone']}")
    # No adapter selected: the LoRA inputs default to zeros, i.e. the base model.
    base = load_causal_lm(str(peaked_model_dir))
    expected_base = greedy_token_ids(base, tokenizer, PROMPTS, max_new_tokens=8)
    assert greedy_answers(runner, prompt_ids, 8) == expected_base


def test_int4_base_switches_adapters_per_request(two_adapters, peaked_model_dir, tmp_path):
    result = generate_adapters(
        peaked_model_dir,
        list(two_adapters.values()),
        tmp_path / "int4",
        adapter_names=["label", "explain"],
    )
    assert result.target.name == "cpu-int4"
    # q/k/v and gate/up packed: qkv, o, gate_up, down in each of the 2 layers
    assert result.manifest["lora_branches"] == 2 * 4
    runner = open_multi_adapter(result.output_path)
    tokenizer = load_padding_tokenizer(str(peaked_model_dir))
    prompt_ids = encode_prompts(tokenizer, PROMPTS)
    # Alternate adapters request by request on one loaded model.
    for row, ids in zip(ROWS, prompt_ids, strict=True):
        label = decode_answers(tokenizer, greedy_answers(runner, [ids], 4, adapter="label"))[0]
        sentence = decode_answers(tokenizer, greedy_answers(runner, [ids], 8, adapter="explain"))
        assert label.startswith(row["tone"]) and sentence[0].startswith("It sounds")


def test_int8_base_is_weight_only_and_answers_as_pytorch(two_adapters, peaked_model_dir, tmp_path):
    import onnx

    result = generate_adapters(
        peaked_model_dir,
        list(two_adapters.values()),
        tmp_path / "int8",
        target="cpu-int8",
        adapter_names=["label", "explain"],
    )
    graph = onnx.load(str(result.output_path / "model.onnx"), load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert not {"MatMulInteger", "DynamicQuantizeLinear"} & set(ops)
    bits = {
        next(a.i for a in node.attribute if a.name == "bits")
        for node in graph.node
        if node.op_type == "MatMulNBits"
    }
    assert bits == {8}
    # The LoRA products stay float: their weights are the request's inputs.
    assert ops.count("MatMul") >= 2 * 2 * 7
    runner = open_multi_adapter(result.output_path)
    tokenizer = load_padding_tokenizer(str(peaked_model_dir))
    prompt_ids = encode_prompts(tokenizer, PROMPTS)
    # Each adapter does its job, as the int4 base's do (exact tokens may differ from
    # PyTorch's late in an answer on this tiny peaked model, from one run to another).
    labels = decode_answers(tokenizer, greedy_answers(runner, prompt_ids, 4, adapter="label"))
    sentences = decode_answers(tokenizer, greedy_answers(runner, prompt_ids, 8, adapter="explain"))
    for row, label, sentence in zip(ROWS, labels, sentences, strict=True):
        assert label.startswith(row["tone"]) and sentence.startswith(f"It sounds {row['tone']}")


def test_adapters_on_other_layers_are_refused(two_adapters, peaked_model_dir, tmp_path):
    """An adapter on q/v only beside one on all seven projections (a different rank is
    fine: the rank is symbolic)."""
    from peft import LoraConfig, get_peft_model

    narrow = tmp_path / "narrow"
    model = load_causal_lm(str(peaked_model_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(narrow)
    out = tmp_path / "out"
    with pytest.raises(AdapterMismatch, match=r"adapts other layers .*same --target_modules"):
        generate_adapters(peaked_model_dir, [two_adapters["label"], narrow], out)
    assert not out.exists()


def test_adapter_of_another_base_is_refused_before_export(two_adapters, tmp_path):
    other = build_tiny_llama(tmp_path / "wider", hidden_size=96, intermediate_size=192)
    with pytest.raises(AdapterMismatch, match=r"does not fit .* 96 inputs in the base, 64"):
        generate_adapters(other, list(two_adapters.values()), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adapter_names": ["same", "same"]}, "two adapters are named same"),
        ({"adapter_names": ["only-one"]}, "1 names for 2 adapters"),
        ({"adapter_names": ["a b", "c"]}, "not usable as a file name"),
        ({"target": "gpu-int4"}, "gpu-int4 is not supported for multi-adapter"),
    ],
)
def test_bad_names_and_targets(two_adapters, peaked_model_dir, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        generate_adapters(peaked_model_dir, list(two_adapters.values()), tmp_path / "o", **kwargs)


def test_dora_adapters_are_refused(two_adapters, peaked_model_dir, tmp_path):
    dora = tmp_path / "dora"
    shutil.copytree(two_adapters["label"], dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ConfigError, match="DoRA adapter cannot be served"):
        generate_adapters(peaked_model_dir, [dora], tmp_path / "o")


def test_generate_adapter_command(two_adapters, peaked_model_dir, tmp_path, capsys):
    # Olive's form: the fine-tuning runs' folders, which stand for their adapter/.
    paths = ",".join(str(path.parent) for path in two_adapters.values())
    code = main(
        [
            "generate-adapter",
            "--base_model_path",
            str(peaked_model_dir),
            "--adapter_paths",
            paths,
            "--precision",
            "fp32",
            "-o",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    # Default names come from the runs' folders (both "run" here, so made distinct).
    assert set(summary["adapters"]) == {"run", "run-2"}
    assert summary["target"] == "cpu-fp32" and summary["lora_inputs"] == 28


def test_generate_answers_with_the_chosen_adapter(fp32_multi, two_adapters, capsys):
    folder = str(fp32_multi.output_path)
    prompt = PROMPTS[0]
    tone = ROWS[0]["tone"]
    for adapter, expected in (("label", tone), ("explain", f"It sounds {tone}")):
        code = main(
            [
                "generate",
                "-m",
                folder,
                "--adapter",
                adapter,
                "--no_chat_template",
                "--prompt",
                prompt,
                "--max_new_tokens",
                "8",
            ]
        )
        assert code == 0
        assert capsys.readouterr().out.startswith(expected)


def test_generate_refuses_an_adapter_for_a_single_model(tiny_model_dir, tmp_path, capsys):
    from slmops.export.optimize import optimize

    single = optimize(
        tiny_model_dir, "cpu-fp32", tmp_path / "single", parity=False, benchmark=False
    ).output_path
    code = main(["generate", "-m", str(single), "--adapter", "x", "--prompt", "hi"])
    assert code == 1 and "is not a multi-adapter folder" in capsys.readouterr().err
    assert main(["generate", "-m", str(single), "--prompt", "hi", "--max_new_tokens", "3"]) == 0
