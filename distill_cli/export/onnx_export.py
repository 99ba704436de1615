"""PyTorch -> ONNX: one file with a dynamic batch axis, checked, labelled, optionally simplified.

Two exporters ship with torch: the TorchScript tracer (mature, fast, deprecated since torch 2.9)
and the dynamo exporter (``torch.export`` + onnxscript, torch's default). Either fails on some
architectures, so the requested one is tried first and the other second; "fails" means it
raised, or produced a file that ``onnx.checker`` (full check, with shape inference) or ONNX
Runtime refuses. Which one produced the file is recorded, with the reason the other failed.

The example batch is 2, not 1: both exporters may specialise a dimension of size 1 into a
constant, which would break the dynamic batch axis the parity gate then checks at batch 1 and N.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx
import torch
from torch import nn

from distill_cli.errors import DistillError, RunFailed
from distill_cli.export.capture import Captured, third_party_step
from distill_cli.export.ranges import DEFAULT_OPSET
from distill_cli.file_kinds import ONNX, kind_of
from distill_cli.files import atomic_write, fs_failed, process_umask, refuse_link

Exporter = Literal["dynamo", "torchscript"]
EXPORTERS: tuple[Exporter, ...] = ("dynamo", "torchscript")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
#: File-system failures an exporter may hit while writing: not the architecture's fault.
_FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}
_MAX_SINGLE_FILE = 1_800_000_000  # protobuf's 2 GiB limit, with room for the graph


@dataclass
class OnnxWrite:
    """One ONNX file written by `export_onnx`: which exporter wrote it (the fallback when the
    requested one failed), at what opset, how long it took; the report's `model.onnx.exporter`.
    Not to be confused with `report.ExportReport`, what `api.export` returns."""

    path: Path
    requested: Exporter
    used: Exporter
    opset: int
    seconds: float
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "used": self.used,
            "opset": self.opset,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
        }


def dynamic_axes(dynamic_size: bool) -> dict[int, str]:
    """The input's dynamic axes: batch always; height and width when asked for."""
    return {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}


def _export_once(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    exporter: Exporter,
    opset: int,
    dynamic_size: bool = False,
) -> None:
    big = sum(p.numel() * p.element_size() for p in module.parameters()) > _MAX_SINGLE_FILE
    common: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    with torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                dynamic_shapes=(
                    {k: torch.export.Dim(v) for k, v in dynamic_axes(dynamic_size).items()},
                ),
                external_data=big,
                verbose=False,
                **common,
            )
        else:
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                dynamic_axes={INPUT_NAME: dynamic_axes(dynamic_size), OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
                **common,
            )


def check_onnx(path: Path, *, made_by: str | None = None, hint: str | None = None) -> None:
    """onnx.checker with full_check (strict shape inference), then an ONNX Runtime load.

    A file the user gave (`made_by` None) that fails is bad input (exit 2); one a converter
    distill ran has just made (`made_by` names it) is work that failed (exit 1), with `hint`.
    """
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # protobuf, checker and ORT errors alike
        if made_by is not None:
            raise RunFailed(
                f"{made_by} made a file that fails to load: {_first_line(exc, '')}",
                str(path),
                hint,
            ) from exc
        what = kind_of(path)
        if what not in (None, ONNX):  # a checkpoint, a recipe, a photo: not a damaged model
            raise DistillError(
                f"not an ONNX file: the file is {what}",
                str(path),
                "pass the .onnx file `distill export` wrote (model.onnx in its folder)",
            ) from exc
        raise DistillError(
            f"the ONNX file fails to load: {_first_line(exc, '')}",
            str(path),
            "is the file complete? re-export it with `distill export`",
        ) from exc


def _first_line(exc: BaseException, captured: str) -> str:
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0][:300] if text else ''}"
    return f"{msg} [{captured}]" if captured and not text else msg


