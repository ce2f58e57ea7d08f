"""The fine-tuned model's greedy answers on the eval set, stored by evaluate for parity.

Parity's PyTorch reference on the eval rows is the fine-tuned model answering them
greedily, batched, in float32: what evaluate has just done. Evaluate stores its answers
(token ids) in RUN_PATH/evaluation/fine_tuned_answers.json with what they depend on, and
``reusable`` hands them to parity only when all of it is the same:

- the eval set: its fingerprint (``stored``);
- the weights: the sha256 of each file that defines them (``*.safetensors``, config.json,
  generation_config.json; an adapter's adapter_config.json and weights), of the folder
  loaded and of the adapter applied to it. Content hashes rather than the training run's
  identity, so that an adapter passed by hand to `slmops auto-opt` is recognised and a
  retrained one never is. Evaluate merges the adapter into the float32 base in memory
  (``apply_adapter``); parity exports and loads the run's merged/ folder (the same merge,
  made by training) or merges the adapter itself. So evaluate records a second identity,
  merged/'s files, when ``holds`` finds its in-memory model bit for bit equal to merged/'s
  tensors: what is checked is the weights, not that two merges should agree. A file's
  size, mtime and path stand for its hash while they are unchanged (as in
  ``model_store.verify``), so parity re-hashes only files that changed;
- the generation: greedy, max_new_tokens, batch size (padding changes the arithmetic),
  device, float32, pad token, the prompts' token ids, torch and transformers versions, and
  the CPU's kernels (instruction set, threads): on another worker's CPU the same weights
  may round differently, and a near tie may then go the other way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from slmops.artifacts import atomic_write_text, file_sha256

WEIGHT_PATTERNS = ("*.safetensors", "config.json", "generation_config.json", "adapter_config.json")


def weights(model_dir: Path, adapter: Path | None, *, known: dict | None = None) -> dict:
    """{"model": {file: {path, size, mtime_ns, sha256}}, "adapter": {...}}; a file whose
    path, size and mtime are those in ``known`` keeps its hash from there."""
    known = known or {}
    record = {"model": _files(Path(model_dir), known.get("model") or {})}
    if adapter is not None:
        record["adapter"] = _files(Path(adapter), known.get("adapter") or {})
    return record


def holds(model, folder: Path) -> bool:
    """Whether ``model`` (in memory, on CPU) has exactly the weights saved in ``folder``:
    every saved tensor equal bit for bit, every other one tied to a saved one."""
    import torch
    from safetensors import safe_open

    state = model.state_dict()
    saved: set[str] = set()
    files = sorted(Path(folder).glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), framework="pt") as weights_file:
            for key in weights_file.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensor = state.get(key)
                if tensor is None or tensor.device.type != "cpu":
                    return False
                if not torch.equal(tensor, weights_file.get_tensor(key)):
                    return False
                saved.add(key)
    tied = {state[key].data_ptr() for key in saved}
    return bool(files) and all(key in saved or state[key].data_ptr() in tied for key in state)


def generation(
    tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int, device: str
) -> dict:
    """The settings greedy answers to ``prompts`` depend on, besides the weights."""
    import torch
    import transformers

    ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    return {
        "decoding": "greedy",
        "dtype": "float32",
        "max_new_tokens": max_new_tokens,
        "batch_size": min(batch_size, max(len(prompts), 1)),  # 16 or 64 alike for 10 rows
        "padding_side": "left",
        "device": device,
        "pad_token_id": tokenizer.pad_token_id,
        "prompt_ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def write(
    path: Path,
    *,
    eval_set: str,
    weights: Sequence[dict],
    generation: dict,
    token_ids: Sequence[Sequence[int]],
) -> None:
    """Store ``token_ids`` (one answer per eval row) with what they depend on; ``weights``
    are the identities (``weights()``) of the model that answered, all the same weights."""
    record = {
        "eval_set": eval_set,
        "weights": list(weights),
        "generation": generation,
        "token_ids": [list(map(int, ids)) for ids in token_ids],
    }
    atomic_write_text(path, json.dumps(record, separators=(",", ":")) + "\n")


def reusable(
    path: Path, *, eval_set: str, model_dir: Path, adapter: Path | None, generation: dict
) -> tuple[list[list[int]] | None, str]:
    """(the stored token ids, "") when ``path`` holds answers of this eval set, these
    weights and these generation settings; else (None, why not)."""
    path = Path(path)
    try:
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable ({exc})"
    if stored is None:
        return None, f"no stored answers at {path}"
    if stored.get("eval_set") != eval_set:
        return None, "the stored answers are of another eval set"
    if stored.get("generation") != generation:
        differing = sorted(
            key
            for key in {*generation, *(stored.get("generation") or {})}
            if generation.get(key) != (stored.get("generation") or {}).get(key)
        )
        return None, f"the stored answers were generated otherwise ({', '.join(differing)})"
    for recorded in stored.get("weights") or []:
        if _digests(weights(model_dir, adapter, known=recorded)) == _digests(recorded):
            return stored["token_ids"], ""
    return None, "the stored answers come from other weights"


def _digests(record: dict) -> dict:
    return {
        role: {name: entry.get("sha256") for name, entry in files.items()}
        for role, files in record.items()
    }


def _files(folder: Path, known: dict) -> dict:
    entries = {}
    paths = sorted({path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)})
    for path in paths:
        stat = path.stat()
        entry = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        cached = known.get(path.name) or {}
        same_file = all(cached.get(key) == entry[key] for key in ("path", "size", "mtime_ns"))
        entry["sha256"] = cached["sha256"] if same_file and cached.get("sha256") else None
        entry["sha256"] = entry["sha256"] or file_sha256(path)
        entries[path.name] = entry
    return entries
