"""Smaller, faster copies of the fp32 ONNX file: fp16 weights and int8 static quantization.

fp16 uses ONNX Runtime's own converter with ``keep_io_types=True``: the file takes and returns
float32, so a caller swaps files without touching its preprocessing.

int8 is ONNX Runtime's static quantization as its documentation prescribes for CPUs: the
pre-processing step first (symbolic shape inference + graph optimisation, so the quantizer sees
fused Conv+BN and known shapes), then QDQ format, per-channel weight scales, uint8 activations
and int8 weights (the U8S8 kernels x86 runs fastest), calibrated with MinMax on images the
caller provides: the recipe's training images through the validation preprocessing, i.e. the
distribution the model sees in deployment, never the images its accuracy is then measured on.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from distill_cli.errors import DistillError
from distill_cli.export.capture import captured_output
from distill_cli.export.onnx_export import INPUT_NAME, check_onnx, save_model
from distill_cli.host import atomic_write

PRECISIONS = ("fp16",)
QUANTIZATIONS = ("int8",)


def make_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """fp16 weights and compute, fp32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    t0 = time.perf_counter()
    with captured_output():
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    # The converter appends the input Casts at the end of the node list; ONNX Runtime does not
    # mind, but onnx.checker requires a sorted graph, and a file that fails the checker is not
    # shipped. ONNX Runtime's own sort (the one its transformer optimizer uses) leaves the graph
    # as it was when it cannot sort it; the checker then says why.
    with contextlib.suppress(RuntimeError):
        OnnxModel.graph_topological_sort(model.graph)
    save_model(model, dst)
    check_onnx(dst)
    return {
        "path": str(dst),
        "bytes": dst.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
        "method": "onnxruntime.transformers.float16, keep_io_types=True",
    }


class _Reader(CalibrationDataReader):
    """An onnxruntime CalibrationDataReader over float32 input batches."""

    def __init__(self, batches: Iterator[np.ndarray], input_name: str) -> None:
        self.batches = batches
        self.input_name = input_name
        self.images = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.images += len(batch)
        return {self.input_name: batch}

    def rewind(self) -> None:  # part of the interface; calibration reads the data once
        pass


def make_int8(
    src: Path,
    dst: Path,
    calibration: Iterator[np.ndarray],
    *,
    method: str = "minmax",
    calibration_source: str = "",
) -> dict[str, Any]:
    """Static QDQ int8, per-channel, after ONNX Runtime's quantization pre-processing."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise DistillError(f"unknown calibration method {method!r}", "--calib-method")
    t0 = time.perf_counter()
    reader = _Reader(calibration, INPUT_NAME)
    with tempfile.TemporaryDirectory(prefix="distill-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        preprocess: dict[str, Any] = {"applied": True}
        try:
            with captured_output():
                quant_pre_process(str(src), str(prepared))
        except Exception as exc:  # the quantizer still works on the unprepared graph
            preprocess = {"applied": False, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
            prepared = src
        try:
            with captured_output() as out:
                quantize_static(
                    str(prepared),
                    str(Path(tmp) / "quantized.onnx"),  # then renamed into place (host's rule)
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=methods[method],
                    extra_options={"CalibTensorRangeSymmetric": False},
                )
        except Exception as exc:
            raise DistillError(
                f"int8 quantization failed: {type(exc).__name__}: {str(exc)[:300]}"
                + (f" [{out.tail()}]" if out.tail() else ""),
                str(src),
                "try --calib-method minmax, or export without --quantize",
            ) from exc
        atomic_write(dst, (Path(tmp) / "quantized.onnx").read_bytes())
    check_onnx(dst)
    return {
        "path": str(dst),
        "bytes": dst.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
        "method": "onnxruntime.quantization.quantize_static: QDQ, per-channel, U8S8",
        "preprocess": preprocess,
        "calibration": {"images": reader.images, "method": method, "source": calibration_source},
    }
