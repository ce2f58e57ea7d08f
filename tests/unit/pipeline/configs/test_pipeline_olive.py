"""Olive workflow configs as slm_finetune params, and GPT-2 module names mapped to a model."""

from __future__ import annotations

import json

import pytest
import yaml

from slmops.errors import ConfigError, ModelError
from slmops.pipeline.configs.module_names import map_module_names, module_names
from slmops.pipeline.configs.olive import from_olive, is_olive_config
from slmops.pipeline.params import PipelineParams
from slmops.testing import GUIDE_OLIVE_CONFIG

SOURCE = "olive-config.yaml"
GUIDE_YAML = GUIDE_OLIVE_CONFIG
LLAMA_LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def guide(**changes) -> dict:
    config = yaml.safe_load(GUIDE_YAML)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        block = config
        for key in parents:
            block = block[int(key)] if isinstance(block, list) else block[key]
        block[last] = value
    return config


def error_of(config: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        from_olive(config, source=SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: ")
    return message


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from slmops.testing import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")


def write_safetensors(path, shapes: dict[str, list[int]]) -> None:
    """A header-only stand-in for a safetensors file: module_names reads no more."""
    header = {
        name: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}
        for name, shape in shapes.items()
    }
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


# --- the guide's config ------------------------------------------------------------------


def test_the_guides_config_maps_to_valid_params(tmp_path):
    data = tmp_path / "dataset.json"
    data.write_text('[{"input": "What is ML?", "output": "A field of AI."}]')
    text = GUIDE_YAML.replace("path/to/your/dataset.json", str(data))
    mapping = from_olive(yaml.safe_load(text), source=SOURCE)

    params = PipelineParams.model_validate(mapping.params)
    assert set(mapping.params) <= set(PipelineParams.model_fields)
    assert params.model_name_or_path == "microsoft/DialoGPT-medium"
    assert params.data_files == [str(data)]
    assert params.data_name is None
    assert params.train_split == "train"
    assert (params.template_kind, params.text_template) == (
        "template",
        "User: {input}\nAssistant: {output}",
    )
    assert (params.method, params.lora_r, params.lora_alpha) == ("lora", 16, 32.0)
    assert params.target_modules == ["c_attn", "c_proj"]
    assert params.modules_to_save == ["ln_f", "lm_head"]
    assert params.label_field is None
    assert params.suite == "default"
    assert params.model_name == "dialogpt-medium-lora"
    assert "passes.lora.config.r -> lora_r = 16" in mapping.notes
    assert (
        mapping.origins["text_template"] == "data_configs[0].pre_process_data_config.text_template"
    )
    assert any(note.startswith("max_steps not in the config") for note in mapping.notes)


def test_ignored_keys_are_each_noted():
    config = guide(
        passes__lora__config__training_args={"output_dir": "ckpt", "logging_steps": 5},
        passes__lora__config__bias="none",
    )
    config["engine"] = {"output_dir": "models/out", "host": "local", "cache_dir": "cache"}
    config["systems"] = {"local_system": {"type": "LocalSystem"}}
    config["evaluators"] = {"common": {"metrics": []}}
    config["passes"]["conversion"] = {"type": "OnnxConversion", "config": {"target_opset": 17}}
    notes = from_olive(config, source=SOURCE).notes

    assert "engine.output_dir ignored: runs go under the artifacts root" in notes
    assert "engine.cache_dir ignored: runs go under the artifacts root" in notes
    assert any(note.startswith("engine.host ignored: stages run on Airflow") for note in notes)
    assert any(note.startswith("systems ignored:") for note in notes)
    assert any(note.startswith("evaluators ignored: slmops evaluates") for note in notes)
    assert (
        "passes.lora.config.training_args.output_dir ignored: runs go under the artifacts root"
        in notes
    )
    assert any(
        note.startswith("passes.lora.config.training_args.logging_steps ignored") for note in notes
    )
    assert any(note.startswith("passes.lora.config.bias ignored") for note in notes)
    assert any(note.startswith("passes.conversion (OnnxConversion) ignored") for note in notes)


def test_training_args_and_regularization_are_mapped():
    config = guide(
        passes__lora__config__lora_dropout=0.1,
        passes__lora__config__weight_decay=0.01,
        passes__lora__config__training_args={
            "learning_rate": 1e-4,
            "per_device_train_batch_size": 4,
            "max_steps": 150,
            "gradient_accumulation_steps": 2,
            "eval_steps": 25,
        },
    )
    mapping = from_olive(config, source=SOURCE)
    params = PipelineParams.model_validate(mapping.params)
    assert params.lora_dropout == 0.1
    assert params.weight_decay == 0.01
    assert params.learning_rate == 1e-4
    assert params.per_device_train_batch_size == 4
    assert params.max_steps == 150
    assert params.gradient_accumulation_steps == 2
    assert params.eval_steps == 25
    assert mapping.origins["max_steps"] == "passes.lora.config.training_args.max_steps"
    assert not any(note.startswith("max_steps not in the config") for note in mapping.notes)


def test_newer_olive_shape_hf_model_flat_pass_and_hub_data():
    config = {
        "input_model": {"type": "HfModel", "model_path": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "systems": {
            "local": {
                "type": "LocalSystem",
                "accelerators": [
                    {"device": "gpu", "execution_providers": ["CUDAExecutionProvider"]}
                ],
            }
        },
        "data_configs": [
            {
                "name": "calib",
                "type": "HuggingfaceContainer",
                "load_dataset_config": {"data_name": "x"},
            },
            {
                "name": "codes",
                "type": "HuggingfaceContainer",
                "load_dataset_config": {
                    "data_name": "nampdn-ai/tiny-codes",
                    "split": "train[:4096]",
                },
                "pre_process_data_config": {"text_template": "### Q: {prompt}\n### A: {response}"},
            },
            {
                "name": "codes_eval",
                "load_dataset_config": {
                    "data_name": "nampdn-ai/tiny-codes",
                    "split": "train[4096:4224]",
                },
            },
        ],
        "passes": {
            "q": {
                "type": "QLoRA",
                "r": 8,
                "alpha": 16,
                "train_data_config": "codes",
                "eval_data_config": "codes_eval",
                "training_args": {"max_steps": 150, "per_device_train_batch_size": 16},
            },
            "mb": {"type": "ModelBuilder", "precision": "int4"},
        },
        "workflow_id": "Tiny Codes",
        "output_dir": "models/tiny-codes",
    }
    mapping = from_olive(config, source=SOURCE)
    params = PipelineParams.model_validate(mapping.params)
    assert params.model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (params.method, params.lora_r, params.lora_alpha) == ("qlora", 8, 16.0)
    assert (params.data_name, params.data_files) == ("nampdn-ai/tiny-codes", None)
    assert (params.train_split, params.eval_split) == ("train[:4096]", "train[4096:4224]")
    assert (params.max_steps, params.per_device_train_batch_size) == (150, 16)
    assert params.targets == ["gpu-int4"]
    assert params.model_name == "tiny-codes"
    assert mapping.origins["lora_r"] == "passes.q.r"
    assert mapping.origins["model_name_or_path"] == "input_model.model_path"
    assert "data_configs[0] (calib) ignored: not the fine-tuning data" in mapping.notes
    assert "output_dir ignored: runs go under the artifacts root" in mapping.notes


def test_older_olive_shape_nests_under_params_and_hf_config(tmp_path):
    config = {
        "input_model": {"type": "PyTorchModel", "config": {"hf_config": {"model_name": "gpt2"}}},
        "data_configs": [
            {
                "name": "d",
                "load_dataset_config": {
                    "params": {
                        "data_name": "json",
                        "data_files": ["a.jsonl", "b.jsonl"],
                        "split": "train",
                    }
                },
                "pre_process_data_config": {"params": {"text_cols": ["text"], "max_seq_len": 256}},
            }
        ],
        "passes": {"dora": {"type": "DoRA", "config": {"lora_r": 4, "train_data_config": "d"}}},
    }
    mapping = from_olive(config, source=SOURCE)
    params = PipelineParams.model_validate(mapping.params)
    assert params.model_name_or_path == "gpt2"
    assert params.method == "dora"
    assert params.data_files == ["a.jsonl", "b.jsonl"]
    assert params.data_name is None  # "json" is the loader, not a dataset
    assert (params.template_kind, params.text_field, params.max_seq_len) == ("text", "text", 256)
    assert any("data_name ignored: a file format" in note for note in mapping.notes)


def test_is_olive_config_tells_olive_from_flat_params():
    assert is_olive_config(yaml.safe_load(GUIDE_YAML))
    assert is_olive_config({"input_model": {"type": "HfModel", "model_path": "x"}})
    assert is_olive_config({"data_configs": []})
    assert not is_olive_config({"model_name_or_path": "x", "data_files": ["a.jsonl"]})
    assert not is_olive_config({"model": "x"})


# --- refusals, each naming the file and the key ------------------------------------------


def test_loftq_pass_is_refused_naming_the_supported_ones():
    message = error_of(guide(passes__lora__type="LoftQ"))
    assert "passes.lora.type: LoftQ is not supported" in message
    assert "LoRA, QLoRA or DoRA" in message


def test_two_fine_tuning_passes_are_refused():
    config = guide()
    config["passes"]["again"] = {"type": "LoRA", "config": {"r": 8}}
    message = error_of(config)
    assert "passes: one fine-tuning pass per run" in message
    assert "passes.lora (LoRA)" in message and "passes.again (LoRA)" in message


def test_no_fine_tuning_pass_is_refused():
    message = error_of(guide(passes={"mb": {"type": "ModelBuilder", "precision": "int4"}}))
    assert "passes: no fine-tuning pass" in message


def test_missing_template_is_refused_saying_what_to_add():
    config = guide()
    del config["data_configs"][0]["pre_process_data_config"]
    message = error_of(config)
    assert "data_configs[0].pre_process_data_config.text_template: missing" in message
    assert "add pre_process_data_config.text_template" in message


def test_a_wrong_type_names_its_olive_key():
    message = error_of(guide(passes__lora__config__r="big"))
    assert "passes.lora.config.r: Input should be a valid integer" in message
    message = error_of(guide(passes__lora__config__training_args={"max_steps": 0}))
    assert (
        "passes.lora.config.training_args.max_steps: Input should be greater than or equal to 1"
        in message
    )
    message = error_of(guide(data_configs__0__load_dataset_config__data_files={"train": "a.json"}))
    assert (
        "data_configs[0].load_dataset_config.data_files: expected a file name or a list" in message
    )


def test_data_sources_must_be_one_of_files_or_hub_name():
    both = {"data_files": "a.json", "data_name": "org/ds"}
    message = error_of(guide(data_configs__0__load_dataset_config=both))
    assert "data_configs[0].load_dataset_config: data_files and data_name both given" in message
    message = error_of(guide(data_configs__0__load_dataset_config={"split": "train"}))
    assert "data_configs[0].load_dataset_config: no data; give load_dataset_config" in message
    custom = {"type": "tiny_code_dataset", "params": {"data_name": "nampdn-ai/tiny-codes"}}
    message = error_of(guide(data_configs__0__load_dataset_config=custom))
    assert "data_configs[0].load_dataset_config.type: custom loader 'tiny_code_dataset'" in message


def test_use_dora_and_eval_dataset_size_are_mapped():
    config = guide(passes__lora__config__use_dora=True, passes__lora__config__eval_dataset_size=0.2)
    params = PipelineParams.model_validate(from_olive(config, source=SOURCE).params)
    assert (params.method, params.eval_fraction) == ("dora", 0.2)


def test_a_setting_given_twice_is_refused():
    message = error_of(guide(passes__lora__config__lora_r=8))
    assert "passes.lora.config.lora_r: lora_r is also given as passes.lora.config.r" in message


def test_several_data_configs_need_train_data_config():
    config = guide()
    config["data_configs"].append({**config["data_configs"][0], "name": "other"})
    message = error_of(config)
    assert "passes.lora.config.train_data_config: missing, and data_configs has 2" in message
    config["passes"]["lora"]["config"]["train_data_config"] = "nope"
    message = error_of(config)
    assert "passes.lora.config.train_data_config: no data config named 'nope'" in message


def test_model_problems_name_the_model_key():
    assert "model.type: ONNXModel cannot be fine-tuned" in error_of(guide(model__type="ONNXModel"))
    config = guide()
    del config["model"]["config"]["model_path"]
    assert "model.config.model_path: missing" in error_of(config)
    message = error_of(guide(model__config__task="text-classification"))
    assert "model.config.task: text-classification is not supported" in message


# --- module names ---------------------------------------------------------------------------


def test_module_names_reads_a_llama_without_loading_it(tiny_model_dir):
    linear, modules = module_names(tiny_model_dir)
    assert linear == LLAMA_LINEAR
    assert {"q_proj", "norm", "embed_tokens", "lm_head", "self_attn", "mlp"} <= modules
    assert not linear & {"embed_tokens", "lm_head", "norm"}


def test_guide_names_become_llama_names(tiny_model_dir):
    linear, modules = module_names(tiny_model_dir)
    targets, notes = map_module_names(
        ["c_attn", "c_proj", "q_proj"], linear=linear, modules=modules, field="target_modules"
    )
    assert targets == ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
    assert notes == [
        "target_modules: c_attn -> q_proj, k_proj, v_proj (GPT-2 name; this model has no c_attn)",
        "target_modules: c_proj -> o_proj, down_proj (GPT-2 name; this model has no c_proj)",
    ]
    saved, notes = map_module_names(
        ["ln_f", "lm_head"], linear=linear, modules=modules, field="modules_to_save"
    )
    assert saved == ["norm", "lm_head"]
    assert notes == ["modules_to_save: ln_f -> norm (GPT-2 name; this model has no ln_f)"]
    mlp, _ = map_module_names(["c_fc"], linear=linear, modules=modules, field="target_modules")
    assert mlp == ["gate_proj", "up_proj"]


def test_gpt2_names_pass_unchanged_on_gpt2(gpt2_dir):
    linear, modules = module_names(gpt2_dir)
    assert linear == {"c_attn", "c_proj", "c_fc"}
    assert {"ln_f", "lm_head", "wte"} <= modules
    for requested, field in (
        (["c_attn", "c_proj"], "target_modules"),
        (["ln_f", "lm_head"], "modules_to_save"),
    ):
        names, notes = map_module_names(requested, linear=linear, modules=modules, field=field)
        assert (names, notes) == (requested, [])


def test_a_name_with_no_counterpart_lists_the_models_layers(tiny_model_dir):
    linear, modules = module_names(tiny_model_dir)
    with pytest.raises(ConfigError) as caught:
        map_module_names(
            ["conv1"], linear=linear, modules=modules, field="passes.lora.config.target_modules"
        )
    message = str(caught.value)
    assert message.startswith("passes.lora.config.target_modules: conv1 is not a linear layer")
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in message
    with pytest.raises(ConfigError, match="wpe is not a module of this model .a GPT-2 name"):
        map_module_names(["wpe"], linear=linear, modules=modules, field="modules_to_save")
    with pytest.raises(ConfigError, match="lm_head is not a LoRA target.*modules_to_save"):
        map_module_names(["lm_head"], linear=linear, modules=modules, field="target_modules")


def test_fit_modules_rewrites_the_guides_names_for_the_model(tiny_model_dir, tmp_path):
    mapping = from_olive(yaml.safe_load(GUIDE_YAML), source=SOURCE)
    mapping.fit_modules(tiny_model_dir)
    assert mapping.params["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
    assert mapping.params["modules_to_save"] == ["norm", "lm_head"]
    assert any(
        note.startswith("passes.lora.config.target_modules: c_attn ->") for note in mapping.notes
    )
    PipelineParams.model_validate(mapping.params)

    bad = from_olive(guide(passes__lora__config__target_modules=["conv1"]), source=SOURCE)
    with pytest.raises(ConfigError, match=f"^{SOURCE}: passes.lora.config.target_modules: conv1"):
        bad.fit_modules(tiny_model_dir)


def test_sharded_checkpoints_are_read_through_their_index(tmp_path):
    write_safetensors(tmp_path / "a.safetensors", {"model.layers.0.mlp.fc1.weight": [8, 4]})
    write_safetensors(
        tmp_path / "b.safetensors",
        {"model.layers.0.mlp.fc2.weight": [4, 8], "model.final_layernorm.weight": [4]},
    )
    weight_map = {
        "model.layers.0.mlp.fc1.weight": "a.safetensors",
        "model.layers.0.mlp.fc2.weight": "b.safetensors",
        "model.final_layernorm.weight": "b.safetensors",
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    linear, modules = module_names(tmp_path)
    assert linear == {"fc1", "fc2"}
    assert {"model", "layers", "mlp", "final_layernorm"} <= modules
    names, _ = map_module_names(
        ["c_fc", "c_proj"], linear=linear, modules=modules, field="target_modules"
    )
    assert names == ["fc1", "fc2"]


def test_unreadable_models_say_what_to_do(tmp_path):
    with pytest.raises(ModelError, match="no model.safetensors.*safe_serialization"):
        module_names(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ModelError, match="model.safetensors: not a readable safetensors file"):
        module_names(tmp_path)


def test_header_names_agree_with_the_loaded_models(tiny_model_dir, gpt2_dir):
    from transformers import AutoModelForCausalLM

    from slmops.training.adapters import linear_layer_names

    for folder in (tiny_model_dir, gpt2_dir):
        model = AutoModelForCausalLM.from_pretrained(folder)
        linear, modules = module_names(folder)
        assert linear == set(linear_layer_names(model))
        # Modules without weights (activations, rotary embeddings) leave no trace in a
        # checkpoint; every other module is found.
        weighted = {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if name and next(module.parameters(), None) is not None
        }
        assert modules == {name for name in weighted if not name.isdigit()}
