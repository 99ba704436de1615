"""The latency stage of `distill export`: the student (PyTorch, ONNX fp32, each variant) and the
run's teachers (PyTorch, ONNX fp32), one after the other in one process, same threads, same
protocol (see latency.py). A teacher that cannot be exported is timed in PyTorch only, noted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export.onnx_export import Exporter, export_onnx
from distill_cli.models.create import Net

T = TypeVar("T")

RULE = (
    "warm-up calls, then timed calls until >= runs and >= min_time_s (stop at max_time_s); "
    f"an entry meets the protocol only with p90/p50 <= {lat.MAX_SPREAD}, no more threads than "
    "usable cores, and no other process using the cores left free"
)


def measure(
    student: Net,
    student_module: nn.Module,
    student_files: dict[str, Path],
    teachers: list[Net],
    plan: lat.TimingPlan,
    exporter: Exporter,
    opset: int,
    notes: list[str],
    log: Callable[[str], None],
    retime: str | None = None,
) -> dict[str, Any]:
    """The report's latency block. `student_module` is what was exported (reparameterized).

    `retime` names the student's gated variant (`--require-protocol`): when its CPU entry does
    not meet the protocol it is timed again, up to RETRIES times, and the first attempt that
    meets it (else the last) is kept; every attempt's issues are recorded under `retries`."""
    entries: list[dict[str, Any]] = []
    models: list[tuple[str, Net, nn.Module, dict[str, Path]]] = [
        ("student", student, student_module, student_files)
    ]
    with tempfile.TemporaryDirectory(prefix="distill-teacher-") as tmp:
        for index, teacher in enumerate(teachers):
            role = "teacher" if len(teachers) == 1 else f"teacher{index}"
            files = _teacher_onnx(teacher, Path(tmp) / role, exporter, opset, notes, log)
            models.append((role, teacher, teacher.module, files))
        for role, net, module, files in models:
            shape = (net.info.in_chans, *net.info.input_size)
            label = f"{role} {net.info.name}"
            entries += lat.sweep(module, files, shape, plan, role=role, label=label, log=log)
    retries = _retime(entries, retime, student, student_files, plan, log) if retime else []
    speedup, believable = speedups(entries), speedups_meet_protocol(entries)
    return latency_block(entries, plan, speedup, believable, retries)


def latency_block(
    entries: list[dict[str, Any]],
    plan: lat.TimingPlan,
    speedup: dict[str, float],
    speedup_meets_protocol: dict[str, bool],
    retries: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The latency block, as report.json and `distill bench latency` both hold it (read back by
    `report.LatencyReport`): its keys are spelled here only. `retries`: the gated entry's
    extra timings under `--require-protocol` (export only)."""
    failing = [e["name"] for e in entries if not e["meets_protocol"]]
    return {
        "protocol": {**plan.to_dict(), "batch_latency": 1, "rule": RULE},
        "environment": lat.environment(plan.threads),
        "entries": entries,
        "meets_protocol": not failing,
        "not_meeting_protocol": failing,
        "speedup": speedup,
        "speedup_meets_protocol": speedup_meets_protocol,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "retries": retries or [],
    }


#: Extra timings of the gated entry when `--require-protocol` finds it disturbed.
RETRIES = 2


def _retime(
    entries: list[dict[str, Any]],
    variant: str,
    student: Net,
    files: dict[str, Path],
    plan: lat.TimingPlan,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Time the gated entry again while it misses the protocol; returns each attempt's issues."""
    name = f"student/onnxruntime/{variant}"
    index = next((i for i, e in enumerate(entries) if e["name"] == name), None)
    if index is None or variant not in files:
        return []
    shape = (student.info.in_chans, *student.info.input_size)
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, RETRIES + 1):
        if entries[index]["meets_protocol"]:
            break
        issues = entries[index]["protocol_issues"]
        attempts.append({"attempt": attempt, "entry": name, "issues": issues})
        log(f"timing {name} again ({attempt}/{RETRIES}): {'; '.join(issues)}")
        entry = lat.ort_entry(name, files[variant], shape, plan, "CPUExecutionProvider")
        entries[index] = {"model": "student", "variant": variant, **entry}
    return attempts


#: The questions an export's latency answers: speed-up name -> (slower entry, faster entry).
_PAIRS = {
    "onnx_fp32_vs_pytorch": ("student/pytorch", "student/onnxruntime/fp32"),
    "int8_vs_onnx_fp32": ("student/onnxruntime/fp32", "student/onnxruntime/int8"),
    "fp16_vs_onnx_fp32": ("student/onnxruntime/fp32", "student/onnxruntime/fp16"),
    "student_pytorch_vs_teacher_pytorch": ("teacher/pytorch", "student/pytorch"),
    "student_onnx_fp32_vs_teacher_pytorch": ("teacher/pytorch", "student/onnxruntime/fp32"),
    "student_onnx_fp32_vs_teacher_onnx_fp32": (
        "teacher/onnxruntime/fp32",
        "student/onnxruntime/fp32",
    ),
    "student_int8_vs_teacher_pytorch": ("teacher/pytorch", "student/onnxruntime/int8"),
}


def _by_name(values: dict[str, T], combine: Callable[[list[T]], T]) -> dict[str, T]:
    """`values` by entry name, plus "teacher/..." for an ensemble: its members (teacher0,
    teacher1, ...) run one after the other, so the ensemble is their `combine` (sum, all)."""
    out = dict(values)
    for kind in ("pytorch", "onnxruntime/fp32"):
        members = [
            v for k, v in values.items() if k.startswith("teacher") and k.endswith("/" + kind)
        ]
        if members and f"teacher/{kind}" not in out:
            out[f"teacher/{kind}"] = combine(members)
    return out


def speedups(entries: list[dict[str, Any]]) -> dict[str, float]:
    """p50 ratios that answer the questions an export is for (only those measured)."""
    p50 = _by_name({e["name"]: e["p50_ms"] for e in entries}, sum)
    return {
        key: p50[slow] / p50[fast]
        for key, (slow, fast) in _PAIRS.items()
        if slow in p50 and fast in p50 and p50[fast] > 0
    }


def speedups_meet_protocol(entries: list[dict[str, Any]]) -> dict[str, bool]:
    """For each speed-up `speedups` reports: were both of its entries (every teacher member,
    for an ensemble) measured by the protocol? A ratio of a disturbed entry is not a result."""
    ok = _by_name({e["name"]: bool(e.get("meets_protocol")) for e in entries}, all)
    return {
        key: ok[slow] and ok[fast]
        for key, (slow, fast) in _PAIRS.items()
        if slow in ok and fast in ok
    }


def _teacher_onnx(
    teacher: Net,
    folder: Path,
    exporter: Exporter,
    opset: int,
    notes: list[str],
    log: Callable[[str], None],
) -> dict[str, Path]:
    """A throw-away ONNX export of a teacher, only to time it; {} (with a note) if it fails."""
    log(f"exporting the teacher {teacher.info.name} to time it in ONNX Runtime")
    shape = (teacher.info.in_chans, *teacher.info.input_size)
    path = folder / "model.onnx"
    try:
        export_onnx(teacher.module, shape, path, exporter=exporter, opset=opset)
    except DistillError as exc:
        notes.append(f"teacher {teacher.info.name} timed in PyTorch only: {exc}")
        return {}
    return {"fp32": path}
