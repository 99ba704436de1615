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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill_cli.errors import DistillError, RunFailed
from distill_cli.export.protocol import (
    CONTENTION_SLACK,
    MAX_SPREAD,
    MIN_RUNS,
    MIN_SECONDS,
    MIN_WARMUP,
    CpuWatch,
    TimingPlan,
    assess,
    batch_memory,
    check_batch_memory,
    protocol_issues,
    usable_cores,
)
from distill_cli.students.cache import cpu_model

__all__ = [
    "CONTENTION_SLACK",
    "MAX_SPREAD",
    "MIN_RUNS",
    "MIN_SECONDS",
    "MIN_WARMUP",
    "CpuWatch",
    "TimingPlan",
    "assess",
    "protocol_issues",
    "usable_cores",
]


def stats(times: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min in milliseconds of per-call seconds: every runtime's figures (and
    `distill students`' probe) are summarized the same way, so they compare."""
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
    warm_up(fn, warmup, max_time_s)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if (len(times) >= runs and elapsed >= min_time_s) or elapsed >= max_time_s:
            return times, elapsed


def warm_up(fn: Callable[[], Any], calls: int, max_time_s: float) -> int:
    """Up to `calls` warm-up calls, stopping after `max_time_s` (`--warmup 1000000000` never
    ended: --max-time bounds the warm-up too); returns how many were made."""
    return len(timed_warm_up(fn, calls, max_time_s))


def timed_warm_up(fn: Callable[[], Any], calls: int, max_time_s: float) -> list[float]:
    """`warm_up`, returning each call's seconds: `distill students`' probe rules a model out
    by its fastest warm-up calls, under the same bound."""
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        if t0 - start >= max_time_s:
            break
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _measure(run1: Callable[[], Any], run_n: Callable[[], Any], plan: TimingPlan) -> dict[str, Any]:
    watch = CpuWatch.begin()
    warmed = warm_up(run1, plan.warmup, plan.max_time_s)  # what the entry reports, as made
    times, elapsed = time_fn(run1, 0, plan.runs, plan.min_time_s, plan.max_time_s)
    other = watch.other_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out: dict[str, Any] = stats(times)
    issues = assess(out, plan.threads, warmed, len(times), elapsed, other, load)
    out.update(
        warmup=warmed,
        runs=len(times),
        seconds=round(elapsed, 3),
        p90_p50=out["p90_ms"] / out["p50_ms"] if out["p50_ms"] > 0 else None,
        other_cpu_cores=None if other is None else round(other, 2),
        load_average=None if load is None else round(load, 2),
        meets_protocol=not issues,
        protocol_issues=issues,
    )
    if plan.batch > 1:
        # Throughput: fewer, longer calls; the same stopping rule at a tenth of the counts.
        with batch_memory(plan.batch):
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
    session = open_session(path, opts, provider)
    return session, (time.perf_counter() - t0) * 1000.0


def open_session(path: Path, opts: Any, provider: str) -> Any:
    """An ONNX Runtime session on `provider`, or an error: ONNX Runtime falls back to the CPU
    with a warning when a GPU provider cannot start (missing CUDA/cuDNN/TensorRT libraries), and
    a CPU figure must never be reported as a GPU one."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
    if provider not in session.get_providers():
        raise DistillError(
            f"ONNX Runtime could not start {provider} (it fell back to "
            f"{session.get_providers()[0]})",
            str(path),
            "check the CUDA, cuDNN (and TensorRT) libraries that onnxruntime-gpu needs",
        )
    return session


def ort_entry(
    name: str, path: Path, shape: tuple[int, int, int], plan: TimingPlan, provider: str
) -> dict[str, Any]:
    session, create_ms = ort_session(path, plan.threads, provider)
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *shape), dtype=np.float32)
    check_batch_memory(plan.batch, shape)
    with batch_memory(plan.batch):
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
        "threads_detail": {"intra_op": plan.threads, "inter_op": 1},
        "session_create_ms": create_ms,
        "file_bytes": path.stat().st_size,
        **result,
    }


def torch_entry(
    name: str,
    module: nn.Module,
    shape: tuple[int, int, int],
    plan: TimingPlan,
    device: str,
    *,
    compiled: bool = False,
) -> dict[str, Any]:
    """PyTorch eager (or `torch.compile`d), fp32, inference mode: the baseline the ONNX figures
    are compared with; the compiled form on CUDA only (compiling on a CPU takes minutes)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    dev = torch.device(device)
    module = module.eval().to(dev)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, *shape, generator=gen).to(dev)
    check_batch_memory(plan.batch, shape)
    with batch_memory(plan.batch):
        xn = torch.randn(plan.batch, *shape, generator=gen).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    run = torch.compile(module) if compiled else module

    def call(x: torch.Tensor) -> None:
        with torch.inference_mode():
            run(x)
        sync()

    detail = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    try:
        result = _measure(lambda: call(x1), lambda: call(xn), plan)
    finally:
        module.to("cpu")
        torch.set_num_threads(previous)
    return {
        "name": name,
        "runtime": "pytorch",
        "provider": ("torch.compile " if compiled else "eager ")
        + ("CUDA" if dev.type == "cuda" else "CPU"),
        "threads": plan.threads,
        "threads_detail": detail,
        "session_create_ms": None,
        **result,
    }


