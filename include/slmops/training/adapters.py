"""The model side of fine-tuning: load the base (4-bit for QLoRA), attach a LoRA/DoRA
adapter to the right layers, and merge a trained adapter into a full-precision base."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from slmops.artifacts import atomic_directory
from slmops.devices import Placement, local_rank
from slmops.errors import AdapterMismatch, ConfigError, ModelError
from slmops.models import ResolvedModel, load_causal_lm
from slmops.training.config import FinetuneConfig


def _linear_types() -> tuple[type, ...]:
    import torch
    from transformers.pytorch_utils import Conv1D  # GPT-2 style projections

    return (torch.nn.Linear, Conv1D)


def linear_layer_names(model) -> list[str]:
    """Leaf names of the attention/MLP projections (q_proj, up_proj, c_attn...): every
    linear layer except the output head, which LoRA leaves to ``modules_to_save``."""
    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, _linear_types()) and module is not head
    }
    return sorted(names)


def resolve_target_modules(model, requested: list[str] | None) -> list[str]:
    """``requested`` checked against the model, or all of its projections."""
    available = linear_layer_names(model)
    if not requested:
        if not available:
            raise ModelError("the model has no linear layers an adapter could attach to")
        return available
    missing = [name for name in requested if name not in available]
    if missing:
        raise ConfigError(
            f"--target_modules: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not a linear layer of this model; "
            f"its linear layers are: {', '.join(available)}"
        )
    return list(requested)


def check_modules_to_save(model, requested: list[str] | None) -> None:
    if not requested:
        return
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}
    missing = [name for name in requested if name not in present]
    if missing:
        head = model.get_output_embeddings()
        head_name = next((n for n, m in model.named_modules() if m is head), None)
        raise ConfigError(
            f"--modules_to_save: no module named {', '.join(missing)} in this model"
            + (f" (its output head is {head_name!r})" if head_name else "")
        )


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "--method qlora needs bitsandbytes (4-bit weights), which is not installed: "
            "run `pip install bitsandbytes>=0.45` (CPU and CUDA), or use --method lora"
        )


def load_base(resolved: ResolvedModel, config: FinetuneConfig, placement: Placement):
    """The base model, ready for training: float weights, or nf4/fp4 ones for QLoRA."""
    import torch

    kwargs: dict = {"dtype": getattr(torch, placement.weights_dtype)}
    if config.method == "qlora":
        require_bitsandbytes()
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=config.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=getattr(torch, placement.compute_dtype),
        )
        # Each process of a group loads its own 4-bit base on its own GPU.
        kwargs["device_map"] = {"": (local_rank() or 0) if placement.on_gpu else "cpu"}
        kwargs["dtype"] = getattr(torch, placement.compute_dtype)
    model = load_causal_lm(resolved, trust_remote_code=config.trust_remote_code, **kwargs)
    model.config.use_cache = False  # a KV cache is useless in training and breaks packing
    return model


def attach_adapter(model, config: FinetuneConfig):
    """A PEFT model with only the adapter (and ``modules_to_save``) trainable."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = resolve_target_modules(model, config.target_modules)
    check_modules_to_save(model, config.modules_to_save)
    if config.method == "qlora":
        # Casts norms to float32 and readies inputs for checkpointing, as QLoRA needs.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=config.modules_to_save,
        use_dora=config.method == "dora",
        # A trained lm_head of a tied model must stay tied to the embeddings, or the merged
        # model silently gets two different matrices.
        ensure_weight_tying=bool(config.modules_to_save)
        and bool(getattr(model.config, "tie_word_embeddings", False)),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config), targets


def check_adapter_folder(adapter_dir: Path, flag: str = "--adapter_path") -> Path:
    """The adapter folder itself; a fine-tuning run's folder stands for its adapter/ (as
    Olive's ``generate-adapter --adapter_paths`` takes ``finetune`` output paths)."""
    adapter_dir = Path(adapter_dir)
    if (adapter_dir / "adapter" / "adapter_config.json").is_file():
        return adapter_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConfigError(
            f"{flag} {adapter_dir}: no adapter_config.json there; pass the adapter/ folder "
            "of a fine-tuning run"
        )
    return adapter_dir


