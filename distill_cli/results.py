"""Typed results of an export: a frozen dataclass over `export/report.json`.

Code that drives distill gets attribute access, type checking and editor completion, while
`.to_dict()` gives back exactly the file's content. A run's typed result is
`distill_cli.summary.RunSummary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    def from_report(cls, report: dict[str, Any]) -> ExportResult:
        files = report.get("files") or {}
        parity = report.get("parity") or {}
        entries = (report.get("latency") or {}).get("entries") or []
        onnx = files.get("onnx")
        return cls(
            onnx=Path(onnx) if onnx else None,
            variants={k: Path(v["path"]) for k, v in (report.get("variants") or {}).items()},
            parity_passed=bool(parity.get("passed")),
            top1_onnx=parity.get("top1_onnx"),
            top1_drop=parity.get("top1_drop"),
            latency=[
                LatencyResult(
                    name=e["name"],
                    model=e["model"],
                    variant=e["variant"],
                    runtime=e["runtime"],
                    p50_ms=e["p50_ms"],
                    p90_ms=e["p90_ms"],
                    p99_ms=e["p99_ms"],
                    throughput_ips=e.get("throughput_ips"),
                )
                for e in entries
            ],
            gates_passed=bool(report["gates"]["passed"]),
            misses=list(report["gates"]["misses"]),
            report_path=Path(files["report"]) if files.get("report") else None,
            report=report,
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
