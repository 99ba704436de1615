"""A weights file read and loaded into a model: distill's own checkpoints and a user's, saved
the usual ways.

A user's teacher comes as whatever their trainer wrote: a weights-only ``.pt``/``.pth``/``.bin``,
possibly nested under ``state_dict``/``model`` and prefixed by DDP, a wrapper or
``torch.compile``, with timm's train.py arguments or numpy scalars beside them; safetensors;
a timm model in the Hugging Face Hub layout (`hub.py`). All of them load, key for key and
shape for shape, or are refused in one line; pickles that hold more than tensors and plain
data are refused without running them. The layout distill itself writes is checkpoint.py's.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from distill_cli.errors import DistillError
from distill_cli.host import sha256_file
from distill_cli.models import hub
from distill_cli.models.checkpoint import PRIVATE_PREFIX, checkpoint_not_found, first_nonfinite
from distill_cli.models.torchvision_names import torchvision_note
from distill_cli.rundir.summary import WeightsSource

#: What DDP (`module.`), common wrappers (`model.`) and torch.compile (`_orig_mod.`) put in front
#: of the plain keys of a foreign checkpoint.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
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


@dataclass(frozen=True)
class WeightsFile:
    """A weights file as read: its tensors (wrappers and prefixes removed), the entry of a
    checkpoint dict they came from (None: the file is the state dict), the other entries that
    hold weights too (timm's `state_dict_ema` beside `state_dict`), and the timm model the file
    says it was saved from (timm's train.py writes `arch`)."""

    state: dict[str, torch.Tensor]
    entry: str | None = None
    others: tuple[str, ...] = ()
    arch: str | None = None

    def described(self) -> str:
        """Which weights these are, for the plan: `state_dict (also state_dict_ema)`."""
        if self.entry is None:
            return "checkpoint"
        return self.entry + (f" (also {', '.join(self.others)})" if self.others else "")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a safetensors or a weights-only torch file (`read_weights`)."""
    return read_weights(path).state


def read_weights(path: Path, entry: str | None = None) -> WeightsFile:
    """Model weights from a safetensors or a weights-only torch file, wrappers and prefixes
    removed; `entry` names the checkpoint dict's entry to take (`state_dict_ema`), else the
    first of `_NESTED_UNDER` it holds.

    The format is told by the file's first bytes, not its suffix (a `pytorch_model.bin`, a
    `.pth.tar`, safetensors saved as `.bin`), so a file that is neither is refused as such
    instead of as "a pickle holding code".
    """
    path = hub.weights_file(path)  # a Hub folder: its model.safetensors / pytorch_model.bin
    if path.exists() and not path.is_file():
        raise DistillError("checkpoint is not a regular file", str(path), "pass a weights file")
    if not path.is_file():
        raise checkpoint_not_found(path)
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
    if not isinstance(state, dict):
        raise DistillError(
            "checkpoint holds no state dict",
            str(path),
            "pass the weights: torch.save(model.state_dict()) or a .safetensors file",
        )
    nested = [k for k in _NESTED_UNDER if isinstance(state.get(k), dict)]
    nested += [
        k
        for k, v in state.items()
        if k not in nested and isinstance(v, dict) and any(_is_tensor(t) for t in v.values())
    ]
    arch = _arch(state)
    if entry is not None and entry not in nested:
        raise DistillError(
            f"the checkpoint has no weights under {entry!r}"
            + (f"; it holds them under {nested}" if nested else "; it is a plain state dict"),
            f"checkpoint_key ({path})",
            "set checkpoint_key (the commands' --checkpoint-key) to one of those, or drop it"
            if nested
            else "drop checkpoint_key (the commands' --checkpoint-key): the file is loaded whole",
        )
    chosen = entry or next((k for k in _NESTED_UNDER if k in nested), None)
    if chosen is not None:
        state = state[chosen]
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not _is_tensor(value) or key.startswith(PRIVATE_PREFIX):
            continue
        cleaned[_unwrapped(key)] = value
    others = tuple(k for k in nested if k != chosen)
    return WeightsFile(cleaned, chosen, others, arch)


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def _arch(checkpoint: dict[Any, Any]) -> str | None:
    """The timm model a checkpoint dict says it holds: timm's train.py saves `arch` (and
    `args.model`)."""
    arch = checkpoint.get("arch")
    if not isinstance(arch, str):
        arch = getattr(checkpoint.get("args"), "model", None)
    return arch if isinstance(arch, str) and arch else None


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


def head_rows(path: Path, heads: list[str], entry: str | None = None) -> int | None:
    """The class count a checkpoint's classifier was trained for: the rows of the first of
    `heads` (timm's `classifier` names: `fc`, `head.fc`, `classifier`) it holds, else None;
    `entry` as for `read_weights`."""
    state = read_weights(path, entry).state
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
_SIZE_KEYS = (
    "pos_embed",
    "relative_position",
    "attention_bias",
    "mlp_tokens",
    "rel_pos",
    "linear_tokens",  # ResMLP's token mixing
    "gate.proj",  # gMLP's spatial gating
    "patch_pos",  # TNT's outer position embedding
    "pixel_pos",  # TNT's inner one
)


class ShapeMismatch(DistillError):
    """A checkpoint whose keys all name the model's weights but some of another shape: the
    file's shapes ride along, so the model's builder can tell which size it was made at."""

    def __init__(self, what: str, where: str, hint: str, shapes: dict[str, tuple[int, ...]]):
        super().__init__(what, where, hint)
        self.shapes = shapes


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


@dataclass(frozen=True)
class Loaded:
    """What `load_weights` loaded: the file's keys the model lacks or has at another shape
    (empty unless `strict: false`), and which weights of the file they were."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    weights: str = "checkpoint"
    entry: str | None = None  # the checkpoint dict's entry taken (None: a plain state dict)


def weights_source(path: Path, entry: str | None) -> WeightsSource:
    """Which file was loaded, named so a result can say which weights taught it: the file
    (a Hub folder's weights file), the checkpoint entry, its size and SHA-256. The hash reads
    the file once more (just read: from the page cache; 1.2 s per GB on 2 shared cores), so it
    is called where a net built from a checkpoint is recorded, not by every `load_weights`."""
    file = hub.weights_file(path)
    return WeightsSource(str(file.resolve()), entry, file.stat().st_size, sha256_file(file))


def _same_model(arch: str, model: nn.Module) -> bool:
    """Whether the timm model a checkpoint names (`arch`) is the one built, tags (`.a1_in1k`)
    and deprecated names resolved; a name timm does not know cannot be judged."""
    import timm
    from timm.models import get_deprecated_models, split_model_name_tag

    built = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not isinstance(built, str) or not timm.is_model(arch):
        return True
    arch = get_deprecated_models().get(arch, arch)
    return split_model_name_tag(arch)[0] == split_model_name_tag(built)[0]


def load_weights(
    model: nn.Module, path: Path, strict: bool = True, entry: str | None = None
) -> Loaded:
    """Load `path` into `model`: every key must match in name and shape (`strict`).

    A checkpoint of a neighbouring architecture (resnet34 weights into a resnet18) shares most
    names and shapes; loading what matches and ignoring the rest gives a model that runs and
    scores like a bad one, without a word. So any missing, unexpected or wrong-shape key is a
    one-line error with the counts and the first names. `strict=False` (the recipe's
    `strict: false`) loads the keys that match and leaves the rest as initialised; a checkpoint
    that matches no key at all, or holds a NaN/Inf weight, is refused either way.
    """
    own = model.state_dict()
    read = read_weights(path, entry)
    state = _attribute_prefix_removed(read.state, own)
    saved_from = (
        f"; the file says it was saved from {read.arch!r}"
        if read.arch and not _same_model(read.arch, model)
        else ""
    )
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
        built = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
        torchvision = torchvision_note(unexpected, missing, built)
        if torchvision is not None:
            raise DistillError(
                "checkpoint does not fit the model: " + torchvision[0], str(path), torchvision[1]
            )
        what = (
            "checkpoint does not fit the model: " + ", ".join(parts) + " keys" + shapes + saved_from
        )
        hint = (
            "it was made for another input size: set input_size to the size it was trained at "
            "(or write it into its .json side file)"
            if sized
            else "check the model name, num_classes and in_chans"
            + ("; strict: false loads only the matching keys" if fitting else "")
        )
        if mismatched and not (missing or unexpected):
            file_shapes = {k: tuple(v.shape) for k, v in state.items()}
            raise ShapeMismatch(what, str(path), hint, file_shapes)
        raise DistillError(what, str(path), hint)
    bad = first_nonfinite(fitting)
    if bad is not None:  # a model that outputs NaN teaches nothing and fails late, far away
        raise DistillError(
            f"checkpoint tensor {bad!r} holds NaN/Inf",
            str(path),
            "load an earlier checkpoint of that training, before it diverged",
        )
    if saved_from:  # the weights fit, but another model's input size, mean and std would feed it
        built = model.pretrained_cfg["architecture"]
        raise DistillError(
            f"the checkpoint was saved from {read.arch!r} (its 'arch'), the recipe builds "
            f"{built!r}: their weights fit each other, their input settings may not",
            str(path),
            f"set model: {read.arch} (or save the weights alone if {built} is right)",
        )
    model.load_state_dict(fitting, strict=False)
    return Loaded(missing, unexpected, mismatched, read.described(), read.entry)
