"""Module names of a model read from its safetensors headers, and the GPT-2 names of
Olive configs and the reference guide (c_attn, c_proj, ln_f) mapped onto them.

Reading only the headers keeps it cheap: no torch, no weights in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

from slmops.errors import ConfigError, ModelError

# A GPT-2 name -> slots; each slot lists alternatives (space-separated names that go
# together), and the first alternative a model has fills the slot. GPT-2's c_proj is both
# the attention and the MLP output, hence two slots.
_GPT2_NAMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "c_attn": (("q_proj k_proj v_proj", "qkv_proj", "query_key_value", "Wqkv"),),
    "c_proj": (("o_proj", "dense", "out_proj"), ("down_proj", "dense_4h_to_h", "fc2")),
    "c_fc": (("gate_proj up_proj", "gate_up_proj", "fc1", "dense_h_to_4h"),),
    "ln_1": (("input_layernorm",),),
    "ln_2": (("post_attention_layernorm",),),
    "ln_f": (("norm", "final_layernorm", "final_layer_norm"),),
    "wte": (("embed_tokens", "word_embeddings", "embed_in"),),
    "lm_head": (("lm_head", "embed_out"),),
    "wpe": (),  # learned positions; rotary models have no such module
}
# 2-D weights that are not adapter targets: embeddings and output heads.
_NOT_LINEAR = {
    "lm_head", "embed_out", "embed_tokens", "embed_in", "embed_positions",
    "wte", "wpe", "word_embeddings", "position_embeddings",
}  # fmt: skip
_MAX_HEADER = 100 * 1024 * 1024


def module_names(model_dir: Path) -> tuple[set[str], set[str]]:
    """(linear-layer leaf names, all module leaf names) of a Hugging Face folder, read
    from its safetensors headers: no weights are loaded, so a 7B model costs nothing.

    Linear layers are 2-D weights other than embeddings and the output head, matching
    ``slmops.training.adapters.linear_layer_names``."""
    model_dir = Path(model_dir)
    config = _json(model_dir / "config.json") if (model_dir / "config.json").is_file() else {}
    vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    linear: set[str] = set()
    modules: set[str] = set()
    for key, shape in _tensor_shapes(model_dir).items():
        parts = key.split(".")
        modules.update(part for part in parts[:-1] if not part.isdigit())
        leaf = parts[-2] if len(parts) > 1 else ""
        # A 2-D weight with vocabulary rows is an embedding or a head, whatever its name.
        if parts[-1] == "weight" and len(shape) == 2 and shape[0] != vocab:
            linear.add(leaf)
    linear -= _NOT_LINEAR
    # A head tied to the embeddings is not saved, but the model still has it.
    architectures = " ".join(config.get("architectures") or [])
    if "lm_head" not in modules and ("CausalLM" in architectures or "LMHead" in architectures):
        modules.add("lm_head")
    return linear, modules


def map_module_names(
    requested: list[str], *, linear: set[str], modules: set[str], field: str
) -> tuple[list[str], list[str]]:
    """(names for this model, notes). ``field`` names the setting in messages; one ending
    in ``target_modules`` is matched against linear layers, any other against modules.

    A name the model has passes through; an absent GPT-2 name becomes its counterparts
    here (c_attn -> q_proj, k_proj, v_proj); any other absent name is an error listing
    the names the model does have."""
    linear_only = field.endswith("target_modules")
    pool = linear if linear_only else modules
    kind = "linear layer" if linear_only else "module"
    names: list[str] = []
    notes: list[str] = []
    for name in requested:
        if name in pool:
            names.append(name)
            continue
        found = _counterparts(name, pool)
        if not found:
            raise ConfigError(_missing(name, field, kind, pool, linear_only))
        names += found
        notes.append(
            f"{field}: {name} -> {', '.join(found)} (GPT-2 name; this model has no {name})"
        )
    return list(dict.fromkeys(names)), notes


def _counterparts(name: str, pool: set[str]) -> list[str]:
    """The names in ``pool`` that fill the slots of GPT-2 name ``name`` (none if not one)."""
    found = []
    for slot in _GPT2_NAMES.get(name, ()):
        option = next((option for option in slot if set(option.split()) <= pool), "")
        found += option.split()
    return found


def _missing(name: str, field: str, kind: str, pool: set[str], linear_only: bool) -> str:
    if linear_only and name in ("lm_head", "embed_tokens", "wte"):
        return (
            f"{field}: {name} is not a LoRA target (LoRA adapts linear layers); "
            "list it under modules_to_save"
        )
    hint = " (a GPT-2 name with no counterpart here)" if name in _GPT2_NAMES else ""
    return (
        f"{field}: {name} is not a {kind} of this model{hint}; "
        f"its {kind}s are: {', '.join(sorted(pool)) or '(none)'}"
    )


def _tensor_shapes(model_dir: Path) -> dict[str, list[int]]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelError(f"{index}: no weight_map; re-save the model with save_pretrained")
        files = [model_dir / shard for shard in dict.fromkeys(weight_map.values())]
    elif (model_dir / "model.safetensors").is_file():
        files = [model_dir / "model.safetensors"]
    else:
        raise ModelError(
            f"{model_dir}: no model.safetensors (or its index); module names are read from "
            "safetensors headers, so save the model with save_pretrained(safe_serialization=True)"
        )
    shapes: dict[str, list[int]] = {}
    for path in files:
        shapes.update(_header_shapes(path))
    return shapes


def _header_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header: 8 bytes of length, then JSON."""
    try:
        with path.open("rb") as stream:
            size = int.from_bytes(stream.read(8), "little")
            if not 0 < size <= _MAX_HEADER:
                raise ValueError(f"header length {size}")
            header = json.loads(stream.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a mapping")
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{path}: not a readable safetensors file ({exc}); re-save the model"
        ) from None
    header.pop("__metadata__", None)
    return {name: list(info.get("shape", [])) for name, info in header.items()}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not readable JSON ({exc})") from None
    return data if isinstance(data, dict) else {}
