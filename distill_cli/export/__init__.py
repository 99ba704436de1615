"""`distill export`: ship a student as a checked, labelled, timed ONNX file (see pipeline.py).

One module per job: ``options`` (what it takes), ``source`` (what to export), ``reparam`` (the
inference form), ``onnx_export`` (the file), ``preprocess`` (how to feed it), ``parity`` (does
it compute the same thing), ``variants`` (fp16, int8), ``latency`` and ``timing`` (how fast, and
whether the figure can be believed), ``gates`` (CI conditions), ``report`` (report.json),
``render`` (the terminal), ``pipeline`` (the order).
"""

from __future__ import annotations

from distill_cli.export.gates import GateFailed, Gates
from distill_cli.export.latency import TimingPlan
from distill_cli.export.options import ExportOptions
from distill_cli.export.pipeline import run_export

__all__ = ["ExportOptions", "GateFailed", "Gates", "TimingPlan", "run_export"]
