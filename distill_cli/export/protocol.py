"""The latency protocol: what a timing must do, and whether a figure can be believed.

One owner for both commands that time models: `distill export` (and `bench latency`) and
`distill students` take their settings from one `TimingPlan` and judge every measurement with
one `assess`, so a figure `distill students` ranks by and the figure `distill export
--max-latency-ms` gates on are produced and judged alike. Kept free of torch, numpy and ONNX
Runtime: `distill students` answers a cached query from this module alone.

The protocol (docs/targets.md): a fixed thread count, >= 10 warm-up runs, then timed runs until
there are >= `runs` of them and >= `min_time_s` have passed (capped at `max_time_s`). A figure
meets the protocol only when it ran that long, its calls repeat (p90/p50 <= MAX_SPREAD), it
used no more threads than usable cores, and nothing else used the cores it left free.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError
from distill_cli.export.ranges import check_range
from distill_cli.host import check_threads, cpu_count, thread_budget

DEVICES = ("auto", "cpu", "cuda")
#: The protocol's minimums; `meets_protocol` in each entry says whether a run honoured them.
MIN_WARMUP, MIN_RUNS, MIN_SECONDS = 10, 100, 5.0
#: The most seconds `--min-time` / `--max-time` may ask per model: an hour; `--max-time 1e30`
#: with `--min-time 1e30` timed one model forever.
MAX_SECONDS = 3600.0


@dataclass
class TimingPlan:
    """The timing protocol's settings (`--warmup`, `--runs`, `--min-time`, `--max-time`,
    `--batch`, `--threads`), range-checked here so the API refuses what the CLI's flags refuse."""

    warmup: int = MIN_WARMUP
    runs: int = MIN_RUNS
    min_time_s: float = MIN_SECONDS
    max_time_s: float = 60.0
    batch: int = 32  # throughput batch
    threads: int = 0  # 0: host.thread_budget() (OMP_NUM_THREADS where set, else the cores)
    #: where ONNX files run: "auto" (CPU, and CUDA when onnxruntime-gpu and a GPU are there),
    #: "cpu" (CPU only), "cuda" (CUDA required: a one-line error names what is missing)
    device: str = "auto"

    def __post_init__(self) -> None:
        check_range(self.warmup, "--warmup", 0, whole=True)
        check_range(self.runs, "--runs", 1, whole=True)
        check_range(self.min_time_s, "--min-time", 0.0, MAX_SECONDS)
        check_range(self.max_time_s, "--max-time", 0.0, MAX_SECONDS)
        check_range(self.batch, "--batch", 1, whole=True)
        check_range(self.threads, "--threads", 0, whole=True)
        check_threads(self.threads, "--threads")
        if self.device not in DEVICES:
            raise DistillError(f"unknown device {self.device!r}", "--device", "auto, cpu or cuda")
        if self.threads <= 0:
            self.threads = thread_budget()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The share of this machine's memory the throughput batch's inputs may take: the model's
#: activations on them take several times more. `--batch 100000000` asked numpy/torch for 30 TB
#: (a traceback), and a batch just under the memory could have woken the OOM killer instead.
BATCH_MEMORY_SHARE = 0.25
_MEMORY_WORDS = ("allocate", "out of memory", "bad_alloc", "bad allocation")


def _machine_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def _batch_refusal(batch: int, why: str) -> DistillError:
    return DistillError(
        f"the throughput batch of {batch:,} inputs {why}",
        "--batch",
        "lower --batch (throughput only: latency is timed at batch 1), e.g. 32",
    )


def check_batch_memory(batch: int, shape: tuple[int, ...]) -> None:
    """Refuse a `--batch` whose float32 inputs alone take more than `BATCH_MEMORY_SHARE` of
    this machine's memory, before they are made."""
    need, have = batch * math.prod(shape) * 4, _machine_bytes()
    if have is not None and need > BATCH_MEMORY_SHARE * have:
        raise _batch_refusal(
            batch,
            f"takes {need / 2**30:,.1f} GiB, more than a quarter of this machine's "
            f"{have / 2**30:,.0f} GiB (the model's activations need several times that)",
        )


@contextmanager
def batch_memory(batch: int) -> Iterator[None]:
    """An allocation that fails while the batch runs (a GPU's memory, a large model's
    activations) is the `--batch` refusal, not a traceback from the runtime."""
    try:
        yield
    except Exception as exc:
        text = str(exc).lower()
        if isinstance(exc, MemoryError) or any(word in text for word in _MEMORY_WORDS):
            raise _batch_refusal(batch, f"did not fit in memory ({type(exc).__name__})") from exc
        raise


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
    """The cores timing may use (`host.cpu_count`: the affinity mask); a name of its own so
    tests can stand in a machine of another size."""
    return cpu_count()


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


def assess(
    figures: dict[str, float],
    threads: int,
    warmup: int,
    runs: int,
    elapsed: float,
    other_cores: float | None,
    load: float | None,
) -> list[str]:
    """Every reason a timing cannot be believed ([] when it can): too short a protocol
    (`warmup`, `runs` timed calls in `elapsed` s), then `protocol_issues`."""
    issues = protocol_issues(figures, threads, other_cores, load)
    if warmup < MIN_WARMUP or (runs < MIN_RUNS and elapsed < MIN_SECONDS):
        issues.insert(0, f"short: {warmup} warm-up, {runs} runs in {elapsed:.1f} s")
    return issues


def load_average() -> float | None:
    """The 1-minute load average, where the platform has one."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None
