"""`distill bench latency`: the latency measurement of `distill export`, on its own.

The timing itself is `export.latency.sweep`, the same code the export's latency stage runs.

TARGET is an ONNX file (timed in ONNX Runtime; its input shape comes from the distill metadata,
else from the graph, else ``--input-size``) or anything `distill export` accepts (a run
directory, a checkpoint, a timm name): that is timed in PyTorch eager and, through a temporary
export, in ONNX Runtime, side by side.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import onnx

from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export.file_input import FileInput
from distill_cli.export.onnx_export import Exporter, check_onnx, export_onnx
from distill_cli.export.options import expand_home
from distill_cli.export.ranges import DEFAULT_OPSET, check_opset
from distill_cli.export.report import Block, Key, LatencyEntry, LatencyReport
from distill_cli.export.source import resolve_source
from distill_cli.export.timing import latency_block
from distill_cli.models.create import count_flops


class BenchModel(Block):
    """What was timed: its name, input size, parameters, GFLOPs and ONNX file size."""

    name = Key[str]()
    input_size = Key[list[int]]()
    params = Key[int | None](optional=True)
    gflops = Key[float | None](optional=True)
    bytes = Key[int | None](optional=True)
    #: an ONNX file's own initializer count (exporters fold BatchNorm, so it undercounts)
    onnx_initializer_values = Key[int | None](optional=True)

    @classmethod
    def build(
        cls,
        name: str,
        input_size: list[int],
        params: int | None,
        gflops: float | None,
        size: int,
        **extra: Any,
    ) -> BenchModel:
        return cls(
            {
                "name": name,
                "input_size": input_size,
                "params": params,
                "gflops": gflops,
                "bytes": size,
                **extra,
            }
        )


class LatencyBench(Block):
    """What `distill bench latency` measured (`--json` prints `to_dict()`): the target, the
    model and the latency block, the same block (and entries) as an export's report.json."""

    target = Key[str]()

    @property
    def model(self) -> BenchModel:
        return BenchModel(self.data["model"])

    @property
    def latency(self) -> LatencyReport:
        return LatencyReport(self.data["latency"])

    def latency_of(self, name: str) -> LatencyEntry:
        """One timed entry: `pytorch`, `onnxruntime` (or their `-cuda` twins)."""
        return self.latency.entry(name)

    def to_dict(self) -> dict[str, Any]:
        return self.data


