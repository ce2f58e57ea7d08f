"""Latency, throughput and memory of one model, measured the same way for PyTorch and ONNX.

Each model is measured in its own child process (``python -m slmops.export.benchmark``, so
nothing is inherited and no caller needs a ``__main__`` guard): its peak resident memory is
then its own, and one model's allocator does not slow the next.
Every prompt decodes a fixed number of tokens (EOS suppressed), so each runtime does the
same work:

- time to first token: prompt in, first generated token out (prefill + one step);
- decode tokens/s: the remaining tokens over the time they took
  (each the median over the prompts, so one prompt slowed by a neighbour does not count);
- peak RSS: the child's high-water mark, and how much loading and running the model added.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slmops import timeouts
from slmops.errors import BenchmarkError

# Files that hold a model's weights, for its size on disk.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".data", ".onnx_adapter", ".pt")
WARMUP_TOKENS = 8


@dataclass(frozen=True)
class Subject:
    """One model to measure: ``kind`` "torch" (a Hugging Face folder) or "onnx" (an
    exported folder); ``adapters`` are .onnx_adapter files and ``adapter`` the active one."""

    label: str
    kind: str
    path: Path
    device: str = "cpu"
    adapters: dict[str, Path] = field(default_factory=dict)
    adapter: str | None = None


def size_on_disk(folder: Path, *, only: Sequence[Path] = ()) -> int:
    """Bytes of weight files in ``folder`` (or just ``only``)."""
    files = only or [path for path in Path(folder).rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files if path.name.endswith(WEIGHT_SUFFIXES))


def measure(
    subjects: Sequence[Subject],
    prompt_ids: Sequence[Sequence[int]],
    new_tokens: int,
    *,
    rounds: int = 1,
) -> list[dict]:
    """One result per subject, in order. Each round measures every subject once, each in
    a fresh child process; rounds interleave the subjects so a machine that slows down
    for a while (a shared host) slows all of them, and the result is each subject's
    median over the rounds (peak memory: the highest)."""
    per_subject: list[list[dict]] = [[] for _ in subjects]
    for _ in range(rounds):
        for index, subject in enumerate(subjects):
            per_subject[index].append(_measure_in_child_process(subject, prompt_ids, new_tokens))
    results = []
    for subject, measured in zip(subjects, per_subject, strict=True):
        result = _combine(measured)
        result.update(label=subject.label, kind=subject.kind, rounds=rounds)
        result["size_mb"] = round(size_on_disk(subject.path) / 2**20, 1)
        results.append(result)
    return results


def _combine(rounds: list[dict]) -> dict:
    combined = dict(rounds[0])
    for key in ("first_token_ms", "decode_tokens_per_s", "load_seconds"):
        combined[key] = round(statistics.median(r[key] for r in rounds), 2)
    for key in ("peak_rss_mb", "model_rss_mb"):
        combined[key] = max(r[key] for r in rounds)
    return combined


def _measure_in_child_process(
    subject: Subject, prompt_ids: Sequence[Sequence[int]], new_tokens: int
) -> dict:
    with tempfile.TemporaryDirectory(prefix="slmops-bench-") as tmp:
        request, answer = Path(tmp) / "request.json", Path(tmp) / "result.json"
        subject_fields = {**asdict(subject), "path": str(subject.path)}
        subject_fields["adapters"] = {k: str(v) for k, v in subject.adapters.items()}
        request.write_text(
            json.dumps(
                {
                    "subject": subject_fields,
                    "prompt_ids": [list(map(int, ids)) for ids in prompt_ids],
                    "new_tokens": new_tokens,
                }
            ),
            encoding="utf-8",
        )
        finished = timeouts.BENCHMARK.run(
            [sys.executable, "-m", "slmops.export.benchmark", str(request), str(answer)],
            error=BenchmarkError,
            what=f"measuring {subject.label} ({subject.path})",
            capture_output=True,
            text=True,
        )
        if finished.returncode != 0 or not answer.is_file():
            tail = "\n".join(finished.stderr.strip().splitlines()[-8:])
            raise BenchmarkError(f"measuring {subject.label} ({subject.path}) failed:\n{tail}")
        return json.loads(answer.read_text(encoding="utf-8"))


def with_speedups(results: list[dict], reference_label: str) -> list[dict]:
    """Add each result's decode and first-token speed relative to ``reference_label``."""
    reference = next(result for result in results if result["label"] == reference_label)
    for result in results:
        result["decode_speedup"] = round(
            result["decode_tokens_per_s"] / reference["decode_tokens_per_s"], 2
        )
        result["first_token_speedup"] = round(
            reference["first_token_ms"] / result["first_token_ms"], 2
        )
    return results


def _measure(subject: Subject, prompt_ids: list[list[int]], new_tokens: int) -> dict:
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    runner = _load_runner(subject)
    load_seconds = time.perf_counter() - started
    list(
        runner.stream_ids(prompt_ids[0], WARMUP_TOKENS, adapter=subject.adapter, stop_at_eos=False)
    )
    first_token: list[float] = []
    decode_rates: list[float] = []
    decoded = 0
    for ids in prompt_ids:
        started = time.perf_counter()
        stream = runner.stream_ids(ids, new_tokens, adapter=subject.adapter, stop_at_eos=False)
        next(stream)
        first = time.perf_counter()
        count = sum(1 for _ in stream)
        decode_rates.append(count / (time.perf_counter() - first))
        first_token.append(first - started)
        decoded += count
    peak = _peak_rss_bytes()
    return {
        "first_token_ms": round(statistics.median(first_token) * 1000, 2),
        "decode_tokens_per_s": round(statistics.median(decode_rates), 2),
        "decoded_tokens": decoded,
        "prompts": len(prompt_ids),
        "load_seconds": round(load_seconds, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "model_rss_mb": round((peak - before) / 2**20, 1),
    }


def _peak_rss_bytes() -> int:
    """This process's resident-memory high-water mark. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss over from the parent across fork and exec, so a child would report the
    parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _load_runner(subject: Subject):
    if subject.kind == "torch":
        from slmops.export.runners.pytorch import TorchRunner
        from slmops.models import load_causal_lm, load_tokenizer, quiet_libraries

        quiet_libraries()
        model = load_causal_lm(str(subject.path))
        if subject.device == "gpu":
            model = model.to("cuda")
        return TorchRunner(model, load_tokenizer(str(subject.path)))
    from slmops.export.runners import open_exported

    runner = open_exported(subject.path, device=subject.device)
    for name, path in subject.adapters.items():
        runner.load_adapter(path, name)
    return runner


def _child_main(request_path: str, answer_path: str) -> None:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    fields = request["subject"]
    fields["path"] = Path(fields["path"])
    fields["adapters"] = {name: Path(path) for name, path in fields["adapters"].items()}
    result = _measure(Subject(**fields), request["prompt_ids"], request["new_tokens"])
    Path(answer_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    _child_main(*sys.argv[1:3])
