"""Latency and throughput, measured the same way for every runtime so they compare.

The protocol (docs/targets.md): a fixed thread count (recorded), session creation timed apart
from inference, >= 10 warm-up runs, then timed runs until there are >= `runs` of them and
>= `min_time_s` have passed (capped at `max_time_s`, so a slow teacher still ends): batch-1
latency as p50/p90/p99/mean, and batch-N throughput as a separate measurement. Every entry
records its runtime, provider, threads and the counts it actually ran, so a figure taken with
a shortened protocol (the tests do that) says so.

Side by side here means in one process, one after the other, with the same inputs and threads:
absolute times from different runs are not compared.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: The protocol's minimums; `meets_protocol` in each entry says whether a run honoured them.
MIN_WARMUP, MIN_RUNS, MIN_SECONDS = 10, 100, 5.0


@dataclass
class TimingPlan:
    warmup: int = MIN_WARMUP
    runs: int = MIN_RUNS
    min_time_s: float = MIN_SECONDS
    max_time_s: float = 60.0
    batch: int = 32  # throughput batch
    threads: int = 0  # 0: os.cpu_count()

    def __post_init__(self) -> None:
        if self.threads <= 0:
            self.threads = os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stats(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
    }


def time_fn(
    fn: Callable[[], Any], warmup: int, runs: int, min_time_s: float, max_time_s: float
) -> tuple[list[float], float]:
    """Per-call seconds after `warmup` calls, until `runs` calls and `min_time_s` (or max)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if (len(times) >= runs and elapsed >= min_time_s) or elapsed >= max_time_s:
            return times, elapsed


def _measure(run1: Callable[[], Any], run_n: Callable[[], Any], plan: TimingPlan) -> dict[str, Any]:
    times, elapsed = time_fn(run1, plan.warmup, plan.runs, plan.min_time_s, plan.max_time_s)
    out: dict[str, Any] = _stats(times)
    out.update(
        warmup=plan.warmup,
        runs=len(times),
        seconds=round(elapsed, 3),
        meets_protocol=plan.warmup >= MIN_WARMUP
        and (len(times) >= MIN_RUNS or elapsed >= MIN_SECONDS),
    )
    if plan.batch > 1:
        # Throughput: fewer, longer calls; the same stopping rule at a tenth of the counts.
        t_times, _ = time_fn(
            run_n,
            max(1, plan.warmup // 5),
            max(3, plan.runs // 10),
            plan.min_time_s / 2,
            plan.max_time_s / 2,
        )
        out["throughput_batch"] = plan.batch
        out["throughput_ips"] = plan.batch / float(np.median(t_times))
    return out


def ort_session(path: Path, threads: int, provider: str) -> tuple[Any, float]:
    """An ONNX Runtime session with a fixed thread count; returns it and its creation time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
    return session, (time.perf_counter() - t0) * 1000.0


def ort_entry(
    name: str, path: Path, shape: tuple[int, int, int], plan: TimingPlan, provider: str
) -> dict[str, Any]:
    session, create_ms = ort_session(path, plan.threads, provider)
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *shape), dtype=np.float32)
    xn = rng.standard_normal((plan.batch, *shape), dtype=np.float32)
    result = _measure(
        lambda: session.run(None, {input_name: x1}),
        lambda: session.run(None, {input_name: xn}),
        plan,
    )
    return {
        "name": name,
        "runtime": "onnxruntime",
        "provider": provider,
        "threads": plan.threads,
        "session_create_ms": create_ms,
        "file_bytes": path.stat().st_size,
        **result,
    }


def torch_entry(
    name: str, module: nn.Module, shape: tuple[int, int, int], plan: TimingPlan, device: str
) -> dict[str, Any]:
    """PyTorch eager, fp32, inference mode: the baseline the ONNX figures are compared with."""
    previous = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    dev = torch.device(device)
    module = module.eval().to(dev)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, *shape, generator=gen).to(dev)
    xn = torch.randn(plan.batch, *shape, generator=gen).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def call(x: torch.Tensor) -> None:
        with torch.inference_mode():
            module(x)
        sync()

    try:
        result = _measure(lambda: call(x1), lambda: call(xn), plan)
    finally:
        module.to("cpu")
        torch.set_num_threads(previous)
    return {
        "name": name,
        "runtime": "pytorch",
        "provider": "eager " + ("CUDA" if dev.type == "cuda" else "CPU"),
        "threads": plan.threads,
        "session_create_ms": None,
        **result,
    }


def providers() -> list[str]:
    """CPU always; CUDA too when both ONNX Runtime's CUDA build and a GPU are there."""
    import onnxruntime as ort

    found = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        found.append("CUDAExecutionProvider")
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("distill-cli", "torch", "timm", "onnx", "onnxruntime", "onnxscript", "onnxsim"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    out["numpy"] = np.__version__
    return out


def environment(threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "onnxruntime_providers": ort.get_available_providers(),
        "versions": versions(),
    }


def speedups(entries: list[dict[str, Any]]) -> dict[str, float]:
    """p50 ratios that answer the questions an export is for (only those measured).

    An ensemble's teachers run one after the other, so "teacher" is the sum of its members.
    """
    p50 = {e["name"]: e["p50_ms"] for e in entries}
    for kind in ("pytorch", "onnxruntime/fp32"):
        members = [v for k, v in p50.items() if k.startswith("teacher") and k.endswith("/" + kind)]
        if members and f"teacher/{kind}" not in p50:
            p50[f"teacher/{kind}"] = sum(members)
    pairs = {
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
    return {
        key: p50[slow] / p50[fast]
        for key, (slow, fast) in pairs.items()
        if slow in p50 and fast in p50 and p50[fast] > 0
    }
