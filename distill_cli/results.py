"""What `api.export` returns: a compact, frozen view of the export's `ExportReport`.

`export.report.ExportReport` is report.json's one typed contract; this is the handful of
figures code that drives distill usually wants (files, parity, latency, gates), with
`.to_dict()` giving back the whole file. A run's typed result is `summary.RunSummary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill_cli.export.report import ExportReport


@dataclass(frozen=True)
class LatencyResult:
    """One timed runtime of an export (e.g. `student/onnxruntime/int8`), in milliseconds."""

    name: str
    model: str
    variant: str
    runtime: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float | None


@dataclass(frozen=True)
class ExportResult:
    """What `api.export` produced; mirrors `report.json` (the whole of it is `.report`)."""

    onnx: Path | None
    variants: dict[str, Path]
    parity_passed: bool
    top1_onnx: float | None
    top1_drop: float | None
    latency: list[LatencyResult]
    gates_passed: bool
    misses: list[str]
    report_path: Path | None
    report: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_report(cls, report: ExportReport) -> ExportResult:
        """The API's view of the typed report (which alone knows report.json's keys)."""
        files, parity = report.files, report.parity
        latency = report.latency
        onnx = files.get("onnx")
        return cls(
            onnx=Path(onnx) if onnx else None,
            variants={k: Path(v.path) for k, v in report.variants.items()},
            parity_passed=bool(parity.passed),
            top1_onnx=parity.top1_onnx,  # type: ignore[arg-type]
            top1_drop=parity.top1_drop,  # type: ignore[arg-type]
            latency=[
                LatencyResult(
                    name=e.name,
                    model=e.model,
                    variant=e.variant,
                    runtime=e.runtime,
                    p50_ms=e.p50_ms,
                    p90_ms=e.p90_ms,
                    p99_ms=e.p99_ms,
                    throughput_ips=e.throughput_ips,
                )
                for e in (latency.entries if latency else [])
            ],
            gates_passed=bool(report.gates.passed),
            misses=list(report.gates.misses),
            report_path=Path(files["report"]) if files.get("report") else None,
            report=report.to_dict(),
        )

    def latency_of(self, name: str) -> LatencyResult:
        """One timed entry by name, e.g. `student/onnxruntime/fp32`."""
        for entry in self.latency:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.latency) or "none"
        raise KeyError(f"no latency entry {name!r}; measured: {known}")

    def to_dict(self) -> dict[str, Any]:
        return self.report
