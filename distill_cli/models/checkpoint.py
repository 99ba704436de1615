"""The checkpoint file format, written and read: safetensors weights + a JSON sidecar.

Everything that knows how a checkpoint is laid out lives here, so the writer and the reader
cannot drift apart.

``best.safetensors`` holds the student's weights only: it is what export and other runs load.
``last.safetensors`` additionally holds the optimizer's tensors (under ``__optimizer__/``) and
the training position in its header, all in one file, so one atomic rename makes the whole
resumable state consistent: a kill mid-write leaves the previous file intact.

The JSON sidecar (``<name>.json``) says what the weights are: timm name, classes, input config,
epoch and metrics, so an export or a later run needs nothing but the checkpoint.

Reading also accepts foreign checkpoints saved the usual ways (a weights-only ``.pt``/``.pth``,
possibly nested under ``state_dict``/``model`` and prefixed by DDP, a wrapper or
``torch.compile``, with timm's train.py arguments or numpy scalars beside them) and refuses
pickles that hold more than tensors and plain data without running them, and a timm model
in the Hugging Face Hub layout (`hub.py`: the folder, its weights, its config.json).
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import nn

from distill_cli.errors import DistillError, RunFailed
from distill_cli.host import atomic_write
from distill_cli.models import hub

#: Keys in a training checkpoint that hold optimizer or method state rather than model weights.
OPTIM_PREFIX = "__optimizer__/"
METHOD_PREFIX = "__method__/"
PRIVATE_PREFIX = "__"
#: What DDP (`module.`), common wrappers (`model.`) and torch.compile (`_orig_mod.`) put in front
#: of the plain keys of a foreign checkpoint.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
_STATE_KEY = "distill.train_state"
#: Where trainers nest the weights in a checkpoint dict, in the order they are looked for:
#: timm's train.py (`state_dict`, `state_dict_ema`), PyTorch's own tutorial
#: (`model_state_dict`), and the common `model`/`model_ema`/`net`.
_NESTED_UNDER = (
    "state_dict",
    "model_state_dict",
    "model",
    "state_dict_ema",
    "model_ema",
    "net",
)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (views, tied weights).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


class NonFiniteState(RunFailed):
    """A tensor about to be saved holds NaN/Inf: the file is not written, the old one stays."""


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The first floating tensor holding NaN or Inf, by name (None when all are finite)."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def save_weights(
    path: Path,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save model weights (and optionally the optimizer, the method's extra state and the
    training position), then the sidecar.

    Every floating tensor (parameters, buffers such as BatchNorm's running statistics,
    optimizer moments) must be finite: a checkpoint is what a resume, an export or a later run
    trusts, so a NaN/Inf one raises :class:`NonFiniteState` naming the tensor, and the file on
    disk keeps its previous, good content.
    """
    tensors = _cpu(model.state_dict())
    tensors.update(_cpu({f"{METHOD_PREFIX}{k}": v for k, v in (extra or {}).items()}))
    header: dict[str, str] = {"format": "pt", "distill.meta": json.dumps(meta)}
    if optimizer is not None:
        opt_tensors, opt_json = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        header[_STATE_KEY] = json.dumps({**(train_state or {}), "optimizer": opt_json})
    bad = first_nonfinite(tensors)
    if bad is not None:
        step = meta.get("step")
        raise NonFiniteState(
            f"tensor {bad!r} holds NaN/Inf"
            + (f" at step {step}" if step is not None else "")
            + f"; {path.name} was not overwritten and keeps the last good state",
            str(path),
            "lower optim.lr or set optim.clip_grad_norm; --resume restarts from the kept state",
        )
    atomic_write(path, st_save(tensors, metadata=header))
    atomic_write(sidecar_path(path), json.dumps(meta, indent=2) + "\n")


