"""Range checks for numeric settings, shared by the CLI's flags and the Python API.

Typer/click refuse out-of-range flags before a command runs; a Python caller of `api.export` or
`api.bench_latency` bypasses click, so the option objects (`ExportOptions`, `TimingPlan`,
`Gates`) check the same bounds themselves and fail with a one-line `DistillError` naming the
flag, the way every other usage error reaches the user.
"""

from __future__ import annotations

import math
import numbers

from distill_cli.errors import DistillError, WrongType
from distill_cli.host import whole_problem


def check_range(
    value: float | None,
    flag: str,
    low: float | None = None,
    high: float | None = None,
    *,
    whole: bool = False,
) -> None:
    """Raise a one-line DistillError unless `value` is None or a finite number in [low, high]
    (with `whole`, a whole number: a count, a seed, an opset; a Python caller's `runs=2.5` or
    `limit=2.5` passed the bounds and failed as a TypeError where it was used)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # a Python caller's "17" or [1] was a TypeError from the comparison below
        raise WrongType(f"{value!r} is not a number ({type(value).__name__})", flag)
    if whole and not isinstance(value, numbers.Integral):
        raise WrongType(f"{value!r} is not a whole number ({type(value).__name__})", flag)
    problem = whole_problem(value)
    if problem:
        raise DistillError(problem, flag, "give the value meant")
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise DistillError(f"{value} is not a finite number", flag, "give a number")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            bounds = f"x>={low}"
        elif low is None:
            bounds = f"x<={high}"
        else:
            bounds = f"{low}<=x<={high}"
        raise DistillError(f"{value} is not in the range {bounds}", flag, f"give {bounds}")


def check_percent(value: float | None, flag: str) -> None:
    """A percentage gate (0 to 100) that is not written as a fraction: CI configs that hold
    accuracies as fractions wrote `--min-top1 0.9` for 90%, a gate every file passed. A value
    above 0 and up to 1 is refused, saying what to write; 0 (no floor) stays allowed."""
    check_range(value, flag)  # a number, finite
    if value is not None and not 0 <= value <= 100:
        raise DistillError(
            f"{value:g} is not a percentage (0 to 100)", flag, "give a value from 0 to 100, e.g. 99"
        )
    if value is not None and 0 < value <= 1:
        raise DistillError(
            f"{value:g} reads as {value:g}%, a floor nearly any file passes; it looks like a "
            "fraction",
            flag,
            f"give a percentage: {value * 100:g} for {value * 100:g}%",
        )


def check_count(value: object, flag: str, low: int, high: int | None = None, why: str = "") -> None:
    """A whole number of at least `low` (steps, rounds): 0 steps was a StatisticsError from an
    empty median, "3" a TypeError from an addition; and at most `high`, for `why`
    (`--steps 1e12` benchmarked until it was killed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType(f"{value!r} is not a whole number ({type(value).__name__})", flag)
    check_range(value, flag, low)
    if high is not None and value > high:
        raise DistillError(f"{value:,} is above {high:,}: {why}", flag, f"give at most {high:,}")


#: Supported by every ONNX Runtime since 1.14, by both exporters, and by the int8 quantizer.
DEFAULT_OPSET = 18


def check_opset(opset: int, exporter: str) -> None:
    """An opset the exporters write as asked, or a one-line error: the dynamo exporter writes
    18 and later only (it would silently write 18 for 13), and no exporter writes an opset
    newer than the installed onnx package knows. Here, torch-free, so that `distill students`
    checks it without importing torch (onnx is imported only for the upper bound)."""
    check_range(opset, "--opset", whole=True)  # a number (a Python caller's "17" was a TypeError)
    if opset == DEFAULT_OPSET:  # written by both exporters and every onnx distill installs with
        return
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not 7 <= opset <= newest:
        raise DistillError(
            f"ONNX opset {opset} is outside what can be written (7 to {newest})",
            "--opset",
            f"pass --opset {DEFAULT_OPSET} (the default) or another in that range",
        )
    if exporter == "dynamo" and opset < 18:
        raise DistillError(
            f"the dynamo exporter writes opset 18 or later, not {opset}",
            "--opset",
            f"pass --exporter torchscript for opset {opset}, or --opset 18",
        )
