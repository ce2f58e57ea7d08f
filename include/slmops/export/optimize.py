"""``optimize(model, target, out) -> OptimizeResult``: export, parity, benchmark, report.

The output folder is written whole or not at all. It holds the ONNX model (for the genai
builder: a folder ``og.Model`` loads as is) and beside it:

    export.json     target, exporter (and any fallback), source model, adapter, sizes
    parity.json     eval-set metrics PyTorch vs ONNX, token agreement, the degradation gate
    benchmark.json  first-token latency, decode tokens/s, size, peak RSS: PyTorch vs ONNX
    report.md/html  the same for people
    build.log       the builder's own output

A failed degradation gate raises ``GateFailure`` after the folder is written (unless
``fail_on_gates`` is off), so the report says why.

The task's process loads the model's weights once: an adapter is merged into the float32
base in memory and saved for the exporter, and that same model gives parity's PyTorch
answers before the export starts (so it is not held while the exporter runs). The
exporter and the benchmark load the saved folder in processes of their own, by design
(safetensors are memory-mapped, so they share the page cache).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmops.artifacts import (
    atomic_directory,
    atomic_write_json,
    ensure_free_space,
    remove_stale_temporaries,
    temporary_directory,
    tree_size,
)
from slmops.errors import GateFailure
from slmops.evaluation import eval_set, gates
from slmops.evaluation.config import read_run_metrics
from slmops.evaluation.eval_set import EvalPlan
from slmops.evaluation.gates import GateRecord
from slmops.export import parity
from slmops.export.benchmark import Subject, measure, size_on_disk, with_speedups
from slmops.export.config import AutoOptConfig
from slmops.export.exporter import export_model
from slmops.export.report import write_report
from slmops.export.runners import encode_prompts
from slmops.export.targets import DEFAULT_TARGET, Target
from slmops.gc_scope import collect_only_new
from slmops.layout import (
    ADAPTER,
    BENCHMARK_NAME,
    EXPORT_RECORD,
    MERGED,
    PARITY_NAME,
    TrainingLayout,
)
from slmops.models import (
    MODEL_LIBRARIES,
    ResolvedModel,
    load_causal_lm,
    load_padding_tokenizer,
    quiet_libraries,
    resolve,
)
from slmops.progress import Log, no_log
from slmops.training.adapters import check_adapter_fits, check_adapter_folder, merge_into_base
from slmops.training.folder import recorded_output

PYTORCH_LABEL = "pytorch-fp32"


@dataclass
class OptimizeResult:
    output_path: Path
    target: Target
    record: dict
    parity: dict | None
    benchmark: list[dict] | None
    gates: list[GateRecord]

    @property
    def failed(self) -> list[GateRecord]:
        return gates.failed(self.gates)


@dataclass
class _Source:
    base: ResolvedModel
    model_dir: Path  # the folder exported (the base itself, a merged or a full fine-tune)
    adapter: Path | None  # merged into model_dir first
    eval_plan: EvalPlan | None


def optimize(
    model: str | Path | None,
    target: str = DEFAULT_TARGET,
    out: Path | None = None,
    *,
    log: Log = no_log,
    **settings: Any,
) -> OptimizeResult:
    """Export ``model`` for ``target`` into ``out``; ``settings`` are AutoOptConfig fields
    (adapter_path, run_path, parity, benchmark, max_export_degradation...)."""
    from pydantic import ValidationError

    from slmops.config import describe_validation_error
    from slmops.errors import ConfigError

    try:
        config = AutoOptConfig(
            model_name_or_path=None if model is None else str(model),
            target=target,
            output_path=out,
            **settings,
        )
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source=None, flag_style=False)) from None
    return run(config, log=log)


@collect_only_new(*MODEL_LIBRARIES)
def run(config: AutoOptConfig, *, log: Log = no_log) -> OptimizeResult:
    quiet_libraries()
    target = config.resolved_target()
    out = config.output_dir(target)
    source = _source(config, log)
    runnable, why_not = _can_run(target)
    _make_room(out, source)
    # The merged model is staged beside the output: same disk, gone when done (and
    # removed by the next export when a killed one left it).
    with temporary_directory(out.parent, _staging_label(out)) as staging:
        model_dir, tokenizer, reference = _pytorch_side(config, source, staging, runnable, log)
        with atomic_directory(out) as folder:
            record = _export(config, target, source, model_dir, folder, log)
            parity_summary, records, bench = None, [], None
            if runnable:
                parity_summary, records, bench = _check_and_time(
                    config, target, source, model_dir, folder, tokenizer, reference, log
                )
            else:
                record["not_run"] = why_not
                log(f"parity and benchmark skipped: {why_not}")
            record["gates"] = [gate.as_dict() for gate in records]
            record["passed"] = not gates.failed(records)
            atomic_write_json(folder / EXPORT_RECORD, record)
            write_report(folder, record, parity_summary, bench)
    result = OptimizeResult(out, target, record, parity_summary, bench, records)
    log(f"{target.name}: {out}")
    if result.failed and config.fail_on_gates:
        raise GateFailure(result.failed)
    return result


def _staging_label(out: Path) -> str:
    return f"{out.name}.merge"


def _make_room(out: Path, source: _Source) -> None:
    """Remove what a killed export of ``out`` left (its temporary output and merge
    folders; never a live export's), then refuse at once when the disk cannot take the
    export: about the size of the model exported (a float32 export is as large as its
    source; int4 smaller), plus the merged weights when an adapter is merged first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    remove_stale_temporaries(out.parent / _staging_label(out))
    needed = tree_size(source.model_dir)
    if source.adapter is not None:
        needed += tree_size(source.base.path)
    ensure_free_space(out.parent, needed, what=f"the {out.name} export")


def _export(
    config: AutoOptConfig,
    target: Target,
    source: _Source,
    model_dir: Path,
    folder: Path,
    log: Log,
) -> dict:
    record = _record(config, target, source, model_dir)
    record.update(
        export_model(
            model_dir,
            folder,
            target,
            use_ort_genai=config.use_ort_genai,
            builder_options=config.builder_options,
            log=log,
        )
    )
    record["size_mb"] = round(size_on_disk(folder) / 2**20, 1)
    record["source_size_mb"] = round(size_on_disk(model_dir) / 2**20, 1)
    log(
        f"exported {target.name} with {record['exporter']}: {record['size_mb']} MB "
        f"in {record['seconds']} s"
    )
    return record


def _pytorch_side(
    config: AutoOptConfig, source: _Source, staging: Path, runnable: bool, log: Log
) -> tuple[Path, Any, parity.Reference | None]:
    """(the folder to export, its tokenizer, parity's PyTorch answers when parity runs
    here), loading the model's weights once: the merge's model answers for parity."""
    tokenizer = _tokenizer(source, config)
    model_dir, model = source.model_dir, None
    if source.adapter is not None:
        model_dir, model = _merged(source, staging, tokenizer, config, log)
    reference = None
    if runnable and config.parity:
        if model is None:
            model = load_causal_lm(str(model_dir), trust_remote_code=config.trust_remote_code)
        reference = parity.reference(
            model,
            tokenizer,
            source.eval_plan,
            stored=_stored_answers(config, source),
            agreement_count=config.agreement_prompts,
            log=log,
        )
    del model
    gc.collect()
    return model_dir, tokenizer, reference


def _tokenizer(source: _Source, config: AutoOptConfig):
    """The exported folder's tokenizer, loaded once: the base's (the eval set's, when
    there is one) for the base or base + adapter, else the fine-tuned folder's own."""
    if source.adapter is None and source.model_dir != source.base.path:
        return load_padding_tokenizer(
            str(source.model_dir), trust_remote_code=config.trust_remote_code
        )
    if source.eval_plan is not None and source.eval_plan.base.path == source.base.path:
        return source.eval_plan.tokenizer
    return load_padding_tokenizer(source.base, trust_remote_code=config.trust_remote_code)


def _stored_answers(config: AutoOptConfig, source: _Source) -> parity.StoredAnswers | None:
    """Where the evaluate stage of the run may have left the fine-tuned answers."""
    if config.run_path is None:
        return None
    return parity.StoredAnswers(
        TrainingLayout(config.run_path).fine_tuned_answers, source.model_dir, source.adapter
    )


def _check_and_time(
    config: AutoOptConfig,
    target: Target,
    source: _Source,
    model_dir: Path,
    folder: Path,
    tokenizer,
    reference: parity.Reference | None,
    log: Log,
) -> tuple[dict | None, list[GateRecord], list[dict] | None]:
    """Parity (with its gate; ``reference`` is None when parity is off) and benchmark."""
    parity_summary, records, bench = None, [], None
    if reference is not None:
        parity_summary, gate = parity.check(
            folder,
            target,
            reference,
            tokenizer,
            source.eval_plan,
            max_degradation=config.max_export_degradation,
            log=log,
        )
        records.append(gate)
        atomic_write_json(folder / PARITY_NAME, parity_summary)
    if config.benchmark:
        bench = _benchmark(config, target, model_dir, folder, tokenizer, source, log)
        atomic_write_json(folder / BENCHMARK_NAME, bench)
    return parity_summary, records, bench


def _source(config: AutoOptConfig, log: Log) -> _Source:
    """What to export, checked before anything heavy runs."""
    adapter = check_adapter_folder(config.adapter_path) if config.adapter_path else None
    model_dir: Path | None = None
    base_name = config.model_name_or_path
    if config.run_path is not None:
        run_path = Path(config.run_path)
        history = read_run_metrics(run_path)
        base_name = base_name or history["config"]["model_name_or_path"]
        if adapter is None:
            model_dir = recorded_output(run_path, history, MERGED)
            adapter = None if model_dir else recorded_output(run_path, history, ADAPTER)
    base = resolve(base_name, log=log)
    if adapter is not None:
        check_adapter_fits(base.path, adapter, base.name)
    eval_plan = None
    if config.parity and config.run_path is not None:
        eval_plan = eval_set.for_run(
            config.run_path,
            model_name_or_path=base_name,
            trust_remote_code=config.trust_remote_code,
            log=log,
        )
    return _Source(base, model_dir or base.path, adapter, eval_plan)


def _merged(source: _Source, staging: Path, tokenizer, config: AutoOptConfig, log: Log):
    """(the folder to export, the model in memory): the adapter merged into the float32
    base and saved, the model kept for parity instead of loaded again."""
    log(f"merging {source.adapter} into the float32 base {source.base.name}")
    return merge_into_base(
        source.base,
        source.adapter,
        staging / "merged",
        tokenizer,
        trust_remote_code=config.trust_remote_code,
        keep_model=True,
    )


def _can_run(target: Target) -> tuple[bool, str | None]:
    """GPU targets are built anywhere but run only where CUDA is (onnxruntime-genai-cuda)."""
    if target.device != "gpu":
        return True, None
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return True, None
    return False, (
        f"{target.name} needs onnxruntime-gpu / onnxruntime-genai-cuda and an NVIDIA GPU; "
        "the model is built, run `slmops auto-opt` on a GPU machine for parity and benchmark"
    )


def _benchmark(
    config: AutoOptConfig,
    target: Target,
    model_dir: Path,
    folder: Path,
    tokenizer,
    source: _Source,
    log: Log,
) -> list[dict]:
    eval_prompts = [e.prompt for e in source.eval_plan.data.eval] if source.eval_plan else []
    prompts = parity.agreement_prompts(tokenizer, eval_prompts, config.benchmark_prompts)
    prompt_ids = encode_prompts(tokenizer, prompts[: config.benchmark_prompts])
    subjects = [
        Subject(PYTORCH_LABEL, "torch", model_dir, device=target.device),
        Subject(target.name, "onnx", folder, device=target.device),
    ]
    results = with_speedups(
        measure(subjects, prompt_ids, config.benchmark_new_tokens, rounds=config.benchmark_rounds),
        PYTORCH_LABEL,
    )
    for result in results:
        log(
            f"benchmark {result['label']}: first token {result['first_token_ms']} ms, "
            f"{result['decode_tokens_per_s']} tokens/s (x{result['decode_speedup']}), "
            f"{result['size_mb']} MB, peak RSS {result['peak_rss_mb']} MB"
        )
    return results


def _record(config: AutoOptConfig, target: Target, source: _Source, model_dir: Path) -> dict:
    import onnxruntime
    import onnxruntime_genai

    import slmops

    return {
        "target": target.as_dict(),
        "base_model": source.base.name,
        "adapter": str(source.adapter) if source.adapter else None,
        "source_model": str(model_dir)
        if source.adapter is None
        else "base + adapter, merged in float32",
        "run_path": str(config.run_path) if config.run_path else None,
        "versions": {
            "slmops": slmops.__version__,
            "onnxruntime": onnxruntime.__version__,
            "onnxruntime_genai": onnxruntime_genai.__version__,
        },
        "config": config.model_dump(mode="json"),
    }
