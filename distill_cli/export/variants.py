"""Smaller, faster copies of the fp32 ONNX file: fp16 weights and int8 static quantization.

fp16 uses ONNX Runtime's own converter with ``keep_io_types=True``: the file takes and returns
float32, so a caller swaps files without touching its preprocessing. It is for GPU providers:
ONNX Runtime's CPU provider computes most fp16 operators through casts and runs slower than fp32.

int8 is ONNX Runtime's static quantization as its documentation prescribes for CPUs: the
pre-processing step first (symbolic shape inference + graph optimisation, so the quantizer sees
fused Conv+BN and known shapes), then QDQ format, uint8 activations and int8 weights (the U8S8
kernels x86 runs fastest), calibrated on images the caller provides: the recipe's training
images through the validation preprocessing (a class-balanced subset), i.e. the distribution
the model sees in deployment, never the images its accuracy is then measured on.

What decides a MobileNet-like model's int8 accuracy is ONNX Runtime's own set of knobs, exposed
as they are in `Int8Spec`: the calibration method (MinMax, Entropy, Percentile), per-channel or
per-tensor weight scales, symmetric or asymmetric activation and weight ranges
(``extra_options`` ActivationSymmetric / WeightSymmetric) and nodes kept in float
(``nodes_to_exclude``: by name, or the first and last Conv/Gemm/MatMul, the layers that lose most).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from distill_cli.errors import DistillError, RunFailed
from distill_cli.export.capture import captured_output, third_party_step
from distill_cli.export.entropy import entropy_threshold, has_entropy_search
from distill_cli.export.file_input import FileInput, split_batches
from distill_cli.export.onnx_export import check_onnx, save_model
from distill_cli.files import PrivateCwd, atomic_write, private_cwd
from distill_cli.host import absolute

PRECISIONS = ("fp16",)
QUANTIZATIONS = ("int8",)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: `Int8Spec.keep_fp32` words that name a position instead of a node.
FIRST, LAST = "first", "last"
#: The operators whose weights int8 quantizes; "first"/"last" are the first/last of these.
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FP16_CPU_HINT = (
    "fp16 is for GPU providers (CUDA, TensorRT, DirectML): ONNX Runtime's CPU provider runs most "
    "fp16 operators through casts, slower than fp32; for a faster CPU file use --quantize int8"
)


@dataclass(frozen=True)
class Int8Spec:
    """How int8 is calibrated and quantized (`--calib-method`, `--per-channel/--per-tensor`,
    `--act-symmetric`, `--weight-asymmetric`, `--keep-fp32`): ONNX Runtime's options by their
    own meaning, checked here so the API refuses what the CLI refuses."""

    calib_method: str = "minmax"
    per_channel: bool = True
    act_symmetric: bool = False
    weight_symmetric: bool = True
    #: node names kept in float, or "first" / "last" (the first/last Conv, Gemm or MatMul)
    keep_fp32: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.calib_method not in CALIBRATION_METHODS:
            raise DistillError(
                f"unknown calibration method {self.calib_method!r}",
                "--calib-method",
                ", ".join(CALIBRATION_METHODS),
            )
        if self.per_channel and not self.weight_symmetric:
            raise DistillError(
                "ONNX Runtime keeps per-channel int8 weights symmetric: --weight-asymmetric "
                "would change nothing",
                "--weight-asymmetric",
                "add --per-tensor",
            )
        if isinstance(self.keep_fp32, str):
            object.__setattr__(self, "keep_fp32", (self.keep_fp32,))
        names = tuple(n.strip() for item in self.keep_fp32 for n in item.split(",") if n.strip())
        object.__setattr__(self, "keep_fp32", tuple(dict.fromkeys(names)))

    def describe(self) -> str:
        """One line for logs and tables: 'minmax, per-channel, act asym, weight sym'."""
        parts = [
            self.calib_method,
            "per-channel" if self.per_channel else "per-tensor",
            f"act {'sym' if self.act_symmetric else 'asym'}",
            f"weight {'sym' if self.weight_symmetric else 'asym'}",
        ]
        if self.keep_fp32:
            parts.append("fp32: " + ",".join(self.keep_fp32))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["keep_fp32"] = list(self.keep_fp32)
        return out


def excluded_nodes(model: onnx.ModelProto, keep: tuple[str, ...]) -> list[str]:
    """The node names `keep` stands for in `model` (the graph the quantizer sees), or a
    one-line error naming an unknown node and a few that exist."""
    weighted = [n.name for n in model.graph.node if n.op_type in _WEIGHTED]
    names = {n.name for n in model.graph.node}
    out: list[str] = []
    for item in keep:
        if item in (FIRST, LAST):
            if weighted:
                out.append(weighted[0] if item == FIRST else weighted[-1])
        elif item in names:
            out.append(item)
        else:
            raise DistillError(
                f"no node named {item!r} in the graph that is quantized",
                "--keep-fp32",
                f"first, last, or a node name such as {', '.join(weighted[:3]) or '(none)'}",
            )
    return list(dict.fromkeys(out))


def make_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """fp16 weights and compute, fp32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    t0 = time.perf_counter()
    source = os.path.abspath(src)  # read inside the converter's private working directory
    model = onnx.load(source)
    _drop_initializer_value_info(model)
    with third_party_step():
        model = convert_float_to_float16(model, keep_io_types=True)
    # The converter appends the input Casts at the end of the node list; ONNX Runtime does not
    # mind, but onnx.checker requires a sorted graph, and a file that fails the checker is not
    # shipped. ONNX Runtime's own sort (the one its transformer optimizer uses) leaves the graph
    # as it was when it cannot sort it; the checker then says why.
    with contextlib.suppress(RuntimeError):
        OnnxModel.graph_topological_sort(model.graph)
    save_model(model, dst)
    try:
        check_onnx(
            dst,
            made_by="the fp16 converter (onnxruntime.transformers.float16)",
            hint="ship the fp32 model.onnx: export without --precision fp16",
        )
    except RunFailed:  # a file that fails to load is not left where a shipped model goes
        dst.unlink(missing_ok=True)
        Path(str(dst) + ".data").unlink(missing_ok=True)
        raise
    return {
        "path": absolute(dst),
        "bytes": dst.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
        "method": "onnxruntime.transformers.float16, keep_io_types=True",
    }


