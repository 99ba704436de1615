"""`distill export`: ship a student as a checked, labelled, timed ONNX file (see pipeline.py).

One module per job: ``source`` (what to export), ``onnx_export`` (the file), ``parity`` (does it
compute the same thing), ``variants`` (fp16, int8), ``latency`` (how fast), ``gates`` (CI
conditions), ``report`` (report.json), ``render`` (the terminal), ``pipeline`` (the order).
"""

from __future__ import annotations

from distill_cli.export.gates import GateFailed, Gates
from distill_cli.export.latency import TimingPlan
from distill_cli.export.pipeline import ExportOptions, run_export

__all__ = ["ExportOptions", "GateFailed", "Gates", "TimingPlan", "run_export"]
