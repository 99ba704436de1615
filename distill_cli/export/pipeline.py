"""`distill export` from start to end: source -> ONNX -> parity -> variants -> latency -> report.

Each step lives in its own module; this one only decides the order, what each step is handed,
and what goes into the report. The report is written before the gates are judged, so a failed
gate in CI leaves the numbers behind to look at.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export.gates import Gates, evaluate
from distill_cli.export.onnx_export import (
    DEFAULT_OPSET,
    EXPORTERS,
    Exporter,
    check_onnx,
    count_nodes,
    export_onnx,
    read_metadata,
    simplify,
    write_metadata,
)
from distill_cli.export.parity import (
    DEFAULT_TOLERANCE,
    Batches,
    InputSet,
    Outputs,
    collect,
    compare,
    fp32_parity,
    ort_runner,
    torch_runner,
    variant_parity,
)
from distill_cli.export.report import (
    REPORT_NAME,
    build_report,
    metadata_props,
    model_block,
    write_report,
)
from distill_cli.export.source import Source, resolve_source, sha256_file
from distill_cli.export.variants import PRECISIONS, QUANTIZATIONS, make_fp16, make_int8
from distill_cli.models import Net, count_flops

#: How many seeded random inputs stand in for validation images when there are none.
RANDOM_INPUTS = 64
Log = Callable[[str], None]


@dataclass
class ExportOptions:
    """Everything `distill export` takes; the CLI and the Python API both fill one in."""

    source: str
    out: Path | None = None
    checkpoint: Path | None = None
    recipe: Path | None = None
    num_classes: int | None = None
    input_size: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    onnx: Path | None = None
    exporter: Exporter = "dynamo"
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    precision: str | None = None
    quantize: str | None = None
    calib_images: int = 256
    calib_method: str = "minmax"
    images: int = 2000
    tolerance: float = DEFAULT_TOLERANCE
    latency: bool = True
    teacher: bool = True
    timing: lat.TimingPlan = field(default_factory=lat.TimingPlan)
    gates: Gates = field(default_factory=Gates)

    @classmethod
    def from_flat(cls, source: str | Path, **options: Any) -> ExportOptions:
        """Options as one flat set of keywords (the CLI's flags, the API's arguments).

        Gate keys (`min_top1`, `max_top1_drop`, `max_latency_ms`, `latency_stat`,
        `latency_variant`) and timing keys (`threads`, `warmup`, `runs`, `min_time_s`,
        `max_time_s`, `batch`) are routed to their own blocks; an unknown key is an error.
        """
        gate_keys = set(Gates.__dataclass_fields__)
        timing_keys = set(lat.TimingPlan.__dataclass_fields__)
        own = set(cls.__dataclass_fields__) - {"source", "gates", "timing"}
        unknown = set(options) - gate_keys - timing_keys - own
        if unknown:
            raise TypeError(f"unknown export options: {sorted(unknown)}")

        def pick(keys: set[str]) -> dict[str, Any]:
            return {k: v for k, v in options.items() if k in keys and v is not None}

        fields = pick(own)
        for key in ("out", "checkpoint", "recipe", "onnx"):
            if key in fields:
                fields[key] = Path(fields[key])
        return cls(
            source=str(source),
            gates=Gates(**pick(gate_keys)),
            timing=lat.TimingPlan(**pick(timing_keys)),
            **fields,
        )

    @property
    def variants(self) -> list[str]:
        return [v for v in (self.precision, self.quantize) if v]

    def validate(self) -> None:
        if self.exporter not in EXPORTERS:
            raise DistillError(
                f"unknown exporter {self.exporter!r}", "--exporter", "dynamo or torchscript"
            )
        if self.precision not in (None, *PRECISIONS):
            raise DistillError(f"unknown precision {self.precision!r}", "--precision", "fp16")
        if self.quantize not in (None, *QUANTIZATIONS):
            raise DistillError(f"unknown quantization {self.quantize!r}", "--quantize", "int8")
        if self.tolerance <= 0:
            raise DistillError("the tolerance must be positive", "--tolerance")
        if self.images < 0 or self.calib_images < 1:
            raise DistillError("image counts must be positive", "--images / --calib-images")
        if self.onnx is not None and not self.onnx.is_file():
            raise DistillError("ONNX file not found", str(self.onnx))
        self.gates.validate(self.variants, self.latency)


def _silent(_: str) -> None:
    pass


def run_export(opts: ExportOptions, log: Log = _silent) -> dict[str, Any]:
    """Run the whole export; returns the report (also written to OUT/report.json).

    PyTorch runs with `--threads` threads for the whole export (so parity and latency see the
    setting that is reported); the caller's thread count is restored afterwards.
    """
    opts.validate()
    previous = torch.get_num_threads()
    torch.set_num_threads(opts.timing.threads)
    try:
        return _run(opts, log)
    finally:
        torch.set_num_threads(previous)


def _run(opts: ExportOptions, log: Log) -> dict[str, Any]:
    log(f"loading {opts.source}")
    src = resolve_source(
        opts.source,
        checkpoint=opts.checkpoint,
        recipe=opts.recipe,
        num_classes=opts.num_classes,
        input_size=opts.input_size,
        model_kwargs=opts.model_kwargs,
    )
    out = opts.out or src.default_out
    out.mkdir(parents=True, exist_ok=True)
    student, info = src.student, src.student.info
    shape = (info.in_chans, *info.input_size)
    inputs = _parity_inputs(src, opts)

    onnx_path, onnx_block = _produce_onnx(src, opts, out, inputs, log)
    log(f"parity: PyTorch vs ONNX Runtime on {inputs.count} {inputs.kind} inputs")
    reference = collect(torch_runner(student.module), inputs)
    fp32_out = collect(_ort(onnx_path), inputs)
    parity = fp32_parity(reference, fp32_out, inputs, opts.tolerance)
    if opts.onnx is not None:
        recorded = read_metadata(onnx_path).get("distill.checkpoint_sha256") or None
        parity["checkpoint_sha256_matches"] = (
            None if recorded is None else recorded == src.checkpoint_sha256
        )

    variants = {
        name: _variant(name, src, opts, onnx_path, out, fp32_out, inputs, log)
        for name in opts.variants
    }
    teachers = src.build_teachers() if opts.teacher else []
    latency = _latency(src, teachers, onnx_path, variants, opts, log) if opts.latency else None

    report = build_report(
        source=src.describe(),
        model=model_block(
            info,
            src.class_names,
            student.params,
            count_flops(student.module, shape),
            onnx_block,
        ),
        teachers=[_teacher_block(t) for t in teachers],
        parity=parity,
        variants=variants,
        latency=latency,
        files={"onnx": str(onnx_path), **{k: v["path"] for k, v in variants.items()}},
    )
    misses = evaluate(report, opts.gates)
    report["gates"] = {"requested": opts.gates.to_dict(), "passed": not misses, "misses": misses}
    report["files"]["report"] = str(out / REPORT_NAME)
    write_report(out, report)
    return report


def _ort(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort_runner(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))


def _data_inputs(src: Source, split: Any, count: int, seed: int, **kwargs: Any) -> InputSet:
    """Images of one split of the source's data, loaded as its recipe loads them."""
    dspec = src.recipe.data if src.recipe is not None else None
    return InputSet(
        src.student.info,
        split,
        count,
        seed=seed,
        load_size=dspec.load_size if dspec else None,
        workers=dspec.workers if dspec else 0,
        **kwargs,
    )


