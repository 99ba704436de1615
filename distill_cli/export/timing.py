"""The latency stage of `distill export`: the student (PyTorch, ONNX fp32, each variant) and the
run's teachers (PyTorch, ONNX fp32), one after the other in one process, same threads, same
protocol (see latency.py). A teacher that cannot be exported is timed in PyTorch only, noted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export.onnx_export import Exporter, export_onnx
from distill_cli.models import Net

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
) -> dict[str, Any]:
    """The report's latency block. `student_module` is what was exported (reparameterized)."""
    providers = lat.providers()
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
            devices = ["cpu", *(["cuda"] if "CUDAExecutionProvider" in providers else [])]
            for device in devices:
                suffix = "" if device == "cpu" else "-cuda"
                log(f"timing {role} {net.info.name}: PyTorch eager ({device})")
                entry = lat.torch_entry(f"{role}/pytorch{suffix}", module, shape, plan, device)
                entries.append({"model": role, "variant": "fp32", **entry})
            for variant, path in files.items():
                for provider in providers:
                    suffix = "" if provider == "CPUExecutionProvider" else "-cuda"
                    name = f"{role}/onnxruntime{suffix}/{variant}"
                    log(f"timing {role} {net.info.name}: ONNX Runtime {variant} ({provider})")
                    entry = lat.ort_entry(name, path, shape, plan, provider)
                    entries.append({"model": role, "variant": variant, **entry})
    failing = [e["name"] for e in entries if not e["meets_protocol"]]
    return {
        "protocol": {**plan.to_dict(), "batch_latency": 1, "rule": RULE},
        "environment": lat.environment(plan.threads),
        "entries": entries,
        "meets_protocol": not failing,
        "not_meeting_protocol": failing,
        "speedup": lat.speedups(entries),
        "speedup_meets_protocol": lat.speedups_meet_protocol(entries),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
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
