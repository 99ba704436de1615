"""One weights file read without running anything in it: its format told by its first bytes
(torch.save's zip or legacy pickle, safetensors, a TorchScript program, neither), a pickle
loaded weights-only with the plain data trainers put beside the weights allowed, and a pickle
holding objects refused by what it holds (a whole `torch.save(model)`). What the file's dict
holds and how it fits a model is weights.py's.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from distill_cli.errors import DistillError
from distill_cli.file_kinds import ONNX, kind_of


def as_dict(state: Any, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise DistillError(
            "checkpoint holds no state dict",
            str(path),
            "pass the weights: torch.save(model.state_dict()) or a .safetensors file",
        )
    return state


def read_file(path: Path) -> Any:
    """What one weights file holds, read without running code (`read_weights`)."""
    kind = _file_kind(path)
    if kind is None:
        what = kind_of(path)
        raise DistillError(
            f"not a checkpoint: the file is {what}"
            if what
            else "not a checkpoint: the file is neither a torch.save file nor safetensors",
            str(path),
            "an ONNX model is made from weights, not loaded: time it with `distill bench "
            "latency FILE`, or check it with `distill export RUN --onnx FILE`"
            if what == ONNX
            else "pass the weights file (torch.save(model.state_dict()) or .safetensors)",
        )
    try:
        if kind == "safetensors":
            return load_file(str(path))
        else:
            with warnings.catch_warnings(), torch.serialization.safe_globals(_benign_globals()):
                warnings.simplefilter("ignore")  # torch's own advice (weights_only=False) is wrong
                return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _objects_refused(path) from None  # torch's advice (load unsafely): never shown
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0].split(". ")[0][:200]
        if "weights_only" in first or "Weights only" in first:
            first = "not a weights-only file"
        raise DistillError(
            f"cannot read checkpoint: {type(exc).__name__}: {first}",
            str(path),
            "is the file complete (not cut short by a copy or a killed save)?",
        ) from exc


def _objects_refused(path: Path) -> DistillError:
    """A pickle holding objects, named by what it holds: `torch.save(model)` pickles the whole
    model (its classes, e.g. timm.models.resnet.ResNet), which "more than tensors" left unsaid."""
    try:
        held = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # the legacy format cannot be listed: the general words
        held = []
    modules = sorted(g for g in held if g.startswith(("torch.nn.modules.", "timm.")))
    if modules:
        top = next((g for g in modules if g.startswith("timm.models.")), modules[0])
        return DistillError(
            "the checkpoint is a whole pickled model (torch.save(model) of a "
            f"{top.rsplit('.', 1)[0]} model); "
            "distill loads weights only and did not run it",
            str(path),
            "save its weights where it was made: torch.save(model.state_dict(), 'weights.pt')",
        )
    shown = f" ({', '.join(sorted(held)[:3])})" if held else ""
    return DistillError(
        f"the checkpoint is a pickle holding objects beyond tensors and plain data{shown}; "
        "distill loads weights only and did not run it",
        str(path),
        "save model.state_dict() with torch.save, or convert the weights to .safetensors",
    )


def _file_kind(path: Path) -> str | None:
    """ "safetensors", "torch" (torch.save's zip, or the legacy pickle) or None (neither)."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04" and _is_torchscript(path):
        raise DistillError(
            "the checkpoint is a TorchScript program (torch.jit.save); distill loads weights only",
            str(path),
            "save its weights: torch.save(torch.jit.load(FILE).state_dict(), 'weights.pt')",
        )  # torch.load said "not a weights-only file" and asked whether the copy was complete
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":  # an 8-byte header length, then the JSON header
        return "safetensors"
    return None


def _is_torchscript(path: Path) -> bool:
    """torch.jit.save's zip: the model's code beside its constants, which torch.save's lacks."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False  # cut short: torch.load names it


def _benign_globals() -> list[Any]:
    """Plain data types that trainers put beside the weights, allowed when loading weights-only.

    timm's train.py saves its `argparse.Namespace` under `args`, Lightning the module's
    arguments (paths among them) under `hyper_parameters`, and many scripts a numpy scalar
    (`best_acc1`) or array: data, not code, so they are built without running anything;
    every other object stays refused.
    """
    import argparse
    import pathlib

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = {type(np.dtype(t)) for t in np.sctypeDict.values() if t not in (np.void, np.object_)}
    return [
        argparse.Namespace,
        pathlib.PosixPath,  # Lightning's hyper_parameters: a data_dir argument
        pathlib.WindowsPath,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        core.multiarray.scalar,
        core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        *sorted(dtypes, key=str),
    ]