def _drop_initializer_value_info(model: onnx.ModelProto) -> None:
    """Remove the `value_info` entries that describe initializers.

    Why: the dynamo exporter records a `value_info` for every value, weights included, and
    ONNX Runtime's float16 converter rewrites each float `value_info` to float16 while it keeps
    the initializers an operator needs in float32 (a Resize's scales) as they are. The file
    then declares one tensor with two types and fails the checker (EfficientFormer-V2 and any
    `nn.Upsample(scale_factor=...)` exported with `--no-simplify`; onnxsim drops these entries,
    so the simplified graph was fine). An initializer's type is its own; the entry adds nothing.
    """
    weights = {init.name for init in model.graph.initializer}
    keep = [info for info in model.graph.value_info if info.name not in weights]
    if len(keep) != len(model.graph.value_info):
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)


class _Reader(CalibrationDataReader):
    """An onnxruntime CalibrationDataReader over float32 input batches.

    ONNX Runtime pulls it from inside the quantizer's private working directory; each batch is
    made in the caller's (`cwd.callers`), where a recipe's relative image paths mean something.
    """

    def __init__(self, batches: Iterator[np.ndarray], input_name: str) -> None:
        self.batches = batches
        self.input_name = input_name
        self.images = 0
        self.cwd: PrivateCwd | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.cwd is None:
            batch = next(self.batches, None)
        else:
            with self.cwd.callers():
                batch = next(self.batches, None)
        if batch is None:
            return None
        self.images += len(batch)
        return {self.input_name: batch}

    def rewind(self) -> None:  # part of the interface; calibration reads the data once
        pass


#: Entropy (KL) calibration as TensorRT does it: a 2048-bin histogram searched for the
#: threshold whose 128-level quantization loses least. `quantize_static` runs ONNX Runtime's
#: entropy calibrator with 128 bins and 128 levels, which leaves one candidate threshold (the
#: min/max: its files are byte-identical to MinMax's), and takes no bin counts; so the ranges
#: are computed here with ONNX Runtime's own calibrator and handed over as its calibration cache.
ENTROPY_BINS, ENTROPY_LEVELS = 2048, 128


