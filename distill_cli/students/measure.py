"""Time one candidate student exactly as `distill export` would ship and time it.

The model is built the way `distill export NAME --input-size N` builds it (``resolve_source``:
timm's exportable layers, random weights), exported by the same ``export_onnx`` with the same
exporter fallback, turned into fp16 or int8 by the same ``variants`` code (int8 calibrated on
seeded random inputs: enough for latency, which does not depend on the weights' values), and
timed with the export's protocol pieces (``ort_session``, ``time_fn``): the same session
options, thread count, warm-up and stopping rule, p50/p90 over the timed calls, and the same
believability check (``protocol.assess``: short, noisy, oversubscribed, contended).

One shortcut, recorded in the result: when even the fastest of the last warm-up calls takes
more than `probe_over_ms`, the timed runs are skipped (``complete=False``). A model at ten times
the budget does not need 100 more calls to be ruled out; that keeps a sweep in minutes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export.inputs import InputSet
from distill_cli.export.onnx_export import export_onnx
from distill_cli.export.protocol import load_average
from distill_cli.export.source import resolve_source
from distill_cli.export.variants import make_fp16, make_int8
from distill_cli.models.create import Net, count_flops
from distill_cli.models.sizes import failure_reason
from distill_cli.students.types import StudentQuery, Timing

#: Random images int8 calibration sees: ranges only need to be plausible for a latency figure.
CALIBRATION_IMAGES = 16


def cuda_ready() -> bool:
    """ONNX Runtime's CUDA provider and a GPU, both: what `--device cuda` needs."""
    return "CUDAExecutionProvider" in lat.providers()


def measure(name: str, query: StudentQuery, threads: int, probe_over_ms: float | None) -> Timing:
    """Build, export, convert and time `name`; a failure anywhere is a Timing with its reason."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(name, query, threads, probe_over_ms)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # one architecture that cannot ship must not sink the sweep
        return Timing(name=name, ok=False, error=_reason(exc), threads=threads, batch=query.batch)
    finally:
        torch.set_num_threads(previous)


def _reason(exc: BaseException) -> str:
    """What failed, for the table's reason column: a DistillError's `what` (its where and
    advice are about another command's flags), else the exception's first line (a bare
    `assert`'s source line: `failure_reason`)."""
    if isinstance(exc, DistillError):
        return exc.what
    return failure_reason(exc)


def _build(name: str, query: StudentQuery) -> tuple[Net, dict[str, Any]]:
    """The student as `distill export` builds it; fixed-resolution models get `img_size=N`.

    ViT-style models are built for one resolution; at another deployment size they need
    timm's ``img_size`` argument (what `--model-arg img_size=N` / `student.kwargs` pass), so that
    is tried when the plain build cannot run a batch at the requested size.
    """
    shape = (3, query.input_size, query.input_size)
    kwargs: dict[str, Any] = {}
    try:  # the build runs a batch at the size (resolve_source's probe) and may fail there too
        net = resolve_source(
            name, num_classes=query.num_classes, input_size=query.input_size
        ).student
        _forward(net, shape)
    except Exception as first:
        kwargs = {"img_size": query.input_size}
        try:
            net = resolve_source(
                name,
                num_classes=query.num_classes,
                input_size=query.input_size,
                model_kwargs=kwargs,
            ).student
            _forward(net, shape)
        except Exception:
            raise first from None
    return net, kwargs


def _forward(net: Net, shape: tuple[int, int, int]) -> None:
    with torch.no_grad():
        net.module(torch.zeros(1, *shape))


def _measure(name: str, query: StudentQuery, threads: int, probe_over_ms: float | None) -> Timing:
    net, kwargs = _build(name, query)
    shape = (net.info.in_chans, *net.info.input_size)
    flops = count_flops(net.module, shape)
    provider = "CUDAExecutionProvider" if query.device == "cuda" else "CPUExecutionProvider"
    with tempfile.TemporaryDirectory(prefix="distill-students-") as tmp:
        path = Path(tmp) / "model.onnx"
        exported = export_onnx(
            net.module,
            shape,
            path,
            exporter=query.exporter,
            opset=query.opset,  # type: ignore[arg-type]
        )
        timed = _variant(path, net, query.precision)
        stats = _time(timed, shape, query, threads, provider, probe_over_ms)
    return Timing(
        name=name,
        ok=True,
        params=net.params,
        gflops=None if flops is None else flops / 1e9,
        provider=provider,
        threads=threads,
        batch=query.batch,
        precision=query.precision,
        exporter=exported.used,
        export_seconds=round(exported.seconds, 3),
        model_kwargs=kwargs,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **stats,
    )


def _variant(path: Path, net: Net, precision: str) -> Path:
    if precision == "fp16":
        out = path.with_name("model.fp16.onnx")
        make_fp16(path, out)
        return out
    if precision == "int8":
        out = path.with_name("model.int8.onnx")
        inputs = InputSet(net.info, None, CALIBRATION_IMAGES, seed=7)
        make_int8(
            path,
            out,
            (x for x, _ in inputs.batches()),
            calibration_source="seeded random normal(0, 1) inputs",
        )
        return out
    return path


def _time(
    path: Path,
    shape: tuple[int, int, int],
    query: StudentQuery,
    threads: int,
    provider: str,
    probe_over_ms: float | None,
) -> dict[str, Any]:
    """The export's protocol at batch `query.batch`, with the warm-up calls timed for the probe."""
    session, create_ms = lat.ort_session(path, threads, provider)
    feed = {
        session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(
            (query.batch, *shape), dtype=np.float32
        )
    }

    def call() -> None:
        session.run(None, feed)

    plan = query.timing
    warm = lat.timed_warm_up(call, plan.warmup, plan.max_time_s)  # bounded as export's
    tail = warm[len(warm) // 2 :]
    # the fastest warm-up call decides: one slow call on a busy machine must not rule a model out
    if probe_over_ms is not None and tail and min(tail) * 1000 > probe_over_ms:
        return {
            **lat.stats(tail),
            "warmup": len(warm),
            "runs": 0,
            "seconds": round(sum(warm), 3),
            "meets_protocol": False,
            "protocol_issues": ["stopped after the warm-up: far over the budget"],
            "complete": False,
            "session_create_ms": create_ms,
        }
    watch = lat.CpuWatch.begin()
    times, elapsed = lat.time_fn(call, 0, plan.runs, plan.min_time_s, plan.max_time_s)
    figures = lat.stats(times)
    issues = lat.assess(
        figures, threads, len(warm), len(times), elapsed, watch.other_cores(), load_average()
    )
    return {
        **figures,
        "warmup": len(warm),
        "runs": len(times),
        "seconds": round(elapsed, 3),
        "meets_protocol": not issues,
        "protocol_issues": issues,
        "complete": True,
        "session_create_ms": create_ms,
    }
