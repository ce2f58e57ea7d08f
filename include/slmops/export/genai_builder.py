"""onnxruntime-genai's model builder, run in a child process.

A child process keeps the builder's memory (a full float copy of the model) and its
console chatter away from the caller; its output goes to a log file. An architecture the
builder does not know raises ``BuilderUnsupported`` so the caller can fall back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from slmops import timeouts
from slmops.artifacts import remove_stale_temporaries, temporary_directory
from slmops.errors import BuilderUnsupported, ExportError
from slmops.progress import Log, no_log

_CACHE_LABEL = "builder-cache"

BUILD_LOG = "build.log"
_UNSUPPORTED_MARK = "is not currently supported"
_LOG_TAIL_LINES = 12


# The builder, its k-quant in cache-sized slices (slmops.export.kquant): the same files.
BUILDER_MODULE = "slmops.export.builder_child"
# The builder as onnxruntime-genai ships it (benchmarks and tests compare against it).
SHIPPED_BUILDER_MODULE = "onnxruntime_genai.models.builder"


def builder_command(
    model_dir: Path | str,
    out_dir: Path | str,
    *,
    precision: str,
    execution_provider: str,
    cache_dir: Path | str,
    options: dict[str, str] | None = None,
    module: str = BUILDER_MODULE,
) -> list[str]:
    """The command line that runs the builder ``module`` (``options``: its
    ``--extra_options``, KEY=VALUE)."""
    command = [
        sys.executable, "-m", module, "-i", str(model_dir), "-o", str(out_dir),
        "-p", precision, "-e", execution_provider, "-c", str(cache_dir),
    ]  # fmt: skip
    if options:
        command += ["--extra_options", *(f"{key}={value}" for key, value in options.items())]
    return command


def build_with_genai(
    model_dir: Path,
    out_dir: Path,
    *,
    precision: str,
    execution_provider: str,
    log_path: Path,
    adapter_path: Path | None = None,
    options: dict[str, str] | None = None,
    log: Log = no_log,
) -> None:
    """Write a folder onnxruntime-genai runs (model.onnx, genai_config.json, tokenizer,
    chat template). ``options`` are the builder's ``--extra_options`` (KEY=VALUE). With
    ``adapter_path`` the LoRA weights stay separate MatMuls beside
    the base weights (the multi-adapter export reads them back out)."""
    # The builder's download/conversion cache sits beside the output, on its disk, named
    # so that the next export removes one a killed export left (never a live one).
    remove_stale_temporaries(Path(out_dir).parent / _CACHE_LABEL)
    with temporary_directory(Path(out_dir).parent, _CACHE_LABEL) as cache_dir:
        cache = str(cache_dir)
        extra = dict(options or {})
        if adapter_path is not None:
            extra["adapter_path"] = str(adapter_path)
        command = builder_command(
            model_dir,
            out_dir,
            precision=precision,
            execution_provider=execution_provider,
            cache_dir=cache,
            options=extra,
        )
        log(f"onnxruntime-genai builder: {precision} for {execution_provider} from {model_dir}")
        with open(log_path, "a", encoding="utf-8") as sink:
            sink.write("$ " + " ".join(command) + "\n")
            sink.flush()
            finished = timeouts.BUILDER.run(
                command,
                error=ExportError,
                what=f"onnxruntime-genai's builder on {model_dir} (its output: {log_path})",
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
    if finished.returncode == 0:
        return
    output = Path(log_path).read_text(encoding="utf-8", errors="replace")
    if _UNSUPPORTED_MARK in output:
        raise BuilderUnsupported(f"the builder does not support {model_dir}")
    tail = "\n".join(output.strip().splitlines()[-_LOG_TAIL_LINES:])
    raise ExportError(
        f"onnxruntime-genai's builder failed on {model_dir} (exit {finished.returncode}); "
        f"the end of {log_path}:\n{tail}"
    )