def export_onnx(
    module: nn.Module,
    input_shape: tuple[int, int, int],
    path: Path,
    *,
    exporter: Exporter = "dynamo",
    opset: int = DEFAULT_OPSET,
    dynamic_size: bool = False,
) -> OnnxWrite:
    """Export `module` (eval mode) to `path`; the other exporter is tried when the first fails.

    `dynamic_size` also makes height and width dynamic (the caller checks another size runs).
    The exporter runs in a private working directory (`third_party_step`), so `path` is made
    absolute first.
    """
    if exporter not in EXPORTERS:
        raise DistillError(f"unknown exporter {exporter!r}", "--exporter", "dynamo or torchscript")
    path = Path(os.path.abspath(path))
    module.eval()
    refuse_link(path)  # a link planted where model.onnx belongs is never followed
    refuse_link(Path(str(path) + ".data"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fs_failed(exc, path.parent, "create the output folder") from exc
    example = torch.randn(2, *input_shape)
    order = [exporter, *(e for e in EXPORTERS if e != exporter)]
    attempts: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in order:
        t0 = time.perf_counter()
        with _Staging(path) as stage:
            out = Captured()
            try:
                with third_party_step() as out:
                    _export_once(module, example, stage.path, name, opset, dynamic_size)
                    check_onnx(stage.path)
            except Exception as exc:
                disk = _fs_cause(exc)
                if disk is not None:  # the disk, not the architecture: say so, exit 1
                    raise fs_failed(disk, path, "write the ONNX file") from exc
                if isinstance(exc, RunFailed):  # no private folder for the step: not the model's
                    raise
                attempts.append(
                    {
                        "exporter": name,
                        "ok": False,
                        "error": _first_line(exc, out.tail()),
                        "seconds": round(time.perf_counter() - t0, 3),
                    }
                )
                continue
            stage.commit()
        attempts.append(
            {"exporter": name, "ok": True, "seconds": round(time.perf_counter() - t0, 3)}
        )
        return OnnxWrite(
            path, exporter, name, model_opset(path), time.perf_counter() - started, attempts
        )
    _remove(path)
    raise RunFailed(  # valid input, work that failed: exit 1
        "ONNX export failed with both exporters: "
        + "; ".join(f"{a['exporter']}: {a['error']}" for a in attempts),
        str(path),
        "see the README's list of architectures that do not export",
    )


def _fs_cause(exc: BaseException) -> OSError | None:
    """The file-system error (a full disk, no permission) behind an exporter's failure, if
    any: exporters wrap it in their own exception types."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _FS_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Staging:
    """A model file (and its `.data`, when the weights are external) written whole beside
    `path` before it replaces it: exporters and onnx write straight to the name they are
    given, so they get `.<name>.<random>.tmp/<name>` in the same folder, and `commit` renames
    the `.data` and then the model over the targets (host's rule: a kill never leaves half a
    model.onnx). The folder goes in any case; a kill's leftover is removed by the next export
    (`remove_leftovers`)."""

    def __init__(self, path: Path) -> None:
        self.target = path

    def __enter__(self) -> _Staging:
        try:
            self.folder = Path(
                tempfile.mkdtemp(
                    dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
                )
            )
        except OSError as exc:
            raise fs_failed(exc, self.target, "write the ONNX file") from exc
        self.path = self.folder / self.target.name
        return self

    def commit(self) -> None:
        self._gather_external_data()
        data, target_data = Path(str(self.path) + ".data"), Path(str(self.target) + ".data")
        refuse_link(self.target)
        refuse_link(target_data)
        try:
            if data.exists():
                os.replace(data, target_data)
            else:
                target_data.unlink(missing_ok=True)  # a larger model's, now stale
            os.chmod(self.path, 0o666 & ~process_umask())
            os.replace(self.path, self.target)
        except OSError as exc:
            raise fs_failed(exc, self.target, "write the ONNX file") from exc

    def _gather_external_data(self) -> None:
        """Fold every external tensor into the one `<name>.data` that `commit` moves.

        The TorchScript exporter writes a model over protobuf's 2 GiB limit with one file per
        weight beside it, named after the tensors; moving only the model and `<name>.data`
        would leave a model.onnx that points into the staging folder `__exit__` deletes.
        """
        own = {self.path.name, self.path.name + ".data"}
        if not self.path.exists() or all(p.name in own for p in self.folder.iterdir()):
            return
        model = onnx.load(str(self.path))  # every external tensor read in, wherever it was
        for stale in self.folder.iterdir():  # onnx appends to a `.data` that exists
            stale.unlink()
        onnx.save(
            model,
            str(self.path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=self.path.name + ".data",
        )

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_leftovers(folder: Path, names: list[str]) -> None:
    """The temp files and staging folders (`.<name>.<random>.tmp`) a kill during a write of
    one of `names` left in `folder`: only those, never anything else of the folder's."""
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(str(path) + ".data").unlink(missing_ok=True)


def model_opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """One self-contained file when it fits protobuf's limit, external data beside it otherwise."""
    refuse_link(path)
    if model.ByteSize() < _MAX_SINGLE_FILE:  # one file: temp file and rename (host's rule)
        atomic_write(path, model.SerializeToString())
        Path(str(path) + ".data").unlink(missing_ok=True)  # a larger model's, now stale
    else:
        with _Staging(path) as stage:
            onnx.save(
                model, str(stage.path), save_as_external_data=True, location=path.name + ".data"
            )
            stage.commit()


def write_metadata(path: Path, props: dict[str, str]) -> None:
    """Set the file's metadata_props (replacing keys that exist) and re-check the file."""
    model = onnx.load(str(path))
    kept = {p.key: p.value for p in model.metadata_props}
    kept.update(props)
    del model.metadata_props[:]
    for key, value in kept.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "distill"
    save_model(model, path)
    onnx.checker.check_model(str(path), full_check=True)


def read_metadata(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def count_nodes(path: Path) -> int:
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def simplify(path: Path, out: Path) -> dict[str, Any]:
    """onnxsim's graph simplification into `out`; the caller keeps it only if parity holds.

    Returns what happened; `"applied": False` with a reason when onnxsim is missing or fails.
    """
    try:
        import onnxsim
    except ImportError:
        return {"applied": False, "reason": "onnxsim is not installed"}
    before = count_nodes(path)
    t0 = time.perf_counter()
    source = os.path.abspath(path)  # read inside onnxsim's private working directory
    try:
        with third_party_step() as captured:
            model, ok = onnxsim.simplify(onnx.load(source))
    except Exception as exc:
        return {"applied": False, "reason": f"onnxsim failed: {_first_line(exc, captured.tail())}"}
    if not ok:
        return {"applied": False, "reason": "onnxsim's own output check failed"}
    save_model(model, out)
    try:
        check_onnx(out)
    except Exception as exc:
        return {"applied": False, "reason": f"simplified model is invalid: {_first_line(exc, '')}"}
    return {
        "applied": True,
        "nodes_before": before,
        "nodes_after": len(model.graph.node),
        "seconds": round(time.perf_counter() - t0, 3),
        "onnxsim": getattr(onnxsim, "__version__", "unknown"),
    }
