"""`distill export` from start to end: source -> ONNX -> parity -> variants -> latency -> report.

Each step lives in its own module; this one only decides the order, what each step is handed,
and what goes into the report. The report is written before the gates are judged, so a failed
gate in CI leaves the numbers behind to look at.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill_cli.errors import DistillError
from distill_cli.export import timing
from distill_cli.export.file_input import FileInput
from distill_cli.export.gates import evaluate, verdicts
from distill_cli.export.inputs import InputSet
from distill_cli.export.latency import providers
from distill_cli.export.onnx_export import check_onnx, read_metadata, remove_leftovers
from distill_cli.export.options import ExportOptions
from distill_cli.export.parity import (
    Outputs,
    collect,
    fp32_parity,
    gpu_parity,
    ort_file_runner,
    torch_runner,
    variant_parity,
)
from distill_cli.export.preprocess import describe
from distill_cli.export.produce import (
    MODEL_FILE,
    Log,
    produce_onnx,
    simplified_path,
    variant_path,
)
from distill_cli.export.protocol import check_batch_memory
from distill_cli.export.reparam import reparameterize
from distill_cli.export.report import REPORT_NAME, ExportReport, model_block
from distill_cli.export.source import Source, resolve_source
from distill_cli.export.variants import (
    FP16_CPU_HINT,
    PRECISIONS,
    QUANTIZATIONS,
    make_fp16,
    make_int8,
)
from distill_cli.files import claim_folder
from distill_cli.host import absolute
from distill_cli.locks import hold_folder
from distill_cli.models.checkpoint import read_sidecar
from distill_cli.models.create import Net, count_flops
from distill_cli.models.feed import spec_input_size
from distill_cli.models.view import load_sizes
from distill_cli.rundir.layout import RunDir

#: How many seeded random inputs stand in for validation images when there are none.
RANDOM_INPUTS = 64


def _silent(_: str) -> None:
    pass


#: The file that marks a folder as an export's output (distill replaces its own files there).
EXPORT_MARKER = ".distill-export"


def run_export(opts: ExportOptions, log: Log = _silent) -> ExportReport:
    """Run the whole export; returns the report (also written to OUT/report.json).

    PyTorch runs with `--threads` threads for the whole export (so parity and latency see the
    setting that is reported); the caller's thread count is restored afterwards.
    """
    opts.validate()
    previous = torch.get_num_threads()
    torch.set_num_threads(opts.timing.threads)
    files: dict[Path, tuple[int, int] | None] = {}  # what the export may write, as it was
    made = _Made()  # the folders and marker this export created, removed if it fails
    held = contextlib.ExitStack()  # the output folder, held from its claim to the end
    try:
        return _run(opts, log, files, held, made)
    except BaseException:
        # an export that does not reach its report (an error, Ctrl-C, SIGTERM) removes the
        # model files it wrote (only those: a file it had not replaced yet stays), so no
        # model.onnx is left looking like a checked export
        for path, before in files.items():
            if _identity(path) != before:
                path.unlink(missing_ok=True)
        held.close()
        _remove_made(made)
        raise
    finally:
        held.close()
        torch.set_num_threads(previous)


@dataclass
class _Made:
    """What an export created before its work: the output folder's marker (when it was not
    there) and the folders it made for it (deepest first)."""

    marker: Path | None = None
    folders: list[Path] = field(default_factory=list)


def _remove_made(made: _Made) -> None:
    """What a failed export created, when its folder holds nothing else: a refused
    `--onnx photo.png` left `export/test_resnet/.distill-export` behind."""
    marker = made.marker
    if (
        marker is not None
        and marker.is_file()
        and [p.name for p in marker.parent.iterdir()] == [marker.name]
    ):
        marker.unlink(missing_ok=True)
    for folder in made.folders:
        try:
            folder.rmdir()  # only an empty one
        except OSError:
            return


def _identity(path: Path) -> tuple[int, int] | None:
    """A file's (inode, mtime): a file written since (renamed into place) has another."""
    stat = path.stat() if path.is_file() else None
    return None if stat is None else (stat.st_ino, stat.st_mtime_ns)


