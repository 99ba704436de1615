"""`distill export`: ship a student as a checked, labelled, timed ONNX file (see pipeline.py).

One module per job: ``options`` (what it takes), ``source`` (what to export), ``reparam`` (the
inference form), ``onnx_export`` (the file), ``preprocess`` (how to feed it), ``parity`` (does
it compute the same thing), ``variants`` (fp16, int8), ``latency`` and ``timing`` (how fast, and
whether the figure can be believed), ``gates`` (CI conditions), ``report`` (report.json and its
typed `ExportReport`), ``ranges`` (numeric bounds), ``pipeline`` (the order). The terminal tables
are in `distill_cli.cli.console_export`; `distill bench latency` is `distill_cli.bench.latency`.
"""

from __future__ import annotations

from distill_cli.export.gates import GateFailed, Gates
from distill_cli.export.latency import TimingPlan
from distill_cli.export.options import ExportOptions
from distill_cli.export.pipeline import run_export
from distill_cli.export.report import ExportReport

__all__ = ["ExportOptions", "ExportReport", "GateFailed", "Gates", "TimingPlan", "run_export"]