def adapter_base_name(adapter_dir: Path) -> str:
    """The base model an adapter says it was trained on (adapter_config.json)."""
    try:
        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return "an unknown base"
    return config.get("base_model_name_or_path") or "an unknown base"


def check_adapter_fits(base_dir: Path, adapter_dir: Path, base_name: str) -> None:
    """Every LoRA pair of the adapter must sit on a layer of the base with matching
    in/out sizes. Reads only the safetensors headers, so it costs nothing next to a merge
    or an export; ``AdapterMismatch`` names the first layers that differ."""
    adapter_shapes = _tensor_shapes(Path(adapter_dir))
    base_shapes = _tensor_shapes(Path(base_dir))
    problems = []
    for key, shape in sorted(adapter_shapes.items()):
        part = ".lora_A." if ".lora_A." in key else ".lora_B." if ".lora_B." in key else None
        if part is None:
            continue
        module = key.removeprefix("base_model.model.").split(part)[0]
        base_shape = base_shapes.get(f"{module}.weight")
        if base_shape is None:
            if not module.endswith("lm_head"):  # a tied head has no weight of its own
                problems.append(f"{module} is not a layer of the base")
            continue
        if len(base_shape) != 2 or len(shape) != 2:
            continue
        # lora_A is [rank, in_features], lora_B is [out_features, rank]; the base [out, in].
        expected, found = (
            (base_shape[1], shape[1]) if part == ".lora_A." else (base_shape[0], shape[0])
        )
        if expected != found:
            side = "inputs" if part == ".lora_A." else "outputs"
            problems.append(f"{module} has {expected} {side} in the base, {found} in the adapter")
    if problems:
        shown = "; ".join(problems[:3]) + (
            f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        )
        raise AdapterMismatch(
            f"adapter {adapter_dir} does not fit {base_name}: {shown}. It was trained on "
            f"{adapter_base_name(adapter_dir)}: use that base (--model_name_or_path)"
        )


def _tensor_shapes(folder: Path) -> dict[str, list[int]]:
    """Name -> shape of every tensor in a folder's safetensors files, from headers only."""
    from safetensors import safe_open

    shapes: dict[str, list[int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="np") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
                shapes[key] = list(weights.get_slice(key).get_shape())
    return shapes


def apply_adapter(model, adapter_dir: Path, base_name: str):
    """``model`` with the adapter merged in (same answers as the unmerged adapter, faster);
    ``AdapterMismatch`` names the base the adapter was trained on when it does not fit."""
    from peft import PeftModel

    try:
        with_adapter = PeftModel.from_pretrained(model, str(adapter_dir))
    except Exception as exc:
        raise AdapterMismatch(
            f"adapter {adapter_dir} does not fit {base_name} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}); it was trained on "
            f"{adapter_base_name(adapter_dir)}: use that base (--model_name_or_path)"
        ) from None
    return with_adapter.merge_and_unload().eval()


def merge_into_base(
    resolved: ResolvedModel,
    adapter_dir: Path,
    out_dir: Path,
    tokenizer,
    *,
    trust_remote_code: bool = False,
    keep_model: bool = False,
):
    """Load the base in float32 (never the 4-bit QLoRA weights), merge the adapter into it
    and save a plain Hugging Face folder, ready for export. Returns the folder, or with
    ``keep_model`` (folder, merged model), for a caller that runs it next (parity)."""
    import torch

    base = load_causal_lm(resolved, trust_remote_code=trust_remote_code, dtype=torch.float32)
    merged = apply_adapter(base, adapter_dir, resolved.name)
    merged.config.use_cache = True
    with atomic_directory(out_dir) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return (out_dir, merged) if keep_model else out_dir


def load_checkpoint_weights(model, checkpoint: Path) -> None:
    """Put a Trainer checkpoint's trained weights (adapter, or the whole model) into ``model``."""
    from safetensors.torch import load_file

    adapter_file = checkpoint / "adapter_model.safetensors"
    if adapter_file.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(adapter_file))
    elif (checkpoint / "model.safetensors").is_file():
        # Tied weights (lm_head) are saved once, so the state dict is not strictly complete.
        model.load_state_dict(load_file(checkpoint / "model.safetensors"), strict=False)
    else:
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(model, checkpoint, strict=False)
