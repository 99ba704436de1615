"""Typed results of the Python API.

Each result is a frozen dataclass over the JSON the run or export also writes to disk
(`summary.json`, `export/report.json`), so code that drives distill gets attribute access, type
checking and editor completion, while `.to_dict()` gives back exactly the file's content. The
files stay the source of truth: a result can be rebuilt from a finished run folder with
`RunResult.load(path)`, long after the process that trained it is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError


@dataclass(frozen=True)
class ModelResult:
    """One model of a run: the student, or the (possibly ensembled) teacher."""

    model: str
    params: int
    top1: float | None = None
    top5: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What `api.run` / `api.train` produced; mirrors `runs/<name>/summary.json`."""

    name: str
    run_dir: Path
    method: str
    student: ModelResult
    teacher: ModelResult | None
    agreement_top1: float | None
    kl: float | None
    best_epoch: float | None
    best_score: float | None
    epochs: float
    steps: int
    images_per_s: float | None
    wall_time_s: float
    device: str
    precision: str
    processes: int = 1
    peak_gpu_memory_gib: float | None = None
    bad_images: int = 0
    skipped_steps: int = 0
    summary: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> RunResult:
        teacher = summary.get("teacher")
        data = summary.get("data") or {}
        best = summary.get("best") or {}
        return cls(
            name=summary["name"],
            run_dir=Path(summary["run_dir"]),
            method=summary["method"],
            student=ModelResult(**summary["student"]),
            teacher=ModelResult(**teacher) if teacher else None,
            agreement_top1=(summary.get("agreement") or {}).get("top1"),
            kl=summary.get("kl"),
            best_epoch=best.get("epoch"),
            best_score=best.get("score"),
            epochs=summary["epochs"],
            steps=summary["steps"],
            images_per_s=summary.get("images_per_s"),
            wall_time_s=summary["wall_time_s"],
            device=summary["device"],
            precision=summary["precision"],
            processes=summary.get("processes", 1),
            peak_gpu_memory_gib=summary.get("peak_gpu_memory_gib"),
            bad_images=data.get("bad_images", 0),
            skipped_steps=data.get("skipped_steps", 0),
            summary=summary,
        )

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResult:
        """The result of a finished run, read back from its folder."""
        from distill_cli.rundir import RunDir

        path = RunDir(Path(run_dir)).summary
        if not path.is_file():
            raise DistillError("no summary.json: the run has not finished", str(run_dir))
        return cls.from_summary(json.loads(path.read_text()))

    def to_dict(self) -> dict[str, Any]:
        return self.summary


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
