"""What a checkpoint that does not fit its model says about why: the refusal's words.

A bare count ("80 missing keys ... check the model name, num_classes and in_chans") leaves the
user to guess which of the three, and named neither the model built nor the one the file
holds. The keys and shapes usually tell: the classifier's rows (num_classes), the first
convolution's input channels (in_chans), a position embedding (input size, `sizes.py`), or a
whole other architecture of the same family (resnet18 weights given as resnet34), or of the
same code at the same depth (resnext50_32x4d weights given as resnet50), found by building
those models on the meta device and comparing names and shapes.
`weights.load_weights` decides to refuse; this module words it.
"""

from __future__ import annotations

import difflib
import re
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import timm
import torch
from torch import nn

from distill_cli.errors import DistillError
from distill_cli.models.torchvision_names import torchvision_note

#: How many models of the family the search for the model a file holds builds (on the meta
#: device, nearest names first): a count, not a time, so the refusal's words do not depend on
#: how busy the machine is; SEARCH_SECONDS only stops a pathological build. Cached per key set.
SEARCH_MODELS = 24
SEARCH_SECONDS = 15.0
#: BatchNorm's step counter, which some trainers do not save (weights.py's benign missing).
_STEP_COUNTER = "num_batches_tracked"


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


def _sized(key: str) -> bool:
    return any(part in key for part in _SIZE_KEYS)


@dataclass(frozen=True)
class Keys:
    """A checkpoint's keys against a model's: the names each lacks and those of other shapes."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]


def built_name(model: nn.Module) -> str | None:
    """The timm model `model` was built as (its pretrained_cfg's architecture)."""
    name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return name if isinstance(name, str) else None


def channels_hint(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], keys: Keys
) -> str | None:
    """`set in_chans: N` when the only difference is the first convolution's input channels
    (a grayscale teacher built for RGB data, or the reverse)."""
    if keys.missing or keys.unexpected or len(keys.mismatched) != 1:
        return None
    first = next((k for k, v in own.items() if v.ndim == 4), None)
    key = keys.mismatched[0]
    if key != first:
        return None
    file, model = state[key].shape, own[key].shape
    if file[:1] != model[:1] or file[2:] != model[2:]:
        return None
    return (
        f"the file's first convolution ({key}) takes {file[1]} channel(s), the model "
        f"{model[1]}: set in_chans: {file[1]} (distill converts the data's channels to it)"
    )


def classes_hint(state: dict[str, torch.Tensor], keys: Keys, classifier: list[str]) -> str | None:
    """`set num_classes: N` when only the classifier's rows differ."""
    if keys.missing or keys.unexpected or not keys.mismatched:
        return None
    heads = {f"{h}.{p}" for h in classifier for p in ("weight", "bias")}
    if not set(keys.mismatched) <= heads:
        return None
    rows = int(state[keys.mismatched[0]].shape[0])
    return (
        f"the file's classifier has {rows} outputs: set num_classes: {rows} (and its "
        "class_names): the outputs it was trained for"
    )


def timm_renamed(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor] | None:
    """`state` in timm's names, by the model's own `checkpoint_filter_fn` (what timm applies to
    weights from the model's original repository: ConvNeXt's `head.weight` is timm's
    `head.fc.weight`), when it only renames or drops: each tensor it returns must be one of the
    file's, unchanged. A filter that resamples (a ViT's position embedding to the model's input
    size) would make a model trained at one size run at another without a word: None then,
    and the refusal names the size."""
    import sys

    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = convert(dict(state), model)
    except Exception:  # a filter for other layouts: the file's names stand
        return None
    originals = {(v.data_ptr(), tuple(v.shape), v.dtype) for v in state.values()}
    if not isinstance(out, dict) or not all(
        isinstance(v, torch.Tensor) and (v.data_ptr(), tuple(v.shape), v.dtype) in originals
        for v in out.values()
    ):
        return None
    return out


def file_model(state: dict[str, torch.Tensor], built: str | None) -> str | None:
    """The timm model of `built`'s family (`resnet` for resnet34) whose weights have exactly
    the file's names and shapes (its classifier's rows and stem's channels aside), searched
    nearest names first for at most SEARCH_SECONDS; None when none is found in time."""
    if built is None:
        return None
    shapes = tuple(
        sorted((k, tuple(v.shape)) for k, v in state.items() if not k.endswith(_STEP_COUNTER))
    )
    return _search(shapes, built.split(".")[0])


@lru_cache(maxsize=16)
def _search(shapes: tuple[tuple[str, tuple[int, ...]], ...], built: str) -> str | None:
    family = re.match(r"[a-z]+", built)
    if family is None:
        return None
    names = [n for n in timm.list_models(family.group(0) + "*") if n != built]
    names = sorted(names, key=lambda n: _nearness(n, built))[:SEARCH_MODELS]
    deadline = time.monotonic() + SEARCH_SECONDS
    found = _first_fitting(names, dict(shapes), deadline)
    if found is None:  # then the other families of the same code (resnext50 is a ResNet)
        found = _first_fitting(_same_code(built, family.group(0)), dict(shapes), deadline)
    return found


