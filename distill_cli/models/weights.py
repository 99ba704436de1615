"""A weights file read and loaded into a model: distill's own checkpoints and a user's, saved
the usual ways.

A user's teacher comes as whatever their trainer wrote: a weights-only ``.pt``/``.pth``/``.bin``,
possibly nested under ``state_dict``/``model`` and prefixed by DDP, a wrapper or
``torch.compile``, with timm's train.py arguments or numpy scalars beside them; a Lightning
``.ckpt`` holding the model under an attribute beside others; safetensors; a timm model in the
Hugging Face Hub layout, sharded or not (`hub.py`); a distill run folder. All of them load, key
for key and shape for shape (or renamed by timm's own filter for the model's original names),
or are refused in one line naming what differs (`mismatch.py`); reading one file without
running it is `weight_files.py`'s. The layout distill itself writes is checkpoint.py's.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill_cli.errors import DistillError
from distill_cli.host import sha256_file
from distill_cli.models import hub
from distill_cli.models.checkpoint import (
    PRIVATE_PREFIX,
    checkpoint_not_found,
    first_nonfinite,
    weights_path,
)
from distill_cli.models.mismatch import Keys, refusal, timm_renamed
from distill_cli.models.weight_files import as_dict, read_file
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
    path = weights_path(path)  # a run's best, a Hub folder's model.safetensors, or the file
    if path.exists() and not path.is_file():
        raise DistillError("checkpoint is not a regular file", str(path), "pass a weights file")
    if not path.is_file():
        raise checkpoint_not_found(path)
    files = hub.shards(path)
    if files is not None:  # weights in shards: each a plain state dict, together the model's
        state: Any = {k: v for f in files for k, v in as_dict(read_file(f), f).items()}
    else:
        state = read_file(path)
    return _weights_in(as_dict(state, path), path, entry)


def _weights_in(state: dict[str, Any], path: Path, entry: str | None) -> WeightsFile:
    """The model's weights of a checkpoint dict: the entry named, else the usual one."""
    nested = [k for k in _NESTED_UNDER if isinstance(state.get(k), dict)]
    nested += [
        k
        for k, v in state.items()
        if k not in nested and isinstance(v, dict) and any(_is_tensor(t) for t in v.values())
    ]
    arch = _arch(state)
    if entry is not None and entry not in nested:
        picked = _attribute(state, nested, entry)
        if picked is not None:  # `teacher`: the weights under `teacher.` of a Lightning file
            return WeightsFile(picked, entry, (), arch)
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


def _attribute(
    state: dict[str, Any], nested: list[str], entry: str
) -> dict[str, torch.Tensor] | None:
    """The weights under one attribute of a wrapper (`checkpoint_key: teacher` takes the
    `teacher.` keys of a Lightning module holding a teacher and a student), in the usual
    entry, or in the entry named first (`state_dict_ema.teacher`); None when none are there."""
    head, _, rest = entry.partition(".")
    if head in nested and rest:
        state, prefix = state[head], rest + "."
    else:
        chosen = next((k for k in _NESTED_UNDER if k in nested), None)
        state, prefix = (state[chosen] if chosen else state), entry + "."
    picked = {}
    for key, value in state.items():
        key = _unwrapped(str(key))  # DDP's `module.teacher.`
        if key.startswith(prefix) and _is_tensor(value):
            picked[_unwrapped(key[len(prefix) :])] = value
    return picked or None


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


def file_classes(model: str, path: Path, entry: str | None = None) -> int | None:
    """The class count a checkpoint's classifier was trained for, for timm's `model`: the rows
    of its classifier (timm's `classifier` names: `fc`, `head.fc`...), also under a wrapper's
    attribute (a Lightning module's `net.fc`) when every such head agrees, or in the names of
    the model's original repository (`timm_renamed`: ConvNeXt's `head.weight`); else None.
    `entry` as for `read_weights`. The export and `distill students` ask it when no side file
    says: a 10-class `resnet18.pth` was built with timm's 1000 and refused as not fitting."""
    import timm

    head = timm.get_pretrained_cfg_value(model.split(".")[0], "classifier") or []
    names = [f"{h}.weight" for h in ([head] if isinstance(head, str) else head)]
    state = read_weights(path, entry).state
    rows = _rows(state, names)
    if rows is None and timm.is_model(model.split(".")[0]):
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                renamed = timm_renamed(state, timm.create_model(model.split(".")[0]))
        except Exception:  # a model timm builds only with arguments: the head is not found
            renamed = None
        rows = _rows(renamed, names) if renamed is not None else None
    return rows


def _rows(state: dict[str, torch.Tensor], names: list[str]) -> int | None:
    for name in names:
        if name in state and state[name].ndim >= 2:
            return int(state[name].shape[0])
        rows = {int(v.shape[0]) for k, v in state.items() if k.endswith("." + name) and v.ndim >= 2}
        if len(rows) == 1:
            return rows.pop()
    return None


