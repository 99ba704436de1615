"""What input an ONNX file takes: its name and which of batch, channels, height and width are
fixed. One owner for the export's `--onnx FILE`, its int8 calibration and `distill bench
latency`.

A deployer's file is often not the one `distill export` wrote: an edge runtime (a phone's NNAPI,
a TFLite or Core ML converter) wants a fixed batch of 1, which `python -m
onnxruntime.tools.make_dynamic_shape_fixed --dim_param batch --dim_value 1` makes, and a file
from another tool names its input otherwise. Checked with `distill export RUN --onnx FILE`, such
a file was fed batches of 64 and ended on ONNX Runtime's "Got invalid dimensions" traceback; it
is now run a batch of 1 at a time (parity, calibration) and timed at batch 1 throughout, and a
file whose fixed channels or size are not the model's is refused before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from distill_cli.errors import DistillError
from distill_cli.export.protocol import TimingPlan

#: Operators only a quantized graph holds (QDQ and QOperator formats).
_INT8_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
     "MatMulInteger", "DynamicQuantizeLinear"}
)  # fmt: skip


@dataclass(frozen=True)
class FileInput:
    """The first graph input of an ONNX file: its name and its dims, None where dynamic; and
    `precision`, "int8" or "fp16" for a file distill's variants step (or another tool) made
    smaller, else None."""

    name: str
    dims: tuple[int | None, ...]
    precision: str | None = None

    @classmethod
    def of(cls, path: Path) -> FileInput:
        graph = onnx.load(str(path), load_external_data=False).graph
        first = graph.input[0]
        dims = tuple(d.dim_value or None for d in first.type.tensor_type.shape.dim)
        precision = None
        if any(node.op_type in _INT8_OPS for node in graph.node):
            precision = "int8"
        elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer):
            precision = "fp16"
        return cls(first.name, dims, precision)

    def precision_note(self, path: Path) -> str | None:
        """What to do when `--onnx` is given a variant: the fp32 parity bound (1e-4) is far
        below int8's rounding, so such a file failed parity with no word of why."""
        if self.precision is None:
            return None
        flag = "--quantize int8" if self.precision == "int8" else "--precision fp16"
        return (
            f"{path.name} is an {self.precision} file: the fp32 parity gate holds it to fp32's "
            f"bounds, which its rounding misses; check it as distill checks variants, against "
            f"fp32: --onnx the fp32 file with {flag} (gates --min-variant-agreement, "
            "--max-top1-drop)"
        )

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or None when the batch axis is dynamic."""
        return self.dims[0] if self.dims else None

    def check_fits(self, shape: tuple[int, int, int], path: Path, model: str) -> None:
        """Refuse (exit 2) a file that cannot take the model's (C, H, W) inputs one at a time
        or in any batch: a fixed batch other than 1, or fixed channels or size of another
        model; everything the export does would end on ONNX Runtime's error."""
        chw = tuple(self.dims[1:])
        wrong = len(self.dims) != 4 or any(
            d is not None and d != want for d, want in zip(chw, shape, strict=True)
        )
        if wrong:
            said = "x".join("?" if d is None else str(d) for d in self.dims)
            raise DistillError(
                f"the ONNX file takes {said} inputs, not {model}'s "
                f"N x {shape[0]} x {shape[1]} x {shape[2]}",
                str(path),
                "pass the file exported from this run (its input size and channels), or "
                "export it again with `distill export` without --onnx",
            )
        if self.batch not in (None, 1):
            raise DistillError(
                f"the ONNX file takes a fixed batch of {self.batch}; distill runs a file with "
                "a dynamic batch or a batch of 1",
                str(path),
                "export it with a dynamic batch (distill export does), or fix the batch at 1 "
                "(python -m onnxruntime.tools.make_dynamic_shape_fixed --dim_param batch "
                "--dim_value 1)",
            )

    def timing(self, plan: TimingPlan) -> TimingPlan:
        """The plan this file can be timed with: a file that takes one image is timed at batch
        1 throughout (its throughput figure too)."""
        return replace(plan, batch=1) if self.batch == 1 else plan


def one_at_a_time(
    run: Callable[[np.ndarray], np.ndarray], batch: int | None
) -> Callable[[np.ndarray], np.ndarray]:
    """`run` fed one image per call when the file's batch is fixed at 1, else as it is."""
    if batch != 1:
        return run

    def each(x: np.ndarray) -> np.ndarray:
        return np.concatenate([run(np.ascontiguousarray(x[i : i + 1])) for i in range(len(x))])

    return each


def split_batches(batches: Iterator[np.ndarray], batch: int | None) -> Iterator[np.ndarray]:
    """Calibration batches cut to single images when the file's batch is fixed at 1."""
    for x in batches:
        if batch == 1:
            yield from (np.ascontiguousarray(x[i : i + 1]) for i in range(len(x)))
        else:
            yield x
