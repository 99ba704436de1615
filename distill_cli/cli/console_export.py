"""Terminal tables for `distill export` and `distill bench latency` (rich).

The export half of console.py, kept apart so neither module grows past a screenful of
formatters. Rendering only: every figure comes from the `ExportReport` (or bench latency's
result), so the table and report.json never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table

from distill_cli.export.report import ExportReport, LatencyEntry, LatencyReport

if TYPE_CHECKING:
    from distill_cli.bench.latency import LatencyBench


def _num(value: Any, fmt: str = "{:.2f}", suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):  # "nan" / "inf" from a broken export
        return value
    return fmt.format(value) + suffix


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


def parity_table(report: ExportReport) -> Table:
    """fp32 against PyTorch, then each variant against ONNX fp32, with the gates' verdicts."""
    parity, model = report.parity, report.model
    table = Table(
        title=f"{model.name}: ONNX vs PyTorch on {parity.inputs.images} {parity.inputs.kind} inputs"
    )
    for col in ("file", "vs", "max |diff|", "mean |diff|", "top-1 agree", "top-1", "drop", "size"):
        table.add_column(col, justify="left" if col in ("file", "vs") else "right")
    table.add_column("")
    ok = "[green]pass[/]" if parity.passed else "[red]FAIL[/]"
    table.add_row(
        "fp32",
        "PyTorch",
        _num(parity.max_abs_diff, "{:.2e}"),
        _num(parity.mean_abs_diff, "{:.2e}"),
        _num(parity.top1_agreement, suffix="%"),
        _num(parity.top1_onnx, suffix="%"),
        _num(parity.top1_drop),
        _size(model.onnx.bytes),
        ok + f" (<= {parity.atol:g} + {parity.rtol:g}|b|)",
    )
    for name, variant in report.variants.items():
        vp = variant.parity
        gated = variant.gates_passed
        verdict = "" if gated is None else ("[green]pass[/]" if gated else "[red]FAIL[/]")
        table.add_row(
            name,
            "ONNX fp32",
            _num(vp.max_abs_diff, "{:.2e}"),
            _num(vp.mean_abs_diff, "{:.2e}"),
            _num(vp.top1_agreement_fp32, suffix="%"),
            _num(vp.top1, suffix="%"),
            _num(vp.top1_drop),
            _size(variant.bytes),
            verdict,
        )
    onnx = model.onnx
    table.caption = (
        f"PyTorch top-1 {_num(parity.top1_pytorch, suffix='%')} | {model.params:,} params, "
        f"{_num(model.gflops, '{:.3f}')} GFLOPs | exporter {onnx.exporter_used}"
        + (f", opset {onnx.opset}" if onnx.opset else "")
    )
    return table


def latency_table(latency: LatencyReport, title: str = "latency") -> Table:
    """One row per timed runtime; the caption holds the speed-ups (p50 ratios)."""
    table = Table(title=f"{title}: batch 1, {latency.threads} threads, {latency.cpu}")
    cols = (
        "entry",
        "provider",
        "session",
        "p50",
        "p90",
        "p99",
        "mean",
        "img/s",
        "runs",
        "protocol",
    )
    for col in cols:
        table.add_column(
            col, justify="left" if col in ("entry", "provider", "protocol") else "right"
        )
    for e in latency.entries:
        table.add_row(
            e.name,
            e.provider.replace("ExecutionProvider", ""),
            _num(e.session_create_ms, "{:.0f}", " ms"),
            _num(e.p50_ms, "{:.3f}"),
            _num(e.p90_ms, "{:.3f}"),
            _num(e.p99_ms, "{:.3f}"),
            _num(e.mean_ms, "{:.3f}"),
            _num(e.throughput_ips, "{:,.0f}"),
            str(e.runs),
            _protocol(e),
        )
    good = latency.speedup_meets_protocol
    parts = [
        f"{k.replace('_', ' ')} {v:.2f}x" + ("" if good.get(k, True) else " (not protocol)")
        for k, v in latency.speedup.items()
    ]
    table.caption = "ms; throughput at batch " + str(latency.batch)
    if parts:
        table.caption += " | speed-up (p50): " + ", ".join(parts)
    return table


def _protocol(entry: LatencyEntry) -> str:
    """ok, or the first reason the entry does not meet the protocol (all are in the report)."""
    if entry.meets_protocol:
        return "[green]ok[/]"
    issues = entry.protocol_issues or ["not met"]
    return f"[yellow]{issues[0].split(':')[0]}[/]" + (
        f" +{len(issues) - 1}" if len(issues) > 1 else ""
    )


def export_view(report: ExportReport) -> Group:
    """`distill export`'s terminal output: parity, latency, notes, the verdict and the files."""
    parts: list[Any] = [parity_table(report)]
    if report.latency:
        parts.append(latency_table(report.latency))
    files = ", ".join(f"{k}: {v}" for k, v in report.files.items())
    parts.extend(f"[yellow]note[/] {n}" for n in report.notes)
    verdict = "[green]gates passed[/]" if report.gates.passed else "[red]gates missed[/]"
    parts.append(f"{verdict} | {files}")
    return Group(*parts)


def bench_view(result: LatencyBench) -> Group:
    """`distill bench latency`'s terminal output: the latency table and the model's size."""
    model = result.model
    lines: list[Any] = [latency_table(result.latency, f"{model.name or 'model'}")]
    lines.append(
        f"params {_num(model.params, '{:,}')}, GFLOPs {_num(model.gflops, '{:.3f}')}"
        f", file {_size(model.bytes)}"
    )
    return Group(*lines)
