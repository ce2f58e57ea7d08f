import json
import shutil

import pytest

from slmops.errors import ModelError
from slmops.inference import chat_prompt, greedy_complete
from slmops.model_store import MANIFEST_NAME, write_manifest
from slmops.models import (
    check_model_folder,
    load_causal_lm,
    load_tokenizer,
    recorded_path,
    resolve,
)


def test_local_folder_resolves_and_loads(tiny_model_dir):
    resolved = resolve(str(tiny_model_dir))
    assert resolved.source == "local"
    assert resolved.path == tiny_model_dir.resolve()
    tokenizer = load_tokenizer(resolved)
    model = load_causal_lm(resolved)
    assert model.config.num_hidden_layers == 2
    assert not model.training
    prompts = [chat_prompt(tokenizer, "hello"), chat_prompt(tokenizer, "a longer question here")]
    out = greedy_complete(model, tokenizer, prompts, max_new_tokens=4, batch_size=2)
    assert len(out) == 2 and all(isinstance(text, str) for text in out)


def test_batched_greedy_matches_one_by_one(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    prompts = ["a", "the capital of France is", "what is RAM? memory that holds"]
    batched = greedy_complete(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = [greedy_complete(model, tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert tokenizer.padding_side == "right"  # restored after generation


def test_missing_local_path_that_is_not_a_hub_id():
    with pytest.raises(ModelError, match=r"'\./no/such/model' is not a bundled alias"):
        resolve("./no/such/model")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve(str(tmp_path))


def test_pickle_only_weights_are_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(
        ModelError, match=r"no \*\.safetensors.*pickle weights \(pytorch_model\.bin\)"
    ):
        check_model_folder(folder)


def test_folder_without_tokenizer(tmp_path, tiny_model_dir):
    folder = tmp_path / "no-tok"
    shutil.copytree(tiny_model_dir, folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(ModelError, match="no tokenizer files"):
        resolve(str(folder))


def test_damaged_stored_folder_is_refused_with_remedy(tmp_path, tiny_model_dir):
    folder = tmp_path / "stored"
    shutil.copytree(tiny_model_dir, folder)
    write_manifest(folder, name="stored", source={})
    (folder / "model.safetensors").write_bytes(b"short")
    with pytest.raises(ModelError, match="slmops models pull stored --force"):
        resolve(str(folder))


def test_unreachable_hub_id_names_model_and_local_remedy():
    with pytest.raises(ModelError) as info:
        resolve("HuggingFaceTB/SmolLM2-360M-Instruct")
    message = str(info.value)
    assert "'HuggingFaceTB/SmolLM2-360M-Instruct' could not be reached" in message
    assert "offline mode is on" in message
    assert "--local-dir DIR" in message and "--model_name_or_path" in message


def test_unreachable_hub_id_without_offline_flag():
    # No network here: the real hub client fails, and the message says so.
    with pytest.raises(ModelError, match="could not be reached on the Hugging Face hub"):
        resolve("HuggingFaceTB/SmolLM2-360M-Instruct", offline=False)


def _fake_hub_cache(cache, repo_id, source_dir, revision="0123456789abcdef"):
    """The on-disk layout huggingface_hub uses: refs/main -> snapshots/<commit>/files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    shutil.copytree(source_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_hub_id_resolves_from_the_local_hub_cache(tmp_path, tiny_model_dir):
    snapshot = _fake_hub_cache(tmp_path / "hub", "acme/tiny-llama", tiny_model_dir)
    resolved = resolve("acme/tiny-llama", cache_dir=tmp_path / "hub")
    assert resolved.source == "hub"
    assert resolved.path == snapshot
    assert load_causal_lm(resolved).config.hidden_size == 64


def test_remote_code_needs_explicit_opt_in(tmp_path, tiny_model_dir):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
    }
    config["model_type"] = "slmops-custom"
    (folder / "config.json").write_text(json.dumps(config))
    for module in ("configuration_custom.py", "modeling_custom.py"):
        (folder / module).write_text("raise RuntimeError('remote code ran')\n")
    with pytest.raises(ModelError, match="ships custom Python code.*--trust_remote_code"):
        load_causal_lm(str(folder))
    # Opting in really hands the flag to transformers, which then runs the code.
    with pytest.raises(RuntimeError, match="remote code ran"):
        load_causal_lm(str(folder), trust_remote_code=True)


def test_a_local_model_folder_linking_a_file_from_elsewhere_is_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "linked"
    shutil.copytree(tiny_model_dir, folder)
    (tmp_path / "other.json").write_text((folder / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(tmp_path / "other.json")
    with pytest.raises(ModelError, match=r"config.json is a link to .*other.json, outside"):
        resolve(str(folder))
    # A link that stays inside the folder is fine.
    (folder / "config.json").unlink()
    (folder / "config.orig.json").write_text((tmp_path / "other.json").read_text())
    (folder / "config.json").symlink_to("config.orig.json")
    assert resolve(str(folder)).source == "local"


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/hostname", "sub/../../outside.bin"])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(tmp_path, tiny_model_dir, name):
    """The model store's manifest lists the folder's files; verifying hashes each one, so
    an edited manifest must not make that read a file elsewhere."""
    folder = tmp_path / "stored"
    shutil.copytree(tiny_model_dir, folder)
    write_manifest(folder, name="stored", source={})
    (tmp_path / "outside.bin").write_bytes(b"x")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"][name] = {"size": 1, "sha256": "0" * 64, "mtime_ns": 0}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(
        ModelError, match=rf"slmops_model.json of model .*: '{name}' points outside"
    ):
        check_model_folder(folder)


def test_recorded_paths_stay_inside_their_folder(tmp_path):
    assert recorded_path(tmp_path, "adapter", "run.json") == tmp_path / "adapter"
    for escaping in ("../x", "/etc", "a/../../x"):
        with pytest.raises(ModelError, match=rf"run.json: '{escaping}' points outside"):
            recorded_path(tmp_path, escaping, "run.json")