def _run(
    opts: ExportOptions,
    log: Log,
    files: dict[Path, tuple[int, int] | None],
    held: contextlib.ExitStack,
    made: _Made,
) -> ExportReport:
    log(f"loading {opts.source}")
    src = resolve_source(
        opts.source,
        checkpoint=opts.checkpoint,
        checkpoint_key=opts.checkpoint_key,
        recipe=opts.recipe,
        num_classes=opts.num_classes,
        input_size=opts.input_size,
        model_kwargs=opts.model_kwargs,
        seed=opts.seed,
    )
    out = opts.out or src.default_out
    # the run's own export/ folder (from before the marker) is distill's; any other folder
    # with content must carry the marker, or --force
    legacy = out == src.default_out and out.name == "export" and RunDir(out.parent).is_run
    run = next((RunDir(f) for f in (out, out.parent) if RunDir(f).is_run), None)
    if run is not None and out in (run.path, run.checkpoints, run.tensorboard):
        raise DistillError(  # was "holds files distill did not write", --force writing into it
            "the output folder is a run folder or one of its own folders; the export's files "
            "would mix with the run's",
            str(out),
            f"leave --out out (the run's {run.export}), or pick another folder",
        )
    ours = (out / EXPORT_MARKER).is_file() or legacy  # an earlier export's folder, not --force's
    made.folders = [p for p in (out, *out.parents) if not p.exists() and not p.is_symlink()]
    if not (out / EXPORT_MARKER).exists():
        made.marker = out / EXPORT_MARKER
    claim_folder(out, EXPORT_MARKER, force=opts.force or legacy, override="--force")
    held.enter_context(hold_folder(out / EXPORT_MARKER, "export"))
    variants = [variant_path(out, v).name for v in (*PRECISIONS, *QUANTIZATIONS)]
    names = [MODEL_FILE, simplified_path(out / MODEL_FILE).name, *variants, REPORT_NAME]
    remove_leftovers(out, names)  # what a killed export left half-written
    student, info = src.student, src.student.info
    shape = (info.in_chans, *info.input_size)
    if opts.latency:  # before the export's minutes of work, not when the timing starts
        check_batch_memory(opts.timing.batch, shape)
    if opts.onnx is not None:  # a file that cannot take the model's inputs: before any work
        check_onnx(opts.onnx)
        given = FileInput.of(opts.onnx)
        given.check_fits(shape, opts.onnx, info.name)
        note = given.precision_note(opts.onnx)
        if note is not None:
            src.notes.append(note)
            log(note)
    load_size = _load_size(src)
    inputs = _parity_inputs(src, opts, load_size)
    rep = reparameterize(student.module, opts.reparam)
    if rep.applied:
        log(f"reparameterized {rep.blocks} blocks (timm's inference form) before export")
    channels = src.data.val.channels if src.data is not None else None
    prep = describe(info, channels, load_size)

    reference = collect(torch_runner(student.module), inputs)  # the unfused model
    # from here the folder's files change: the previous export's verdict goes first
    (out / REPORT_NAME).unlink(missing_ok=True)
    paths = [] if opts.onnx is not None else [out / MODEL_FILE, simplified_path(out / MODEL_FILE)]
    paths += [variant_path(out, name) for name in opts.variants]
    files.update({path: _identity(path) for path in paths})
    if ours:  # a folder --force opened may hold the user's own model.onnx: never removed
        _remove_stale(out, paths, opts.onnx, src.notes, log)
    onnx_path, onnx_block = produce_onnx(src, opts, out, inputs, rep, prep, log)
    log(f"parity: PyTorch vs ONNX Runtime on {inputs.count} {inputs.kind} inputs")
    fp32_out = collect(ort_file_runner(onnx_path), inputs)
    parity = fp32_parity(reference, fp32_out, inputs, opts.parity_atol, opts.rtol)
    if parity["warning"]:
        src.notes.append(f"parity: {parity['warning']}")
    for provider in providers(opts.timing.device)[1:]:  # the gate on each GPU provider too
        log(f"parity: PyTorch vs ONNX Runtime ({provider})")
        gpu_parity(parity, reference, onnx_path, inputs, provider)
    parity["tolerance"] = opts.parity_atol  # distill.export/1 readers knew atol by this name
    parity["reference"] = "PyTorch, before reparameterization" if rep.applied else "PyTorch"
    if opts.onnx is not None:
        recorded = read_metadata(onnx_path).get("distill.checkpoint_sha256") or None
        parity["checkpoint_sha256_matches"] = (
            None if recorded is None else recorded == src.checkpoint_sha256
        )

    variants = {
        name: _variant(name, src, opts, onnx_path, out, fp32_out, inputs, load_size, log)
        for name in opts.variants
    }
    teachers = src.build_teachers() if opts.teacher else []
    latency = None
    if opts.latency:
        files = {"fp32": onnx_path, **{k: Path(v["path"]) for k, v in variants.items()}}
        plan = FileInput.of(onnx_path).timing(opts.timing)  # --onnx of a batch-1 file: 1
        latency = timing.measure(
            student, rep.module, files, teachers, plan, opts.exporter, opts.opset,
            src.notes, log,
            retime=opts.gates.latency_variant if opts.gates.require_protocol else None,
        )  # fmt: skip

    report = ExportReport.build(
        source=src.describe(),
        model=model_block(
            info, src.class_names, student.params, count_flops(student.module, shape), onnx_block
        ),
        preprocess=prep.to_dict(),
        teachers=[_teacher_block(t) for t in teachers],
        parity=parity,
        variants=variants,
        latency=latency,
        files={"onnx": absolute(onnx_path), **{k: v["path"] for k, v in variants.items()}},
    )
    report.data["model"]["class_names_source"] = src.class_names_source
    report.record_gates(
        opts.gates.to_dict(), evaluate(report, opts.gates), verdicts(report, opts.gates)
    )
    report.write(out)
    return report