def _same_code(built: str, family: str) -> list[str]:
    """The models of `built`'s timm module outside its name family that share a number with
    it (its depth: resnext50_32x4d, seresnet50 and wide_resnet50_2 are resnet.py's ResNet at
    depth 50, as resnet50 is), nearest names first: at most SEARCH_MODELS // 2, so a file of
    an unrelated architecture is refused about as fast as before."""
    try:
        module = timm.models.model_entrypoint(built).__module__.rsplit(".", 1)[-1]
    except Exception:  # a name timm does not know: no module to search
        return []
    numbers = set(re.findall(r"\d+", built))
    names = [
        n
        for n in timm.list_models(module=module)
        if not n.startswith(family) and numbers & set(re.findall(r"\d+", n))
    ]
    return sorted(names, key=lambda n: _nearness(n, built))[: SEARCH_MODELS // 2]


def _first_fitting(
    names: list[str], wanted: dict[str, tuple[int, ...]], deadline: float
) -> str | None:
    """The first of `names` whose weights have the file's names and shapes (`wanted`), built on
    the meta device; None when none does or the deadline passes."""
    for name in names:
        if time.monotonic() > deadline:
            return None
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                model = timm.create_model(name)
        except Exception:  # a model timm cannot build without arguments: not a candidate
            continue
        own = {k: v.shape for k, v in model.state_dict().items() if not k.endswith(_STEP_COUNTER)}
        if own.keys() != wanted.keys():
            continue
        head = model.pretrained_cfg.get("classifier") or ()
        heads = {
            f"{h}.{p}"
            for h in ([head] if isinstance(head, str) else head)
            for p in ("weight", "bias")
        }
        stem = next((k for k, v in own.items() if len(v) == 4), None)
        if all(_alike(own[k], wanted[k], k in heads, k == stem) for k in own):
            return name
    return None


def _nearness(name: str, built: str) -> tuple[float, float]:
    """Sort key, nearest first: the name's shape with its numbers as `#` (resnet18 and resnet34
    are both `resnet#`), then the name itself."""
    shape = re.compile(r"\d+")
    skeleton = difflib.SequenceMatcher(None, shape.sub("#", name), shape.sub("#", built)).ratio()
    return (-skeleton, -difflib.SequenceMatcher(None, name, built).ratio())


def _alike(model: torch.Size, file: tuple[int, ...], head: bool, stem: bool) -> bool:
    """The same shape, but for a classifier's rows (`head`) or a first convolution's input
    channels (`stem`): those say num_classes and in_chans, not the architecture."""
    if tuple(model) == file:
        return True
    if len(model) != len(file):
        return False
    return (head and tuple(model[1:]) == file[1:]) or (
        stem and model[:1] == file[:1] and tuple(model[2:]) == file[2:]
    )


def refusal(
    model: nn.Module,
    path: Path,
    state: dict[str, torch.Tensor],
    keys: Keys,
    fitting: bool,
    saved_from: str,
) -> DistillError:
    """The one-line error for a checkpoint whose keys do not fit `model`: the model built, the
    counts and first names per kind, the shapes of the first that differs, and what setting the
    difference points at (the model the file holds, num_classes, in_chans, the input size)."""
    own = model.state_dict()
    built = built_name(model)
    torchvision = torchvision_note(keys.unexpected, keys.missing, built)
    if torchvision is not None:
        return DistillError(
            "checkpoint does not fit the model: " + torchvision[0], str(path), torchvision[1]
        )
    parts = [
        f"{len(names)} {kind} ({_first(names)})"
        for kind, names in (
            ("missing", keys.missing),
            ("unexpected", keys.unexpected),
            ("wrong-shape", keys.mismatched),
        )
        if names
    ]
    shapes = ""
    if keys.mismatched:  # the sizes say which setting differs (fc 10x512 vs 4x512: num_classes)
        key = keys.mismatched[0]
        file_shape, model_shape = ("x".join(map(str, t.shape)) for t in (state[key], own[key]))
        shapes = f"; {key} is {file_shape} in the file, {model_shape} in the model"
    only_shapes = keys.mismatched and not (keys.missing or keys.unexpected)
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    hint = channels_hint(state, own, keys) or classes_hint(
        state, keys, [head] if isinstance(head, str) else list(head)
    )
    other = None
    if hint is None and not saved_from and not (only_shapes and all(map(_sized, keys.mismatched))):
        other = file_model(state, built)
    named = f" {built}" if built else ""
    what = f"checkpoint does not fit the model{named}: " + ", ".join(parts) + " keys" + shapes
    what += saved_from or (f"; its names and shapes are {other}'s" if other else "")
    if other is not None:
        hint = f"set model: {other} (the weights are {other}'s, not {built}'s)"
    elif hint is None and only_shapes and all(map(_sized, keys.mismatched)):
        hint = (
            "it was made for another input size: set input_size to the size it was trained at "
            "(or write it into its .json side file)"
        )
    elif hint is None:
        hint = "check the model name, num_classes and in_chans" + (
            "; strict: false loads only the matching keys" if fitting else ""
        )
    if only_shapes:
        return ShapeMismatch(what, str(path), hint, {k: tuple(v.shape) for k, v in state.items()})
    return DistillError(what, str(path), hint)
