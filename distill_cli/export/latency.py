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

from distill_cli.export.ranges import check_range
from distill_cli.host import check_threads, cpu_count
from distill_cli.students.cache import cpu_model

#: The protocol's minimums; `meets_protocol` in each entry says whether a run honoured them.
MIN_WARMUP, MIN_RUNS, MIN_SECONDS = 10, 100, 5.0


@dataclass
class TimingPlan:
    """The timing protocol's settings (`--warmup`, `--runs`, `--min-time`, `--max-time`,
    `--batch`, `--threads`), range-checked here so the API refuses what the CLI's flags refuse."""

    warmup: int = MIN_WARMUP
    runs: int = MIN_RUNS
    min_time_s: float = MIN_SECONDS
    max_time_s: float = 60.0
    batch: int = 32  # throughput batch
    threads: int = 0  # 0: os.cpu_count()

    def __post_init__(self) -> None:
        check_range(self.warmup, "--warmup", 0)
        check_range(self.runs, "--runs", 1)
        check_range(self.min_time_s, "--min-time", 0.0)
        check_range(self.max_time_s, "--max-time", 0.0)
        check_range(self.batch, "--batch", 1)
        check_range(self.threads, "--threads", 0)
        check_threads(self.threads, "--threads")
        if self.threads <= 0:
            self.threads = cpu_count()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


#: p90 / p50 above this: the calls were disturbed (a quiet CPU repeats a call within ~10-20%).
MAX_SPREAD = 1.5
#: CPU (in cores) other processes may use while we time, beyond the cores we leave free.
CONTENTION_SLACK = 0.5


def _cpu_jiffies() -> tuple[float, float] | None:
    """(busy, total) seconds of all CPUs from /proc/stat (steal counts as busy); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [float(v) for v in fields[:8]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    return (sum(values) - idle) / hz, sum(values) / hz


def _own_cpu() -> float:
    """CPU seconds used by this process (all its threads: PyTorch's and ONNX Runtime's)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class CpuWatch:
    """How busy the rest of the machine was while we timed: other processes' CPU, in cores.

    /proc/stat gives all CPUs' busy time over the window; this process's own CPU time (every
    thread of it) is subtracted, so what is left is contention from elsewhere. Off Linux only
    the load average is available, and it is recorded instead.
    """

    start: tuple[float, float] | None = None
    own: float = 0.0
    wall: float = 0.0

    @classmethod
    def begin(cls) -> CpuWatch:
        return cls(_cpu_jiffies(), _own_cpu(), time.perf_counter())

    def other_cores(self) -> float | None:
        end = _cpu_jiffies()
        if self.start is None or end is None:
            return None
        elapsed = time.perf_counter() - self.wall
        if elapsed <= 0:
            return None
        others = (end[0] - self.start[0]) - (_own_cpu() - self.own)
        return max(0.0, others / elapsed)


def protocol_issues(
    stats: dict[str, float], threads: int, other_cores: float | None, load: float | None
) -> list[str]:
    """Why a measurement cannot be believed, one line each; [] when it can.

    Noisy: p90 / p50 above MAX_SPREAD. Oversubscribed: more threads than usable cores.
    Contended: other processes used more CPU than the cores we left free (plus a little slack);
    off Linux, a 1-minute load average above the cores stands in for that.
    """
    cores = usable_cores()
    issues = []
    spread = stats["p90_ms"] / stats["p50_ms"] if stats["p50_ms"] > 0 else float("inf")
    if not spread <= MAX_SPREAD:
        issues.append(f"noisy: p90/p50 = {spread:.2f} > {MAX_SPREAD}")
    if threads > cores:
        issues.append(f"oversubscribed: {threads} threads on {cores} usable cores")
    if other_cores is not None:
        if other_cores > max(0, cores - threads) + CONTENTION_SLACK:
            issues.append(
                f"contended: other processes used {other_cores:.1f} of {cores} cores "
                f"while timing with {threads} threads"
            )
    elif load is not None and load > cores:
        issues.append(f"contended: load average {load:.1f} on {cores} cores")
    return issues


def _measure(run1: Callable[[], Any], run_n: Callable[[], Any], plan: TimingPlan) -> dict[str, Any]:
    watch = CpuWatch.begin()
    times, elapsed = time_fn(run1, plan.warmup, plan.runs, plan.min_time_s, plan.max_time_s)
    other = watch.other_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out: dict[str, Any] = stats(times)
    short = plan.warmup < MIN_WARMUP or (len(times) < MIN_RUNS and elapsed < MIN_SECONDS)
    issues = protocol_issues(out, plan.threads, other, load)
    if short:
        issues.insert(0, f"short: {plan.warmup} warm-up, {len(times)} runs in {elapsed:.1f} s")
    out.update(
        warmup=plan.warmup,
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
        "threads_detail": {"intra_op": plan.threads, "inter_op": 1},
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

    detail = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
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
        "threads_detail": detail,
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
    found = providers()
    entries: list[dict[str, Any]] = []

    def tagged(variant: str, entry: dict[str, Any]) -> dict[str, Any]:
        return entry if role is None else {"model": role, "variant": variant, **entry}

    if module is not None:
        for device in ["cpu", *(["cuda"] if "CUDAExecutionProvider" in found else [])]:
            suffix = "" if device == "cpu" else "-cuda"
            log(f"timing {label}: PyTorch eager ({device})")
            title = f"pytorch{suffix}" if role is None else f"{role}/pytorch{suffix}"
            entries.append(tagged("fp32", torch_entry(title, module, shape, plan, device)))
    for variant, path in files.items():
        for provider in found:
            suffix = "" if provider == "CPUExecutionProvider" else "-cuda"
            log(f"timing {label}: ONNX Runtime {variant} ({provider})")
            title = (
                f"onnxruntime{suffix}" if role is None else f"{role}/onnxruntime{suffix}/{variant}"
            )
            entries.append(tagged(variant, ort_entry(title, path, shape, plan, provider)))
    return entries
