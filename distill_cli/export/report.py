"""report.json: what an export produced and measured, for people and pipelines.

Top-level blocks: ``model`` (what was exported: timm name, input config, classes, parameters,
GFLOPs, the ONNX file, its exporter, reparameterization, dynamic axes and metadata),
``preprocess`` (every step from an image file to the input tensor), ``parity`` (the fp32
gate), ``variants`` (fp16 / int8 files, each with its own parity block against fp32 and whether
it passed its gates), ``latency`` (environment,
protocol and one entry per runtime, each with ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``),
``gates`` (what was asked and every miss), plus ``source``, ``teachers`` and ``files``.

The same keys go into the ONNX file's metadata_props (``distill.*``) where they describe the
model, so a file found on a server says what it is, how to feed it and which weights it holds.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distill_cli import __version__
from distill_cli.checkpoint import atomic_write
from distill_cli.export.preprocess import Preprocess
from distill_cli.model_view import ModelInfo

SCHEMA = "distill.export/1"
REPORT_NAME = "report.json"


def metadata_props(
    info: ModelInfo,
    class_names: list[str] | None,
    class_names_source: str,
    checkpoint_sha256: str | None,
    checkpoint: Path | None,
    exporter: str,
    preprocess: Preprocess,
    dynamic_axes: dict[int, str],
    reparameterized: bool,
) -> dict[str, str]:
    """The ONNX metadata_props: enough to feed the model with onnxruntime + numpy + PIL alone
    (every preprocessing step, see preprocess.py), to name its outputs, and to trace it back to
    its weights. `distill.class_names` is written only when the names are known (never "null")."""
    props = {
        "distill.model": info.name,
        "distill.num_classes": str(info.num_classes),
        "distill.in_chans": str(info.in_chans),
        "distill.input_size": json.dumps(list(info.input_size)),
        "distill.mean": json.dumps(list(info.mean)),
        "distill.std": json.dumps(list(info.std)),
        **preprocess.metadata(),
        "distill.dynamic_axes": json.dumps({str(k): v for k, v in dynamic_axes.items()}),
        "distill.output": "float32 logits (batch, num_classes); softmax for probabilities",
        "distill.class_names_source": class_names_source,
        "distill.reparameterized": str(reparameterized).lower(),
        "distill.checkpoint": checkpoint.name if checkpoint is not None else "",
        "distill.checkpoint_sha256": checkpoint_sha256 or "",
        "distill.exporter": exporter,
        "distill.version": __version__,
    }
    if class_names is not None:
        props["distill.class_names"] = json.dumps(class_names)
    return props


def model_block(
    info: ModelInfo,
    class_names: list[str] | None,
    params: int,
    flops: float | None,
    onnx_block: dict[str, Any],
) -> dict[str, Any]:
    # The resize is described by the `preprocess` block (what distill evaluates with), not by
    # timm's pretrained config, which `info.interpolation` holds and distill does not apply.
    described = {k: v for k, v in info.to_dict().items() if k != "interpolation"}
    return {
        **described,
        "input_size": list(info.input_size),
        "class_names": class_names,
        "params": params,
        "gflops": None if flops is None else flops / 1e9,
        "onnx": onnx_block,
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (a broken export produces them) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def build_report(**blocks: Any) -> dict[str, Any]:
    report = {
        "schema": SCHEMA,
        "distill_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **blocks,
    }
    return _clean(report)


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    path = out_dir / REPORT_NAME
    atomic_write(path, json.dumps(report, indent=2) + "\n")
    return path