def _entropy_ranges(model: Path, reader: CalibrationDataReader, folder: Path) -> Path:
    """ONNX Runtime's EntropyCalibrater at ENTROPY_BINS, its ranges saved as a calibration cache."""
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        create_calibrator,
        save_tensors_data,
    )

    calibrator = create_calibrator(
        model,
        None,
        augmented_model_path=str(folder / "entropy_augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_LEVELS},
    )
    calibrator.collect_data(reader)
    # the same threshold search as ORT's, vectorized (distill_cli/export/entropy.py), where this
    # onnxruntime's collector has the method it replaces (else ORT's own, slower, runs)
    if has_entropy_search(calibrator.collector):
        calibrator.collector.get_entropy_threshold = entropy_threshold
    ranges = calibrator.compute_data()
    del calibrator
    path = folder / "entropy_ranges.json"
    save_tensors_data(ranges, path)
    return path


def _prepare(step: Callable[..., None], source: Path, prepared: Path) -> dict[str, Any]:
    """ONNX Runtime's quantization pre-processing (`step`: `quant_pre_process`), as far as the
    graph allows: in full, else without its symbolic shape inference (which gives up on some
    graphs, e.g. a Resize by scales on the dynamic batch followed by a residual add, as in
    EfficientFormer-V2 and HRNet; the graph optimisation and ONNX shape inference still help
    the quantizer), else not at all. What was done and why is recorded in the report."""
    reasons: list[str] = []
    for skip_symbolic in (False, True):
        try:
            # where its symbolic shape inference gives up, it saves sym_shape_infer_temp.onnx
            # and a <uuid>.data into the cwd: here, the private one (files.private_cwd)
            with third_party_step():
                step(str(source), str(prepared), skip_symbolic_shape=skip_symbolic)
        except Exception as exc:
            reasons.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        if not skip_symbolic:
            return {"applied": True}
        return {
            "applied": True,
            "symbolic_shape_inference": False,
            "reason": f"symbolic shape inference failed: {reasons[0]}",
        }
    return {"applied": False, "reason": reasons[0]}


def make_int8(
    src: Path,
    dst: Path,
    calibration: Iterator[np.ndarray],
    *,
    spec: Int8Spec | None = None,
    calibration_source: str = "",
) -> dict[str, Any]:
    """Static QDQ int8 as `spec` says (default: MinMax, per-channel, asymmetric uint8
    activations, symmetric int8 weights), after ONNX Runtime's quantization pre-processing."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = spec or Int8Spec()
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    t0 = time.perf_counter()
    given = FileInput.of(src)  # a file of yours (--onnx) may fix the batch or name the input
    reader = _Reader(split_batches(calibration, given.batch), given.name)
    source = Path(os.path.abspath(src))  # the steps below run in a private working directory
    with tempfile.TemporaryDirectory(prefix="distill-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        preprocess = _prepare(quant_pre_process, source, prepared)
        if not preprocess["applied"]:  # the quantizer still works on the unprepared graph
            prepared = source
        excluded = excluded_nodes(
            onnx.load(str(prepared), load_external_data=False), spec.keep_fp32
        )
        with private_cwd() as cwd:  # see quant_pre_process above; data is read in ours
            reader.cwd = cwd
            try:
                with captured_output() as out:
                    cache = None
                    if spec.calib_method == "entropy":
                        cache = _entropy_ranges(prepared, reader, Path(tmp))
                    quantize_static(
                        str(prepared),
                        str(Path(tmp) / "quantized.onnx"),  # then renamed into place
                        None if cache else reader,
                        quant_format=QuantFormat.QDQ,
                        per_channel=spec.per_channel,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=methods[spec.calib_method],
                        nodes_to_exclude=excluded,
                        extra_options={
                            "ActivationSymmetric": spec.act_symmetric,
                            "WeightSymmetric": spec.weight_symmetric,
                        },
                        calibration_cache_path=cache,
                    )
            except Exception as exc:
                raise DistillError(
                    f"int8 quantization failed: {type(exc).__name__}: {str(exc)[:300]}"
                    + (f" [{out.tail()}]" if out.tail() else ""),
                    str(src),
                    "try another --calib-method, or export without --quantize",
                ) from exc
        quantized = Path(tmp) / "quantized.onnx"
        check_onnx(  # before it is written: a file that fails to load never replaces dst
            quantized,
            made_by="the int8 quantizer (onnxruntime.quantization)",
            hint="try another --calib-method, or export without --quantize",
        )
        atomic_write(dst, quantized.read_bytes())
    return {
        "path": absolute(dst),
        "bytes": dst.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
        "method": f"onnxruntime.quantization.quantize_static: QDQ, U8S8, {spec.describe()}",
        "options": spec.to_dict(),
        "nodes_kept_fp32": excluded,
        "preprocess": preprocess,
        "calibration": {
            "images": reader.images,
            "method": spec.calib_method,
            "source": calibration_source,
        },
    }