def _parity_inputs(src: Source, opts: ExportOptions) -> InputSet:
    if src.data is None:
        return InputSet(src.student.info, None, RANDOM_INPUTS)
    return _data_inputs(src, src.data.val, opts.images, seed=1)


def _produce_onnx(
    src: Source, opts: ExportOptions, out: Path, inputs: InputSet, log: Log
) -> tuple[Path, dict[str, Any]]:
    """Export (or take --onnx), simplify when it keeps parity, label; returns path and block."""
    if opts.onnx is not None:
        log(f"checking the existing file {opts.onnx}")
        check_onnx(opts.onnx)
        return opts.onnx, {
            "path": str(opts.onnx),
            "bytes": opts.onnx.stat().st_size,
            "sha256": sha256_file(opts.onnx),
            "exporter": {"used": "existing file (--onnx)"},
            "nodes": count_nodes(opts.onnx),
            "metadata": read_metadata(opts.onnx),
        }
    path = out / "model.onnx"
    log(f"exporting {src.student.info.name} to {path} ({opts.exporter} exporter)")
    shape = (src.student.info.in_chans, *src.student.info.input_size)
    result = export_onnx(src.student.module, shape, path, exporter=opts.exporter, opset=opts.opset)
    simplified = _simplify(src.student, path, inputs, opts, log) if opts.simplify else None
    props = metadata_props(
        src.student.info, src.class_names, src.checkpoint_sha256, src.checkpoint, result.used
    )
    write_metadata(path, props)
    return path, {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "exporter": result.to_dict(),
        "opset": result.opset,
        "dynamic_batch": True,
        "checker": "onnx.checker full_check passed; loads in ONNX Runtime",
        "simplify": simplified or {"applied": False, "reason": "--no-simplify"},
        "nodes": count_nodes(path),
        "metadata": props,
    }


def _simplify(
    student: Net, path: Path, inputs: InputSet, opts: ExportOptions, log: Log
) -> dict[str, Any]:
    """onnxsim, kept only when the simplified file passes the parity gate on a first batch."""
    log("simplifying the graph (onnxsim)")
    candidate = path.with_name(path.stem + ".simplified.onnx")
    result = simplify(path, candidate)
    if not result["applied"]:
        return result
    try:
        sample = _first_batch(inputs)
        ref = collect(torch_runner(student.module), sample)
        simple = compare(ref, collect(_ort(candidate), sample))
        result["sample_max_abs_diff"] = max(simple["max_abs_diff"], simple["batch1_max_abs_diff"])
        if result["sample_max_abs_diff"] <= opts.tolerance and simple["top1_agreement"] == 100.0:
            candidate.replace(path)
            return result
        return {
            **result,
            "applied": False,
            "reason": f"breaks parity: max |diff| {result['sample_max_abs_diff']:.3g}",
        }
    finally:
        candidate.unlink(missing_ok=True)