def _flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM_PREFIX}{idx}/{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return _cpu(tensors), {"param_groups": state["param_groups"], "scalars": scalars}


def read_train_state(path: Path) -> dict[str, Any]:
    """The training position stored in a `last` checkpoint's header."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:
        raise DistillError(
            f"cannot read checkpoint: {exc}", str(path), "delete it or start over"
        ) from exc
    if _STATE_KEY not in header:
        raise DistillError("checkpoint has no training state to resume from", str(path))
    return json.loads(header[_STATE_KEY])


def load_training(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model and optimizer from a `last` checkpoint.

    Returns the training position and the method's extra state.
    """
    state = read_train_state(path)
    tensors = load_file(str(path))
    weights = {k: v for k, v in tensors.items() if not k.startswith(PRIVATE_PREFIX)}
    model.load_state_dict(weights)
    extra = {k[len(METHOD_PREFIX) :]: v for k, v in tensors.items() if k.startswith(METHOD_PREFIX)}
    opt_json = state.pop("optimizer")
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            idx, name = key[len(OPTIM_PREFIX) :].split("/", 1)
            opt_state.setdefault(int(idx), {})[name] = value
    for idx, scalars in opt_json["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(scalars)
    groups = opt_json["param_groups"]
    for saved, current in zip(groups, optimizer.param_groups, strict=False):
        for key, value in saved.items():  # JSON turned tuples (betas) into lists
            if isinstance(current.get(key), tuple):
                saved[key] = tuple(value)
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    _match_param_strides(optimizer)
    return state, extra


def _match_param_strides(optimizer: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's memory format (channels_last convs).

    Checkpoints store tensors contiguous; the fused CUDA AdamW refuses moments whose strides
    differ from their parameter's ("must have same dtype, device, and layout").
    """
    for param, entry in optimizer.state.items():
        for key, value in entry.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == param.shape
                and value.stride() != param.stride()
            ):
                entry[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


# --- reading weights: distill's own checkpoints and foreign ones ---------------------------


def sidecar_path(checkpoint: Path) -> Path:
    """`best.safetensors` -> `best.json`: the metadata sits beside the weights it describes."""
    return checkpoint.with_suffix(".json")


def read_sidecar(checkpoint: Path) -> dict[str, Any]:
    """The JSON metadata written beside distill's checkpoints; for a timm model in the Hugging
    Face Hub layout, its config.json in the same keys (`models/hub.py`); else {}."""
    path = sidecar_path(checkpoint)
    if checkpoint.is_dir() or not path.is_file():
        return hub.side_file(checkpoint) or {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DistillError("checkpoint sidecar is not valid JSON", str(path)) from exc
    if not isinstance(data, dict):  # hand-edited: a list or a number is not a sidecar
        raise DistillError(
            "checkpoint sidecar is not a JSON object", str(path), "restore or delete the file"
        )
    return data


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a safetensors or a weights-only torch file, wrappers and prefixes
    removed.

    The format is told by the file's first bytes, not its suffix (a `pytorch_model.bin`, a
    `.pth.tar`, safetensors saved as `.bin`), so a file that is neither is refused as such
    instead of as "a pickle holding code".
    """
    path = hub.weights_file(path)  # a Hub folder: its model.safetensors / pytorch_model.bin
    if path.exists() and not path.is_file():
        raise DistillError("checkpoint is not a regular file", str(path), "pass a weights file")
    if not path.is_file():
        raise DistillError("checkpoint file not found", str(path), "check the path")
    kind = _file_kind(path)
    if kind is None:
        raise DistillError(
            "not a checkpoint: the file is empty or neither a torch.save file nor safetensors",
            str(path),
            "pass the weights file (torch.save(model.state_dict()) or .safetensors)",
        )
    try:
        if kind == "safetensors":
            state: Any = load_file(str(path))
        else:
            with warnings.catch_warnings(), torch.serialization.safe_globals(_benign_globals()):
                warnings.simplefilter("ignore")  # torch's own advice (weights_only=False) is wrong
                state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DistillError(
            "the checkpoint is a pickle holding more than tensors (objects or code); distill "
            "loads weights only and did not run it",
            str(path),
            "save model.state_dict() with torch.save, or convert the weights to .safetensors",
        ) from None  # torch's message advises loading unsafely: never show it
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0].split(". ")[0][:200]
        if "weights_only" in first or "Weights only" in first:
            first = "not a weights-only file"
        raise DistillError(
            f"cannot read checkpoint: {type(exc).__name__}: {first}",
            str(path),
            "is the file complete (not cut short by a copy or a killed save)?",
        ) from exc
    for key in _NESTED_UNDER:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise DistillError("checkpoint holds no state dict", str(path))
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or key.startswith(PRIVATE_PREFIX):
            continue
        cleaned[_unwrapped(key)] = value
    return cleaned


def _unwrapped(key: str) -> str:
    """`key` without the prefixes wrappers add, in any order and nesting (a compiled DDP model
    saves `_orig_mod.module.`, a DDP-wrapped compiled one `module._orig_mod.`)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


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

    timm's train.py saves its `argparse.Namespace` under `args`, and many scripts a numpy
    scalar (`best_acc1`) or array: data, not code, so they are built without running anything;
    every other object stays refused.
    """
    import argparse

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = {type(np.dtype(t)) for t in np.sctypeDict.values() if t not in (np.void, np.object_)}
    return [
        argparse.Namespace,
        core.multiarray.scalar,
        core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        *sorted(dtypes, key=str),
    ]


def head_rows(path: Path, heads: list[str]) -> int | None:
    """The class count a checkpoint's classifier was trained for: the rows of the first of
    `heads` (timm's `classifier` names: `fc`, `head.fc`, `classifier`) it holds, else None."""
    state = read_state_dict(path)
    for head in heads:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 2:
            return int(weight.shape[0])
    return None


#: Buffers a checkpoint may lack without saying anything about its architecture: BatchNorm's
#: step counter, which some trainers and converters do not save (it only matters for
#: momentum=None BatchNorm, which timm models do not use).
_BENIGN_MISSING = ("num_batches_tracked",)
#: How many key names an error shows per kind.
_SHOWN = 3
#: Weights whose shape follows the input size in models built for one size (ViT's position
#: embedding, Swin's and LeViT's attention biases, Mixer's token MLPs): when only these differ,
#: the checkpoint is the right architecture made at another `img_size`.
_SIZE_KEYS = ("pos_embed", "relative_position", "attention_bias", "mlp_tokens", "rel_pos")


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _attribute_prefix_removed(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`state` without a first name component that every key shares and the model lacks: the
    attribute a training wrapper held the model in (a Lightning module's `self.net`, a
    distillation wrapper's `student.`). Only when that makes every key one of the model's."""
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) != 1 or not all("." in k for k in state) or any(k in own for k in state):
        return state
    stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
    return stripped if all(k in own for k in stripped) else state


def _sized(key: str) -> bool:
    return any(part in key for part in _SIZE_KEYS)


def load_weights(model: nn.Module, path: Path, strict: bool = True) -> dict[str, list[str]]:
    """Load `path` into `model`: every key must match in name and shape (`strict`).

    A checkpoint of a neighbouring architecture (resnet34 weights into a resnet18) shares most
    names and shapes; loading what matches and ignoring the rest gives a model that runs and
    scores like a bad one, without a word. So any missing, unexpected or wrong-shape key is a
    one-line error with the counts and the first names. `strict=False` (the recipe's
    `strict: false`) loads the keys that match and leaves the rest as initialised; a checkpoint
    that matches no key at all, or holds a NaN/Inf weight, is refused either way.
    """
    own = model.state_dict()
    state = _attribute_prefix_removed(read_state_dict(path), own)
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.endswith(_BENIGN_MISSING)]
    unexpected = [k for k in state if k not in own]
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if (strict and (missing or unexpected or mismatched)) or not fitting:
        parts = [
            f"{len(names)} {kind} ({_first(names)})"
            for kind, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong-shape", mismatched),
            )
            if names
        ]
        shapes = ""
        if mismatched:  # the sizes say which setting differs (fc 10x512 vs 4x512: num_classes)
            key = mismatched[0]
            file_shape, model_shape = ("x".join(map(str, t.shape)) for t in (state[key], own[key]))
            shapes = f"; {key} is {file_shape} in the file, {model_shape} in the model"
        sized = mismatched and not (missing or unexpected) and all(_sized(k) for k in mismatched)
        raise DistillError(
            "checkpoint does not fit the model: " + ", ".join(parts) + " keys" + shapes,
            str(path),
            "it was made for another input size: set input_size to the size it was trained at "
            "(or write it into its .json side file)"
            if sized
            else "check the model name, num_classes and in_chans"
            + ("; strict: false loads only the matching keys" if fitting else ""),
        )
    bad = first_nonfinite(fitting)
    if bad is not None:  # a model that outputs NaN teaches nothing and fails late, far away
        raise DistillError(
            f"checkpoint tensor {bad!r} holds NaN/Inf",
            str(path),
            "load an earlier checkpoint of that training, before it diverged",
        )
    model.load_state_dict(fitting, strict=False)
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}
