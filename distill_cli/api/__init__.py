"""The Python API: what the CLI commands do, as functions that return typed results.

    from distill_cli import api

    result = api.run("recipes/quickstart/distill.yaml", schedule__epochs=1, optim__lr=3e-3)
    print(result.student.top1, result.agreement_top1, result.run_dir)
    exported = api.export(result.run_dir, quantize="int8", min_top1=85.0)  # an ExportReport
    print(exported.latency_of("student/onnxruntime/int8").p50_ms)
    api.report(result.run_dir)                       # report.html + report.md + PNGs

Recipe fields are overridden with keywords, `__` standing for the dot of `--set`
(`optim__lr=3e-3` is `--set optim.lr=3e-3`), or with `overrides=["optim.lr=3e-3"]`. The CLI is a
thin layer over these functions: everything it prints comes from the results they return.

Importing this module is cheap (no torch, timm or ONNX Runtime): each function imports the wing
it drives when it is called, so the CLI can go through the API for every command, including
those (`distill students` with a cached answer, `distill recipes`) that never need torch.
"""

from __future__ import annotations

from typing import Any

from distill_cli import lazy_face
from distill_cli.api.measure import bench_latency, bench_train, export
from distill_cli.api.results import compare, report
from distill_cli.api.runs import plan, recipes, run, shipped_recipe, train
from distill_cli.api.search import models, students
from distill_cli.errors import DistillError, RunInterrupted, WrongType
from distill_cli.recipe.document import Recipe
from distill_cli.rundir.summary import RunSummary

#: The types a caller names beside the functions, importable from here as the docs spell them
#: (`except api.GateFailed`, `api.students(api.StudentQuery(...))`, `api.RunDir(path)`), each
#: imported on first use so that importing the API stays torch-free.
_FACE = lazy_face(
    "distill_cli",
    {
        "GateFailed": "export.gates",
        "RunDir": "rundir.layout",
        "StudentQuery": "students.types",
    },
)


def __getattr__(name: str) -> Any:
    try:
        return _FACE(name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = [
    "DistillError",
    "GateFailed",
    "Recipe",
    "RunDir",
    "RunInterrupted",
    "RunSummary",
    "StudentQuery",
    "WrongType",
    "bench_latency",
    "bench_train",
    "compare",
    "export",
    "models",
    "plan",
    "recipes",
    "report",
    "run",
    "shipped_recipe",
    "students",
    "train",
]