def _first_batch(inputs: InputSet) -> Batches:
    return Batches([next(iter(inputs.batches()))])


def _variant(
    name: str,
    src: Source,
    opts: ExportOptions,
    fp32_path: Path,
    out: Path,
    fp32_out: Outputs,
    inputs: InputSet,
    log: Log,
) -> dict[str, Any]:
    path = out / f"model.{name}.onnx"
    if name == "fp16":
        log(f"fp16: converting to {path}")
        block = make_fp16(fp32_path, path)
    else:
        calib = _calibration_inputs(src, opts)
        log(f"int8: calibrating on {calib.count} {calib.kind} images, quantizing to {path}")
        block = make_int8(
            fp32_path,
            path,
            (x for x, _ in calib.batches()),
            method=opts.calib_method,
            calibration_source=f"{calib.describe()['source']} ({calib.kind})",
        )
    log(f"{name}: parity against ONNX fp32")
    block["parity"] = variant_parity(fp32_out, collect(_ort(path), inputs))
    return block


def _calibration_inputs(src: Source, opts: ExportOptions) -> InputSet:
    if src.data is None:
        return InputSet(src.student.info, None, min(opts.calib_images, RANDOM_INPUTS), seed=7)
    return _data_inputs(
        src, src.data.train, opts.calib_images, seed=2, batch=32, purpose="training"
    )


def _latency(
    src: Source,
    teachers: list[Net],
    onnx_path: Path,
    variants: dict[str, dict[str, Any]],
    opts: ExportOptions,
    log: Log,
) -> dict[str, Any]:
    """Student (PyTorch, ONNX fp32, each variant) and teachers (PyTorch, ONNX fp32), in turn."""
    plan = opts.timing
    providers = lat.providers()
    entries: list[dict[str, Any]] = []
    student_files = {"fp32": onnx_path, **{k: Path(v["path"]) for k, v in variants.items()}}
    models: list[tuple[str, Net, dict[str, Path]]] = [("student", src.student, student_files)]
    with tempfile.TemporaryDirectory(prefix="distill-teacher-") as tmp:
        for index, teacher in enumerate(teachers):
            role = "teacher" if len(teachers) == 1 else f"teacher{index}"
            models.append((role, teacher, _teacher_onnx(teacher, Path(tmp) / role, src, opts, log)))
        for role, net, files in models:
            shape = (net.info.in_chans, *net.info.input_size)
            devices = ["cpu", *(["cuda"] if "CUDAExecutionProvider" in providers else [])]
            for device in devices:
                suffix = "" if device == "cpu" else "-cuda"
                log(f"timing {role} {net.info.name}: PyTorch eager ({device})")
                entry = lat.torch_entry(f"{role}/pytorch{suffix}", net.module, shape, plan, device)
                entries.append({"model": role, "variant": "fp32", **entry})
            for variant, path in files.items():
                for provider in providers:
                    suffix = "" if provider == "CPUExecutionProvider" else "-cuda"
                    name = f"{role}/onnxruntime{suffix}/{variant}"
                    log(f"timing {role} {net.info.name}: ONNX Runtime {variant} ({provider})")
                    entry = lat.ort_entry(name, path, shape, plan, provider)
                    entries.append({"model": role, "variant": variant, **entry})
    return {
        "protocol": {**plan.to_dict(), "batch_latency": 1, "rule": _RULE},
        "environment": lat.environment(plan.threads),
        "entries": entries,
        "speedup": lat.speedups(entries),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _teacher_onnx(
    teacher: Net, folder: Path, src: Source, opts: ExportOptions, log: Log
) -> dict[str, Path]:
    """A throw-away ONNX export of a teacher, only to time it; {} (with a note) if it fails."""
    log(f"exporting the teacher {teacher.info.name} to time it in ONNX Runtime")
    shape = (teacher.info.in_chans, *teacher.info.input_size)
    path = folder / "model.onnx"
    try:
        export_onnx(teacher.module, shape, path, exporter=opts.exporter, opset=opts.opset)
    except DistillError as exc:
        src.notes.append(f"teacher {teacher.info.name} timed in PyTorch only: {exc}")
        return {}
    return {"fp32": path}


_RULE = "warm-up calls, then timed calls until >= runs and >= min_time_s (stop at max_time_s)"


def _teacher_block(teacher: Net) -> dict[str, Any]:
    shape = (teacher.info.in_chans, *teacher.info.input_size)
    flops = count_flops(teacher.module, shape)
    return {
        "name": teacher.info.name,
        "input_size": list(teacher.info.input_size),
        "params": teacher.params,
        "gflops": None if flops is None else flops / 1e9,
    }