def _onnx_shape(
    path: Path, input_size: tuple[int, int] | None
) -> tuple[tuple[int, int, int], dict[str, str]]:
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    dims = [d.dim_value or None for d in model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise DistillError(
            f"expected an NCHW image input, got {len(dims)} dimensions",
            str(path),
            "time an image classifier's file (one input: batch x channels x height x width)",
        )
    chans = dims[1] or int(meta.get("distill.in_chans", 3))
    if input_size is not None:
        h, w = input_size
        if (dims[2] and dims[2] != h) or (dims[3] and dims[3] != w):
            raise DistillError(  # ONNX Runtime refuses every call: an empty table, exit 0
                f"the ONNX file takes {dims[2] or 'H'}x{dims[3] or 'W'} inputs only; "
                f"--input-size {h}x{w} cannot run it",
                str(path),
                "drop --input-size, or export with --dynamic-size to time other sizes",
            )
        return (chans, h, w), meta
    if "distill.input_size" in meta:
        h, w = json.loads(meta["distill.input_size"])
        return (chans, int(h), int(w)), meta
    if dims[2] and dims[3]:
        return (chans, dims[2], dims[3]), meta
    raise DistillError("the model's input size is dynamic", str(path), "pass --input-size")


def _file_bytes(path: Path) -> int:
    """The model's size on disk: the .onnx file and the external data files it names (a model
    saved with `save_as_external_data` was reported as its few-kB graph alone)."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    graph = onnx.load(str(path), load_external_data=False).graph
    names = {ExternalDataInfo(t).location for t in graph.initializer if uses_external_data(t)}
    return path.stat().st_size + sum(
        (path.parent / n).stat().st_size for n in names if (path.parent / n).is_file()
    )


def _onnx_params(path: Path) -> int:
    model = onnx.load(str(path))
    total = 0
    for init in model.graph.initializer:
        count = 1
        for d in init.dims:
            count *= d
        total += count
    return total


def _arch_figures(meta: dict[str, str], shape: tuple[int, int, int]) -> tuple[int, float] | None:
    """(params, GFLOPs) of the architecture the metadata names, as PyTorch counts them.

    The graph's own initializers undercount (the exporters fold BatchNorm into convolutions),
    so the timm model is rebuilt with random weights: only shapes matter for both figures.
    """
    import timm

    name = meta.get("distill.model")
    if not name or not timm.is_model(name.split(".")[0]):
        return None
    try:
        model = timm.create_model(
            name,
            num_classes=int(meta.get("distill.num_classes", 1000)),
            in_chans=shape[0],
            exportable=True,
        )
    except Exception:  # built with kwargs the metadata does not hold
        return None
    flops = count_flops(model, shape)
    if flops is None:
        return None
    return sum(p.numel() for p in model.parameters()), flops / 1e9


def bench_latency(
    target: str,
    plan: lat.TimingPlan,
    *,
    checkpoint: Path | None = None,
    checkpoint_key: str | None = None,
    input_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
) -> LatencyBench:
    """Time TARGET: the model and the latency block of an export's report.json.

    `opset` None is the exporters' default; a bad one is refused before any work, as by
    `distill export`.
    """
    import torch

    opset = DEFAULT_OPSET if opset is None else opset
    check_opset(opset, exporter)

    torch.set_num_threads(plan.threads)
    target = expand_home(target)  # a quoted "~/x.onnx" was "not found"
    checkpoint = None if checkpoint is None else Path(checkpoint).expanduser()
    path = Path(target)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise DistillError("ONNX file not found", target, "check the path")
        check_onnx(path)
        shape, meta = _onnx_shape(path, input_size)
        given = FileInput.of(path)
        given.check_fits(shape, path, meta.get("distill.model") or path.stem)
        plan = given.timing(plan)
        lat.check_batch_memory(plan.batch, shape)
        entries = lat.sweep(None, {"fp32": path}, shape, plan)
        arch = _arch_figures(meta, shape)
        model = BenchModel.build(
            meta.get("distill.model") or path.stem,
            list(shape[1:]),
            arch[0] if arch else None,
            arch[1] if arch else None,
            _file_bytes(path),
            onnx_initializer_values=_onnx_params(path),
        )
    else:
        src = resolve_source(
            target,
            checkpoint=checkpoint,
            checkpoint_key=checkpoint_key,
            input_size=input_size,
            num_classes=num_classes,
        )
        net = src.student
        shape = (net.info.in_chans, *net.info.input_size)
        lat.check_batch_memory(plan.batch, shape)  # before the FLOP count and the export
        flops = count_flops(net.module, shape)
        with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(net.module, shape, onnx_path, exporter=exporter, opset=opset)
            entries = lat.sweep(net.module, {"fp32": onnx_path}, shape, plan)
            size = onnx_path.stat().st_size
        model = BenchModel.build(
            net.info.name,
            list(net.info.input_size),
            net.params,
            None if flops is None else flops / 1e9,
            size,
        )
    speed: dict[str, float] = {}
    speed_ok: dict[str, bool] = {}
    by_name = {e["name"]: e for e in entries}
    if "pytorch" in by_name and "onnxruntime" in by_name:
        slow, fast = by_name["pytorch"], by_name["onnxruntime"]
        speed["onnx_vs_pytorch"] = slow["p50_ms"] / fast["p50_ms"]
        speed_ok["onnx_vs_pytorch"] = bool(slow["meets_protocol"] and fast["meets_protocol"])
    block = latency_block(entries, plan, speed, speed_ok)
    return LatencyBench({"target": target, "model": model.data, "latency": block})
