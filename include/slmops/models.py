"""Base-model resolution and loading.

``resolve`` turns what a user typed (``--model_name_or_path``) into a local Hugging Face
folder: a bundled alias (provisioned into the model store on first use), a local folder, or
a hub id (downloaded with the normal hub client for users with a network). Loading reads
safetensors weights only, and remote code only when the caller opts in.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmops import model_store
from slmops.errors import ModelError
from slmops.progress import Log, no_log

# Files fetched for a hub model: configs, safetensors weights and tokenizer files only.
HUB_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.jinja",
    "tokenizer*",
    "*.model",
    "*.txt",
    "*.tiktoken",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for
    path: Path  # a local Hugging Face folder
    source: Literal["bundled", "local", "hub"]


def resolve(
    name_or_path: str | os.PathLike,
    *,
    home: Path | None = None,
    revision: str | None = None,
    cache_dir: Path | None = None,
    offline: bool | None = None,
    log: Log = no_log,
) -> ResolvedModel:
    """Local folder for a bundled alias, a local folder or a hub id (see module doc)."""
    name = os.fspath(name_or_path)
    if name in model_store.BUNDLED_MODELS:
        result = model_store.pull(name, home=home, log=log)
        return ResolvedModel(name, result.path, "bundled")
    path = Path(name).expanduser()
    if path.exists():
        check_model_folder(path)
        return ResolvedModel(name, path.resolve(), "local")
    if not _HUB_ID.match(name):
        raise ModelError(
            f"Model {name!r} is not a bundled alias, an existing local folder or a hub id "
            f"(org/name). Bundled: {', '.join(sorted(model_store.BUNDLED_MODELS))}."
        )
    folder = _download_from_hub(name, revision=revision, cache_dir=cache_dir, offline=offline)
    check_model_folder(folder)
    return ResolvedModel(name, folder, "hub")


def _download_from_hub(
    repo_id: str, *, revision: str | None, cache_dir: Path | None, offline: bool | None
) -> Path:
    from huggingface_hub import snapshot_download

    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=os.fspath(cache_dir) if cache_dir else None,
            allow_patterns=HUB_ALLOW_PATTERNS,
            local_files_only=offline,
        )
    except Exception as exc:  # network, auth, missing repo: one actionable message for all
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else type(exc).__name__
        raise ModelError(
            f"Model {repo_id!r} could not be reached on the Hugging Face hub ({why}: "
            f"{str(exc).splitlines()[0] if str(exc) else exc!r}). It is not a local folder "
            f"either. On a machine without network, download it where you have one "
            f"(`hf download {repo_id} --local-dir DIR`), copy DIR here and pass that folder "
            f"as --model_name_or_path; or use a bundled model: "
            f"{', '.join(sorted(model_store.BUNDLED_MODELS))}."
        ) from exc
    return Path(folder)


def check_model_folder(path: Path) -> None:
    """Raise ModelError unless ``path`` is a loadable HF folder with safetensors weights."""
    if not path.is_dir():
        raise ModelError(f"Model path {path} is a file; pass the folder that holds config.json.")
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path} has no config.json: pass a Hugging Face model folder "
            f"(from save_pretrained) or a bundled alias."
        )
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for pattern in _PICKLE_WEIGHTS for p in path.glob(pattern))
        hint = (
            f" It has pickle weights ({', '.join(pickled)}), which can run arbitrary code "
            f"when loaded; convert them once where you trust the files with "
            f"`AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, "
            f"safe_serialization=True)`."
            if pickled
            else ""
        )
        raise ModelError(
            f"{path} has no *.safetensors weights; slmops loads only safetensors.{hint}"
        )
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError(f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}).")
    if (path / model_store.MANIFEST_NAME).is_file():
        problems = model_store.verify(path)
        if problems:
            raise ModelError(
                f"Stored model {path} is damaged: {'; '.join(problems)}. Re-make it with "
                f"`slmops models pull {path.name} --force`."
            )


def quiet_libraries() -> None:
    """slmops writes its own progress lines, so drop the libraries' chatter:
    transformers' per-load progress bars, the deprecation notice peft triggers on every
    adapter (``is_gradient_checkpointing``), and bitsandbytes' advice to install
    ``kernels`` for a faster CPU 4-bit kernel (it downloads that kernel from the hub at run
    time, which offline machines cannot; the built-in kernel is used instead)."""
    import logging
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _as_resolved(model: ResolvedModel | str | os.PathLike) -> ResolvedModel:
    return model if isinstance(model, ResolvedModel) else resolve(model)


@contextlib.contextmanager
def _remote_code_refusal(model: ResolvedModel) -> Iterator[None]:
    """Turn transformers' "needs trust_remote_code" ValueError into an actionable ModelError."""
    try:
        yield
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise ModelError(
            f"Model {model.name!r} ({model.path}) ships custom Python code. slmops does not "
            f"run it unless you pass --trust_remote_code (trust_remote_code=True) after "
            f"reviewing that code. ({exc})"
        ) from exc


def load_tokenizer(model: ResolvedModel | str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    model = _as_resolved(model)
    with _remote_code_refusal(model):
        return AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)


def load_padding_tokenizer(model: ResolvedModel | str, *, trust_remote_code: bool = False):
    """The tokenizer, with the end-of-sequence token as pad token when it has none (base
    models often lack one; padded positions are masked anyway)."""
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                f"{_as_resolved(model).name}: the tokenizer has neither a pad nor an "
                "end-of-sequence token, so batches cannot be padded and answers cannot end"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    model: ResolvedModel | str,
    *,
    trust_remote_code: bool = False,
    dtype: Any = "float32",
    **kwargs: Any,
):
    """The model in eval mode, from safetensors only (``use_safetensors=True``)."""
    from transformers import AutoModelForCausalLM

    model = _as_resolved(model)
    with _remote_code_refusal(model):
        loaded = AutoModelForCausalLM.from_pretrained(
            model.path,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=dtype,
            **kwargs,
        )
    return loaded.eval()
