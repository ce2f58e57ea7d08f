"""Base-model resolution and loading.

``resolve`` turns what a user typed (``--model_name_or_path``) into a local Hugging Face
folder: a bundled alias (provisioned into the model store on first use), a local folder, or
a hub id (downloaded with the normal hub client for users with a network). A hub id may
carry its revision, ``owner/name@SHA`` (what a pipeline plan records, so every stage loads
the commit the plan pinned). Loading reads safetensors weights only, and remote code only
when the caller opts in. A hub failure that usually passes (no connection, HTTP 429/5xx)
is a ``TransientError``, which the operators retry.
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
from slmops.errors import ModelError, TransientError
from slmops.progress import Log, no_log

# What loading a model imports: a stage's garbage-collection scope (slmops.gc_scope) imports
# them before it begins, so its collections skip their objects.
MODEL_LIBRARIES = ("torch", "transformers.modeling_utils")
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
# One part of a hub repo id (owner or name): letters, digits, "-", "_", "."; starting and
# ending with a letter or digit; at most 96 characters ("--" and ".." are refused apart).
_HUB_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
# A name ending like a file is a path that was not found, never a hub id.
_FILE_SUFFIXES = (
    ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".yaml", ".yml",
    ".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".zip", ".gz", ".tar",
)  # fmt: skip
_SHA = re.compile(r"^[0-9a-f]{40}$")
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRUE = frozenset({"1", "true", "yes", "on"})
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
    repo_id, pinned = split_revision(name)
    if not is_hub_id(repo_id):
        raise ModelError(
            f"Model {name!r} is not a bundled alias, an existing local folder or a hub id "
            f"(owner/name). Bundled: {', '.join(sorted(model_store.BUNDLED_MODELS))}."
        )
    folder = _download_from_hub(
        repo_id, revision=pinned or revision, cache_dir=cache_dir, offline=offline, log=log
    )
    # A hub snapshot's files are links into the repo's blob store, two folders up.
    check_model_folder(folder, within=folder.resolve().parents[1])
    return ResolvedModel(name, folder, "hub")


def is_hub_id(value: str) -> bool:
    """``owner/name`` as the hub spells repo ids; a name ending like a data or weights file
    (``data/x.jsonl``) is a path that was not found, never a hub id."""
    parts = value.split("/")
    return (
        len(parts) == 2
        and all(_HUB_PART.match(part) and ".." not in part and "--" not in part for part in parts)
        and not value.lower().endswith(_FILE_SUFFIXES)
    )


def split_revision(name: str) -> tuple[str, str | None]:
    """``owner/name@REVISION`` -> (``owner/name``, REVISION); repo ids hold no ``@``."""
    repo_id, at, revision = name.partition("@")
    return (repo_id, revision) if at and revision else (name, None)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def pin_hub_revision(
    repo_id: str, *, repo_type: Literal["model", "dataset"], revision: str | None = None
) -> str:
    """The commit sha ``revision`` (default: the main branch) of a hub repo names now.

    Online it asks the hub; offline (HF_HUB_OFFLINE) it reads the local cache
    ($HF_HUB_CACHE), where ``refs/REVISION`` names the commit of a downloaded snapshot.
    Raises ModelError when the repo or revision is unknown, TransientError when the hub
    failed in a way that usually passes.
    """
    what = f"{repo_type} {repo_id!r}" + (f" revision {revision!r}" if revision else "")
    if hub_offline():
        return _cached_revision(repo_id, repo_type, revision or "main", what)
    from huggingface_hub import HfApi

    try:
        info = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision)
    except Exception as exc:
        transient = transient_hub_error(exc, what)
        if transient is not None:
            raise transient from exc
        raise ModelError(
            f"Hub {what} could not be resolved to a commit ({_first_line(exc)}); check the "
            "id, the revision and your access (HF_TOKEN for gated or private repos)"
        ) from exc
    return str(info.sha)


def _cached_revision(repo_id: str, repo_type: str, revision: str, what: str) -> str:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    ref = storage / "refs" / revision
    if _SHA.match(revision):
        sha = revision
    elif ref.is_file() and ref.resolve().is_relative_to(storage.resolve()):
        sha = ref.read_text(encoding="utf-8").strip()
    else:
        sha = ""
    if not _SHA.match(sha) or not (storage / "snapshots" / sha).is_dir():
        download = f"hf download {repo_id}" + (f" --repo-type {repo_type}" * (repo_type != "model"))
        raise ModelError(
            f"Hub {what}: offline mode is on (HF_HUB_OFFLINE) and the local hub cache "
            f"({cache}) holds no snapshot of it; download it where there is a network "
            f"(`{download}`) or pass a local path"
        )
    return sha


def transient_hub_error(exc: BaseException, what: str) -> TransientError | None:
    """A TransientError for a hub failure that usually passes (no connection, a timeout,
    HTTP 408/429/5xx anywhere in the exception's chain), else None."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if hub_offline():
        return None  # a setting of this machine: a retry changes nothing
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(error, OfflineModeIsEnabled) for error in chain):
        return None
    # The hub's own answer (an HTTP status) decides first, then a failed connection.
    cause = next((error for error in chain if isinstance(error, HfHubHTTPError)), None)
    if cause is not None:
        status = cause.response.status_code
        if status not in _TRANSIENT_STATUS:
            return None
        reason = f"HTTP {status}"
    else:
        connection = (httpx2.TransportError, ConnectionError, TimeoutError)
        cause = next((e for e in chain if isinstance(e, connection)), None)
        if cause is None:
            return None
        reason = type(cause).__name__
    return TransientError(
        f"Hub {what}: the Hugging Face hub did not answer ({reason}: {_first_line(cause)}); "
        "this usually passes, so the task will be retried"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _download_from_hub(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: Path | None,
    offline: bool | None,
    log: Log = no_log,
) -> Path:
    from huggingface_hub import snapshot_download

    if offline is None:
        offline = hub_offline()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=os.fspath(cache_dir) if cache_dir else None,
            allow_patterns=HUB_ALLOW_PATTERNS,
            local_files_only=offline,
        )
    except Exception as exc:  # network, auth, missing repo: one actionable message for all
        transient = transient_hub_error(exc, f"model {repo_id!r}")
        if transient is not None:
            log(str(transient))
            raise transient from exc
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else type(exc).__name__
        raise ModelError(
            f"Model {repo_id!r} could not be reached on the Hugging Face hub ({why}: "
            f"{_first_line(exc)}). It is not a local folder "
            f"either. On a machine without network, download it where you have one "
            f"(`hf download {repo_id} --local-dir DIR`), copy DIR here and pass that folder "
            f"as --model_name_or_path; or use a bundled model: "
            f"{', '.join(sorted(model_store.BUNDLED_MODELS))}."
        ) from exc
    return Path(folder)