#: Buffers a checkpoint may lack without saying anything about its architecture: BatchNorm's
#: step counter, which some trainers and converters do not save (it only matters for
#: momentum=None BatchNorm, which timm models do not use).
_BENIGN_MISSING = ("num_batches_tracked",)


def _attribute_prefix_removed(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """`state` without the attribute a training wrapper held the model in (a Lightning
    module's `self.net`, a distillation wrapper's `teacher.`): when one first name component
    is shared by every key and the model lacks it, and that makes every key the model's; or,
    beside other attributes (a loss's weights, the other model of a distillation module), the
    one attribute whose keys are exactly the model's. Two such attributes are refused."""
    if any(k in own for k in state):
        return state
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if "." in key:  # a wrapper's own top-level buffer (`temperature`) is in no group
            head, rest = key.split(".", 1)
            groups.setdefault(head, {})[rest] = value
    if len(groups) == 1 and len(state) == len(next(iter(groups.values()))):
        stripped = next(iter(groups.values()))
        return stripped if all(k in own for k in stripped) else state
    whole = [
        head
        for head, group in groups.items()
        if all(k in own and own[k].shape == v.shape for k, v in group.items())
        and all(k in group or k.endswith(_BENIGN_MISSING) for k in own)
    ]
    if len(whole) > 1:
        raise DistillError(
            f"the checkpoint holds {len(whole)} models that fit this one, under "
            + " and ".join(f"'{h}.'" for h in whole)
            + "; distill cannot tell which to load",
            str(path),
            "pick one with checkpoint_key: "
            + " or ".join(whole)
            + f" (the commands' --checkpoint-key {whole[0]})",
        )
    return groups[whole[0]] if whole else state


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
    file = weights_path(path)
    files = hub.shards(file)
    if files is None:
        return WeightsSource(str(file.resolve()), entry, file.stat().st_size, sha256_file(file))
    joined = "".join(sha256_file(f) for f in files).encode()  # the shards' hashes, in order
    size = sum(f.stat().st_size for f in files)
    return WeightsSource(str(file.resolve()), entry, size, hashlib.sha256(joined).hexdigest())


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
    state = _attribute_prefix_removed(read.state, own, path)
    saved_from = (
        f"; the file says it was saved from {read.arch!r}"
        if read.arch and not _same_model(read.arch, model)
        else ""
    )
    keys = _compared(state, own)
    renamed = None if keys == Keys([], [], []) else timm_renamed(state, model)
    if renamed is not None and _compared(renamed, own) == Keys([], [], []):
        state, keys = renamed, Keys([], [], [])  # the model's original repo's names (ConvNeXt)
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if (strict and (keys.missing or keys.unexpected or keys.mismatched)) or not fitting:
        raise refusal(model, path, state, keys, bool(fitting), saved_from)
    share = _share_loaded(own, fitting)
    if share < MIN_SHARE_LOADED:  # strict: false, and what loaded is a head or a stem
        raise DistillError(
            f"strict: false loaded {_percent(share)} of the model's weights from the checkpoint "
            f"({len(fitting)} of {len(own)} tensors); the rest would stay as initialised, a "
            f"model that predicts noise: " + refusal(model, path, state, keys, True, "").what,
            str(path),
            "check the model name and the file (strict: false is for a new head, not another "
            "architecture)",
        )
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
    weights = read.described() + (
        f" ({_percent(share)} of the model's weights)" if share < 1 else ""
    )
    weights += " (renamed by timm's checkpoint_filter_fn)" if state is renamed else ""
    unused = len(keys.unexpected) + len(keys.mismatched)  # strict: false: said, not silent
    weights += f" ({unused} of the file's tensors unused)" if unused else ""
    return Loaded(keys.missing, keys.unexpected, keys.mismatched, weights, read.entry)


def _compared(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> Keys:
    """The file's keys against the model's: missing, unexpected and wrong-shape names."""
    return Keys(
        missing=[k for k in own if k not in state and not k.endswith(_BENIGN_MISSING)],
        unexpected=[k for k in state if k not in own],
        mismatched=[k for k, v in state.items() if k in own and own[k].shape != v.shape],
    )


#: The least share of a model's weights (by elements) that `strict: false` may load: below it
#: the model is mostly its random initialisation, whatever the file.
MIN_SHARE_LOADED = 0.5


def _percent(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 else "under 1%"


def _share_loaded(own: dict[str, torch.Tensor], fitting: dict[str, torch.Tensor]) -> float:
    """The share of the model's floating-point elements (weights and statistics) that `fitting`
    sets: by elements, not keys, so a new 10-class head over a trained body is ~100%."""
    total = sum(v.numel() for v in own.values() if v.is_floating_point())
    loaded = sum(own[k].numel() for k in fitting if own[k].is_floating_point())
    return loaded / total if total else 1.0
