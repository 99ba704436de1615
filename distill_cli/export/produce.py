"""The fp32 ONNX file of an export: exported from the student (or taken from `--onnx`), its
dynamic height/width checked at a second size, simplified only where parity holds, labelled
with distill's metadata; and the names of the model files an export writes.

One step of the pipeline (pipeline.py decides the order); its own module because the file is
the export's main product and the checks that decide its final form belong with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from distill_cli.export.inputs import Batches, InputSet
from distill_cli.export.onnx_export import (
    count_nodes,
    dynamic_axes,
    export_onnx,
    read_metadata,
    simplify,
    write_metadata,
)
from distill_cli.export.options import ExportOptions
from distill_cli.export.parity import (
    collect,
    compare,
    ort_file_runner,
    torch_runner,
)
from distill_cli.export.preprocess import Preprocess
from distill_cli.export.reparam import Reparam
from distill_cli.export.report import metadata_props
from distill_cli.export.source import Source
from distill_cli.host import absolute, sha256_file
from distill_cli.models.create import Net

#: Where a step says what it is doing (the command line prints it; the API passes its own).
Log = Callable[[str], None]

#: The model files an export writes into its folder (the fp32 file; its simplified candidate and
#: the variants are named from it by `simplified_path` and `variant_path`).
MODEL_FILE = "model.onnx"


def simplified_path(path: Path) -> Path:
    return path.with_name(path.stem + ".simplified.onnx")


def variant_path(out: Path, name: str) -> Path:
    return out / f"model.{name}.onnx"


def produce_onnx(
    src: Source,
    opts: ExportOptions,
    out: Path,
    inputs: InputSet,
    rep: Reparam,
    prep: Preprocess,
    log: Log,
) -> tuple[Path, dict[str, Any]]:
    """Export (or take --onnx), simplify when it keeps parity, label; returns path and block."""
    if opts.onnx is not None:
        log(f"checking the existing file {opts.onnx}")  # loaded and fits: pipeline's check
        return opts.onnx, {
            "path": absolute(opts.onnx),
            "bytes": opts.onnx.stat().st_size,
            "sha256": sha256_file(opts.onnx),
            "exporter": {"used": "existing file (--onnx)"},
            "nodes": count_nodes(opts.onnx),
            "metadata": read_metadata(opts.onnx),
        }
    path = out / MODEL_FILE
    info = src.student.info
    log(f"exporting {info.name} to {path} ({opts.exporter} exporter)")
    shape = (info.in_chans, *info.input_size)
    result = export_onnx(
        rep.module, shape, path, exporter=opts.exporter, opset=opts.opset,
        dynamic_size=opts.dynamic_size,
    )  # fmt: skip
    dynamic = {"requested": opts.dynamic_size, "applied": opts.dynamic_size}
    if opts.dynamic_size:
        dynamic.update(_check_other_size(src.student, path, opts))
        if not dynamic["applied"]:
            log(f"dynamic height/width dropped: {dynamic['reason']}")
            src.notes.append(f"fixed input size: {dynamic['reason']}")
            result = export_onnx(rep.module, shape, path, exporter=opts.exporter, opset=opts.opset)
    axes = dynamic_axes(bool(dynamic["applied"]))
    simplified = _simplify(src.student, path, inputs, opts, log) if opts.simplify else None
    props = metadata_props(
        info,
        src.class_names,
        src.class_names_source,
        src.checkpoint_sha256,
        src.checkpoint,
        result.used,
        prep,
        axes,
        rep.applied,
    )
    write_metadata(path, props)
    return path, {
        "path": absolute(path),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "exporter": result.to_dict(),
        "opset": result.opset,
        "dynamic_batch": True,
        "dynamic_axes": {str(k): v for k, v in axes.items()},
        "dynamic_size": dynamic,
        "reparam": rep.to_dict(),
        "checker": "onnx.checker full_check passed; loads in ONNX Runtime",
        "simplify": simplified or {"applied": False, "reason": "--no-simplify"},
        "nodes": count_nodes(path),
        "metadata": props,
    }


def _check_other_size(student: Net, path: Path, opts: ExportOptions) -> dict[str, Any]:
    """Does the dynamic-size file run, and match PyTorch, at another size? Not every model can
    (fixed position embeddings, windows): then `applied` is False with the reason."""
    module, (h, w) = student.module, student.info.input_size
    size = (h + 32, w + 32)
    x = torch.randn(
        2, student.info.in_chans, *size, generator=torch.Generator().manual_seed(opts.seed)
    ).numpy()
    sample = Batches([(x, None)])
    try:
        ref = collect(torch_runner(module), sample)
    except Exception as exc:
        return {"applied": False, "reason": f"the model does not run at {size}: {exc!s:.200}"}
    try:
        got = collect(ort_file_runner(path), sample)
    except Exception as exc:
        return {"applied": False, "reason": f"the ONNX file fails at {size}: {exc!s:.200}"}
    cmp = compare(ref, got, opts.parity_atol, opts.rtol)
    if cmp["logits_outside"] or cmp["top1_agreement"] < 100.0:
        return {
            "applied": False,
            "reason": f"parity fails at {size}: max abs diff {cmp['max_abs_diff']:.3g}",
        }
    return {"applied": True, "checked_at": list(size), "max_abs_diff": cmp["max_abs_diff"]}


def _simplify(
    student: Net, path: Path, inputs: InputSet, opts: ExportOptions, log: Log
) -> dict[str, Any]:
    """onnxsim, kept only when the simplified file passes the parity gate on a first batch."""
    log("simplifying the graph (onnxsim)")
    candidate = simplified_path(path)
    result = simplify(path, candidate)
    if not result["applied"]:
        return result
    try:
        sample = Batches([next(iter(inputs.batches()))])
        ref = collect(torch_runner(student.module), sample)
        simple = compare(
            ref, collect(ort_file_runner(candidate), sample), opts.parity_atol, opts.rtol
        )
        result["sample_max_abs_diff"] = max(simple["max_abs_diff"], simple["batch1_max_abs_diff"])
        if not simple["logits_outside"] and simple["top1_agreement"] == 100.0:
            candidate.replace(path)
            return result
        return {
            **result,
            "applied": False,
            "reason": f"breaks parity: max |diff| {result['sample_max_abs_diff']:.3g}",
        }
    finally:
        candidate.unlink(missing_ok=True)