def _remove_stale(
    out: Path, written: list[Path], onnx: Path | None, notes: list[str], log: Log
) -> None:
    """Remove the model files a previous export left in `out` that this one will not write (an
    int8 file from an export with --quantize int8, the fp32 file when --onnx checks another):
    they would sit beside a report that never checked them, and CI uploads the whole folder."""
    keep = {p.resolve() for p in written} | ({onnx.resolve()} if onnx is not None else set())
    for name in (MODEL_FILE, *(variant_path(out, v).name for v in (*PRECISIONS, *QUANTIZATIONS))):
        path = out / name
        if path.resolve() in keep or not path.is_file():
            continue
        path.unlink()
        Path(f"{path}.data").unlink(missing_ok=True)  # its external weights, if it had any
        message = f"removed {name} left by a previous export (this export did not make it)"
        notes.append(message)
        log(message)


def _load_size(src: Source) -> int | None:
    """The square side image files are decoded to before the crop, exactly as `distill run`
    evaluated: what the checkpoint's side file recorded (also when the data is not at hand: a
    checkpoint exported alone, a run whose data moved; the ONNX metadata then still says to
    decode photos as distill does, upright, on white, at that square), else (older
    checkpoints) the same rule the run applies (`models.view.load_sizes`) to the run's models
    as they are built (recipe, side file, timm default)."""
    if src.data is not None and not src.data.val.from_files:
        return None  # in-memory pixels go straight to the crop
    recorded = read_sidecar(src.checkpoint).load_size if src.checkpoint else None
    if recorded is not None or src.data is None:
        return recorded
    dspec = src.recipe.data if src.recipe is not None else None
    sides = [*src.student.info.input_size, *(s for t in src.teacher_specs for s in _side(t))]
    return load_sizes(max(sides), dspec.load_size if dspec is not None else None)[1]


def _side(spec: Any) -> tuple[int, ...]:
    """A teacher's input side without building it, as the run resolved it."""
    try:
        return spec_input_size(spec)
    except DistillError:  # an unreadable side file: timm's default, as a run without it
        return spec_input_size(spec.model_copy(update={"checkpoint": None}))


def _data_inputs(
    src: Source, split: Any, count: int, seed: int, load_size: int | None, **kwargs: Any
) -> InputSet:
    """Images of one split of the source's data, loaded as its recipe loads them."""
    dspec = src.recipe.data if src.recipe is not None else None
    return InputSet(
        src.student.info,
        split,
        count,
        seed=seed,
        load_size=load_size,
        workers=dspec.resolved_workers if dspec else 0,
        **kwargs,
    )


def _parity_inputs(src: Source, opts: ExportOptions, load_size: int | None) -> InputSet:
    if src.data is None:
        return InputSet(src.student.info, None, RANDOM_INPUTS, seed=opts.seed)
    return _data_inputs(src, src.data.val, opts.images, seed=1, load_size=load_size)


def _variant(
    name: str,
    src: Source,
    opts: ExportOptions,
    fp32_path: Path,
    out: Path,
    fp32_out: Outputs,
    inputs: InputSet,
    load_size: int | None,
    log: Log,
) -> dict[str, Any]:
    path = variant_path(out, name)
    if name == "fp16":
        log(f"fp16: converting to {path}")
        block = make_fp16(fp32_path, path)
        if "CUDAExecutionProvider" not in providers(opts.timing.device):
            src.notes.append(FP16_CPU_HINT)
            log(FP16_CPU_HINT)
    else:
        calib = _calibration_inputs(src, opts, load_size)
        if calib.images is None:
            warning = (
                f"int8 calibrated on {calib.count} seeded random inputs, not images: the run "
                "has no training images here (pass --recipe); expect a larger accuracy loss"
            )
            src.notes.append(warning)
            log(warning)
        log(f"int8: calibrating on {calib.count} {calib.kind} images, quantizing to {path}")
        block = make_int8(
            fp32_path,
            path,
            (x for x, _ in calib.batches()),
            spec=opts.int8,
            calibration_source=f"{calib.describe()['source']} ({calib.kind})",
        )
        block["calibration"]["random_inputs"] = calib.images is None
    log(f"{name}: parity against ONNX fp32")
    block["parity"] = variant_parity(fp32_out, collect(ort_file_runner(path), inputs))
    return block


def _calibration_inputs(src: Source, opts: ExportOptions, load_size: int | None) -> InputSet:
    if src.data is None:
        count = min(opts.calib_images, RANDOM_INPUTS)
        return InputSet(src.student.info, None, count, seed=opts.seed + 7)
    return _data_inputs(
        src, src.data.train, opts.calib_images, seed=2, load_size=load_size, batch=32,
        purpose="training", balanced=True,
    )  # fmt: skip


def _teacher_block(teacher: Net) -> dict[str, Any]:
    shape = (teacher.info.in_chans, *teacher.info.input_size)
    flops = count_flops(teacher.module, shape)
    return {
        "name": teacher.info.name,
        "input_size": list(teacher.info.input_size),
        "params": teacher.params,
        "gflops": None if flops is None else flops / 1e9,
    }