#: ONNX Runtime's GPU providers distill times, in order; TensorRT only where its wheel lists it
#: and a session can be made (its libraries are a separate install)
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
ORT_GPU_HINT = "pip install onnxruntime-gpu (it replaces onnxruntime; same version)"


def check_device(device: str) -> None:
    """`--device cuda` needs onnxruntime's CUDA build and a visible GPU: else one line naming
    what to install or check (exit code 2), before any work."""
    if device != "cuda":
        return
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DistillError(
            "onnxruntime has no CUDA provider (the onnxruntime-gpu package is not installed)",
            "--device cuda",
            ORT_GPU_HINT,
        )
    if not torch.cuda.is_available():
        raise DistillError(
            "no CUDA GPU is visible to PyTorch",
            "--device cuda",
            "run on a GPU machine, or --device cpu",
        )


def providers(device: str = "auto") -> list[str]:
    """CPU always; CUDA (and TensorRT where listed) too when `device` allows it and both ONNX
    Runtime's GPU build and a GPU are there (`check_device` has refused "cuda" otherwise)."""
    import onnxruntime as ort

    found = ["CPUExecutionProvider"]
    if device == "cpu" or not torch.cuda.is_available():
        return found
    listed = ort.get_available_providers()
    return found + [p for p in GPU_PROVIDERS if p in listed]


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


def sweep(
    module: nn.Module | None,
    files: dict[str, Path],
    shape: tuple[int, int, int],
    plan: TimingPlan,
    *,
    role: str | None = None,
    label: str = "",
    log: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """One model timed on every runtime at hand: PyTorch eager (CPU, then CUDA when there) if
    `module` is given, then each ONNX file (`files`: variant -> path) on every provider.

    `distill export` and `distill bench latency` both time through here, so their entries are
    measured alike. With a `role` ("student", "teacher") entries are named
    ``role/pytorch[-cuda]`` and ``role/onnxruntime[-cuda]/variant`` and carry ``model`` and
    ``variant`` keys (report.json); without one they are ``pytorch[-cuda]`` and
    ``onnxruntime[-cuda]`` (one file, bench latency's result).
    """
    check_device(plan.device)
    found = providers(plan.device)
    entries: list[dict[str, Any]] = []

    def tagged(variant: str, entry: dict[str, Any]) -> dict[str, Any]:
        return entry if role is None else {"model": role, "variant": variant, **entry}

    # PyTorch on the GPU whenever one is there (and not --device cpu), with or without
    # onnxruntime's CUDA build: the figures the ONNX ones are read against
    gpu = plan.device != "cpu" and torch.cuda.is_available()
    if module is not None:
        runs = [("cpu", False), *([("cuda", False), ("cuda", True)] if gpu else [])]
        for device, compiled in runs:
            suffix = "" if device == "cpu" else ("-cuda-compiled" if compiled else "-cuda")
            how = "torch.compile" if compiled else "eager"
            log(f"timing {label}: PyTorch {how} ({device})")
            title = f"pytorch{suffix}" if role is None else f"{role}/pytorch{suffix}"
            entries.append(
                tagged("fp32", torch_entry(title, module, shape, plan, device, compiled=compiled))
            )
    for variant, path in files.items():
        for provider in found:
            suffix = PROVIDER_SUFFIX[provider]
            log(f"timing {label}: ONNX Runtime {variant} ({provider})")
            title = (
                f"onnxruntime{suffix}" if role is None else f"{role}/onnxruntime{suffix}/{variant}"
            )
            try:
                entry = ort_entry(title, path, shape, plan, provider)
            except Exception as exc:  # TensorRT listed but its libraries absent, say: no
                if provider == "CUDAExecutionProvider":  # entry (the parity block says why)
                    raise
                first = str(exc).splitlines()[0][:300]
                if provider == "CPUExecutionProvider":  # an empty table, exit 0, said nothing
                    raise RunFailed(
                        f"ONNX Runtime cannot run the file: {first}",
                        str(path),
                        "check its input shape (a fixed batch or size) against the timing plan",
                    ) from exc
                log(f"{provider} not available: {first}")
                continue
            entries.append(tagged(variant, entry))
    return entries


PROVIDER_SUFFIX = {
    "CPUExecutionProvider": "",
    "CUDAExecutionProvider": "-cuda",
    "TensorrtExecutionProvider": "-tensorrt",
}
