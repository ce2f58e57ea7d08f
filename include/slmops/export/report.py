"""report.md / report.html of one export: what was built, parity, speed and memory."""

from __future__ import annotations

from pathlib import Path

from slmops.report import Document, cell, verdict


def write_report(
    folder: Path, record: dict, parity: dict | None, benchmark: list[dict] | None
) -> None:
    target = record["target"]
    doc = Document(f"ONNX export: {target['name']}")
    doc.paragraph(
        f"**{target['name']}** ({target['device']}, {target['provider']}, "
        f"{target['precision']}): {target['purpose']}."
    )
    _export_section(doc, record)
    if record.get("not_run"):
        doc.paragraph(f"Parity and benchmark not run: {record['not_run']}")
    if parity is not None:
        _parity_section(doc, parity, target["name"])
    if benchmark is not None:
        _benchmark_section(doc, benchmark)
    doc.write(folder)


def _export_section(doc: Document, record: dict) -> None:
    doc.heading("Export")
    rows = [
        ["exporter", record["exporter"]],
        ["base model", record["base_model"]],
        ["adapter", record["adapter"] or "none"],
        ["exported from", record["source_model"]],
        ["size on disk (MB)", f"{record['size_mb']} (PyTorch: {record['source_size_mb']})"],
        ["export seconds", record["seconds"]],
    ]
    if record.get("fell_back"):
        rows.append(["fallback", record["fallback_reason"]])
    for name, version in record["versions"].items():
        rows.append([name, version])
    doc.table(["", ""], rows)
    if record.get("gates"):
        doc.table(
            ["gate", "verdict", "observed", "threshold", "explanation"],
            [
                [g["name"], verdict(g["passed"]), g["observed"], g["threshold"], g["explanation"]]
                for g in record["gates"]
            ],
        )


def _parity_section(doc: Document, parity: dict, target: str) -> None:
    doc.heading("Parity with PyTorch")
    if "pytorch" in parity:
        reference = parity["pytorch"]["metrics"]
        exported = parity["exported"]["metrics"]
        doc.paragraph(
            f"{parity['eval_rows']} eval rows, greedy; primary metric "
            f"**{parity['primary_metric']}**."
        )
        doc.table(
            ["metric", "PyTorch fp32", target, "difference"],
            [
                [name, cell(value), cell(exported[name]), cell(exported[name] - value)]
                for name, value in reference.items()
                if name in exported
            ],
        )
    agreement = parity["agreement"]
    doc.paragraph(
        f"Greedy-token agreement on {agreement['prompts']} fixed prompts: "
        f"{cell(agreement['mean_prefix_agreement'])} of each answer matches before the first "
        f"differing token on average; {cell(agreement['identical_answers'])} of the answers "
        "are identical."
    )
    if parity.get("samples"):
        doc.table(
            ["prompt (end)", "PyTorch", target],
            [
                [sample["prompt"][-80:], sample["pytorch"], sample[target]]
                for sample in parity["samples"]
            ],
        )


def _benchmark_section(doc: Document, benchmark: list[dict]) -> None:
    doc.heading("Speed and memory")
    doc.paragraph(
        f"{benchmark[0]['prompts']} prompts, each decoding a fixed number of tokens; every "
        f"model in its own process, {benchmark[0]['rounds']} round(s) alternating the models "
        "on this machine; medians."
    )
    doc.table(
        [
            "model",
            "first token (ms)",
            "decode tokens/s",
            "decode speed-up",
            "size (MB)",
            "peak RSS (MB)",
        ],
        [
            [
                row["label"],
                cell(row["first_token_ms"]),
                cell(row["decode_tokens_per_s"]),
                f"x{row['decode_speedup']}",
                cell(row["size_mb"]),
                cell(row["peak_rss_mb"]),
            ]
            for row in benchmark
        ],
    )
