"""`distill export`: ship a student as a checked, labelled, timed ONNX file (see pipeline.py).

One module per job: ``options`` (what it takes), ``source`` (what to export), ``reparam`` (the
inference form), ``onnx_export`` (the file), ``preprocess`` (how to feed it), ``parity`` (does
it compute the same thing), ``variants`` (fp16, int8), ``protocol`` (the timing plan and whether
a figure can be believed, shared with `distill students`), ``latency`` (timing one runtime) and
``timing`` (the export's latency stage), ``gates`` (CI conditions), ``report`` (report.json and
its typed `ExportReport`), ``ranges`` (numeric bounds), ``pipeline`` (the order). The terminal
tables are in `distill_cli.cli.console_export`; `distill bench latency` is
`distill_cli.bench.latency`. Names are imported lazily: ``protocol`` is torch-free, and
`distill students` reads it without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_cli import lazy_face

if TYPE_CHECKING:
    from distill_cli.export.gates import GateFailed, Gates
    from distill_cli.export.options import ExportOptions
    from distill_cli.export.pipeline import run_export
    from distill_cli.export.protocol import TimingPlan
    from distill_cli.export.report import ExportReport

_FACE = {
    "ExportOptions": "options",
    "ExportReport": "report",
    "GateFailed": "gates",
    "Gates": "gates",
    "TimingPlan": "protocol",
    "run_export": "pipeline",
}

__getattr__ = lazy_face(__name__, _FACE)


__all__ = ["ExportOptions", "ExportReport", "GateFailed", "Gates", "TimingPlan", "run_export"]
