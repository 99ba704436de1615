"""How a model is fed and what it predicts, from the recipe, its checkpoint's side file and
timm's defaults, in that order: input size, mean/std, crop fraction, class count, channels, and
where each fact came from (what `--dry-run` shows). `create_net` builds with these; the export
and the reports read them without building.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import timm
from torch import nn

from distill_cli.errors import DistillError
from distill_cli.models.checkpoint import read_sidecar, sidecar_path
from distill_cli.models.side_file import SideFile
from distill_cli.models.view import INTERPOLATION, ModelInfo

if TYPE_CHECKING:
    from distill_cli.recipe.sections import ModelSpec


def _channels(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Adapt a 3-channel mean/std to another channel count (timm's cfg is always RGB)."""
    if len(values) == in_chans:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * in_chans
    avg = sum(values) / len(values)
    return (avg,) * in_chans


#: Where a fact about how a model is fed came from, as `--dry-run` prints it.
#: (A checkpoint's own facts are named by the file that said them: `SideFile.origin`.)
FROM_RECIPE, FROM_TIMM, FROM_DATA = "recipe", "timm default", "data"


def _pick(recipe: Any, side: Any, default: Any, origin: str) -> tuple[Any, str]:
    """The first value set, by priority: recipe, checkpoint side file (named by `origin`: the
    side file, a Hub config.json, timm's train.py arguments), timm's default."""
    if recipe is not None:
        return recipe, FROM_RECIPE
    if side is not None:
        return side, origin
    return default, FROM_TIMM


def side_file_chans(spec: ModelSpec) -> ModelSpec:
    """`spec` with its checkpoint side file's `in_chans` where the recipe does not set it: a
    grayscale teacher's file says 1, and the run built it with 3 while its export built 1."""
    if "in_chans" in spec.model_fields_set or spec.checkpoint is None:
        return spec
    chans = read_sidecar(spec.checkpoint).in_chans
    return spec if chans is None else spec.model_copy(update={"in_chans": chans})


def same_as_side_file(spec: ModelSpec, section: str) -> None:
    """A side file naming another model than the recipe's is refused naming both: the run
    built the recipe's and fed it the side file's size and mean/std (the export of such a
    file builds the side file's model), so one file meant two models."""
    saved = read_sidecar(spec.checkpoint).model if spec.checkpoint is not None else None
    if saved is None or saved.split(".")[0] == spec.model.split(".")[0]:
        return
    raise DistillError(
        f"the checkpoint's side file says it holds {saved!r}, the recipe builds {spec.model!r}",
        f"{section}.model ({sidecar_path(spec.checkpoint)})",
        f"set {section}.model: {saved}, or correct the side file's model",
    )


def square(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    return (int(size[-2]), int(size[-1]))


def resolve_info(model: nn.Module, spec: ModelSpec, num_classes: int) -> ModelInfo:
    """The model's input config: see `resolve_feed`."""
    return resolve_feed(model, spec, num_classes)[0]


def resolve_feed(
    model: nn.Module, spec: ModelSpec, num_classes: int
) -> tuple[ModelInfo, dict[str, str]]:
    """How `model` is fed, and where each fact came from.

    Each of input size, mean/std and crop fraction is the recipe's, else the checkpoint side
    file's (what the model was trained with), else timm's data config for the model. The
    interpolation is always distill's own resize (`models.view.INTERPOLATION`): it is what the
    run evaluates with, so it is what the side file and the ONNX metadata say, whatever timm's
    pretrained config prefers.
    """
    cfg = timm.data.resolve_model_data_config(model)
    meta = read_sidecar(spec.checkpoint) if spec.checkpoint is not None else SideFile()
    size, size_from = _pick(spec.input_size, meta.input_size, cfg["input_size"][1:], meta.origin)
    norm, norm_from = _pick(
        None if spec.mean is None else (spec.mean, spec.std),
        None if meta.mean is None else (meta.mean, meta.std),
        (cfg["mean"], cfg["std"]),
        meta.origin,
    )
    mean, std = norm
    if len(mean) not in (1, spec.in_chans) and norm_from == FROM_RECIPE:
        raise DistillError(
            f"mean has {len(mean)} values for a {spec.in_chans}-channel model",
            "mean",
            f"give mean and std {spec.in_chans} values each, or one for every channel",
        )
    crop_pct, crop_from = _pick(spec.crop_pct, meta.crop_pct, cfg.get("crop_pct", 1.0), meta.origin)
    info = ModelInfo(
        name=spec.model,
        num_classes=num_classes,
        in_chans=spec.in_chans,
        input_size=square(size),
        mean=_channels(tuple(float(v) for v in mean), spec.in_chans),
        std=_channels(tuple(float(v) for v in std), spec.in_chans),
        crop_pct=float(crop_pct),
        interpolation=INTERPOLATION,
    )
    timm_interp = cfg.get("interpolation", INTERPOLATION)
    sources = {
        "input_size": size_from,
        "mean_std": norm_from,
        "crop_pct": crop_from,
        "interpolation": f"distill ({INTERPOLATION})"
        + (f", not timm's {timm_interp}" if timm_interp != INTERPOLATION else ""),
    }
    return info, sources


def resolve_num_classes(spec: ModelSpec, data_classes: int | None) -> tuple[int, str]:
    """num_classes and where it came from, by priority: recipe (num_classes, else the length
    of class_names), checkpoint side file, pretrained default, data."""
    if spec.num_classes is not None:
        return spec.num_classes, FROM_RECIPE
    if isinstance(spec.class_names, list):
        return len(spec.class_names), FROM_RECIPE
    if spec.checkpoint is not None:
        side = read_sidecar(spec.checkpoint)
        if side.classes is not None:
            return side.classes, side.origin
    if spec.pretrained:
        return int(timm.get_pretrained_cfg_value(spec.model, "num_classes") or 1000), FROM_TIMM
    if spec.class_names is not None:
        return len(spec.names() or []), FROM_RECIPE
    if data_classes is None:
        raise DistillError("num_classes is unknown", spec.model, "set num_classes in the recipe")
    if data_classes < 2:  # one output: softmax is 1 whatever the image, every score 100%
        raise DistillError(
            f"the data has {data_classes} class, and {spec.model} would take its class count "
            "from it: a classifier needs two or more",
            "data",
            "add a folder per class (train/<class>/), or set num_classes in the recipe",
        )
    return data_classes, FROM_DATA


def infer_num_classes(spec: ModelSpec, data_classes: int | None) -> int:
    """num_classes by priority: recipe, checkpoint sidecar, pretrained default, data."""
    return resolve_num_classes(spec, data_classes)[0]


def spec_input_size(spec: ModelSpec) -> tuple[int, int]:
    """A model's input size without building it: recipe, side file, else timm's default (what
    `resolve_feed` gives the built model)."""
    size = trained_size(spec)
    if size is not None:
        return size
    cfg = timm.get_pretrained_cfg_value(spec.model.split(".")[0], "input_size") or (3, 224, 224)
    return square(cfg)


def trained_size(spec: ModelSpec) -> tuple[int, int] | None:
    """The size the model is trained at: the recipe's, else its checkpoint sidecar's."""
    size: Any = spec.input_size
    if size is None and spec.checkpoint is not None:
        size = read_sidecar(spec.checkpoint).input_size
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[-2]), int(size[-1]))