def check_model_folder(path: Path, *, within: Path | None = None) -> None:
    """Raise ModelError unless ``path`` is a loadable HF folder with safetensors weights.

    Every file in it must resolve inside ``within`` (default: the folder itself), so a
    symlink cannot make a load read a file from elsewhere.
    """
    if not path.is_dir():
        raise ModelError(f"Model path {path} is a file; pass the folder that holds config.json.")
    _check_links_stay_inside(path, within or path)
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
        recorded: dict = {}
        with contextlib.suppress(ModelError):  # an unreadable manifest: verify says so
            recorded = model_store.read_manifest(path)["files"]
        for name in recorded:  # verify hashes each: none may lie outside the folder
            recorded_path(path, name, f"{model_store.MANIFEST_NAME} of model {path}")
        problems = model_store.verify(path)
        if problems:
            raise ModelError(
                f"Stored model {path} is damaged: {'; '.join(problems)}. Re-make it with "
                f"`slmops models pull {path.name} --force`."
            )


def recorded_path(folder: Path, relative: str, source: str) -> Path:
    """``folder / relative``, for a path a folder's own metadata records (a manifest's file
    names, a training run's ``outputs``), which must stay inside the folder once resolved:
    metadata is data, and ``../../elsewhere`` or an absolute path must not widen what a
    load reads."""
    folder = Path(folder)
    candidate = folder / relative
    if Path(relative).is_absolute() or not candidate.resolve().is_relative_to(folder.resolve()):
        raise ModelError(
            f"{source}: {relative!r} points outside {folder}; the metadata is damaged or "
            "was edited. Re-make the folder (it records its own files only)"
        )
    return candidate


def _check_links_stay_inside(folder: Path, within: Path) -> None:
    boundary = within.resolve()
    for item in folder.rglob("*"):
        if item.is_symlink() and not item.resolve().is_relative_to(boundary):
            raise ModelError(
                f"Model folder {folder}: {item.relative_to(folder)} is a link to "
                f"{item.resolve()}, outside {boundary}; copy the file into the folder "
                "instead of linking it"
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
